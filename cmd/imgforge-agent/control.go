package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/update"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// controlAddr is where the control endpoint listens: "off" or "" for
// nowhere, a port alone for that port on the node's address, or
// HOST:PORT.
func controlAddr(flag string, c *config.Config) (string, error) {
	if flag == "" || flag == "off" {
		return "", nil
	}
	if _, err := strconv.ParseUint(flag, 10, 16); err == nil {
		p, err := config.ParseNodeAddress(c.Node.Address)
		if err != nil {
			return "", err
		}
		return net.JoinHostPort(p.Addr().String(), flag), nil
	}
	if _, _, err := net.SplitHostPort(flag); err != nil {
		return "", fmt.Errorf("--control %q: accepted: off, a port, or HOST:PORT", flag)
	}
	return flag, nil
}

// runControl serves the control endpoint once the agent is ready, until
// ctx ends. Its failures are logged: the agent keeps rendering.
func runControl(ctx context.Context, a *agent.Agent, flag string, role *imagemeta.RoleInfo, logf func(string, ...any)) {
	select {
	case <-ctx.Done():
		return
	case <-a.Ready():
	}
	cfg := a.Config()
	addr, err := controlAddr(flag, cfg)
	if err != nil || addr == "" {
		if err != nil {
			logf("control endpoint off: %v", err)
		}
		return
	}
	id, err := cfg.ParseIdentity()
	if err != nil {
		logf("control endpoint off: %s.identity: %v", config.Section, err)
		return
	}
	if id == nil {
		logf("control endpoint off: the settings have no %s.identity, and nothing may command this node without a credential", config.Section)
		return
	}
	o := agent.ControlOptions{
		Identity: id, Agent: a, Logf: logf, Reboot: rebootNode,
		Image: func() (agent.Image, error) {
			r, err := update.ReadRunning(update.DefaultCmdline, update.DefaultSysBlock, update.DefaultDevDir)
			return agent.Image{Role: r.Role, Version: r.Version, Slot: r.Slot, RootHash: r.RootHash}, err
		},
	}
	var roleName string
	if role != nil {
		o.Discovers, roleName = role.Discover, role.Role
		if role.VIPs {
			o.HeldVIPs = func() []string { return agent.HeldVIPs(a.Config().VIPs) }
		}
		if role.Snapshot != nil {
			o.Snapshot = role.Snapshot.Command
			o.Mode = func() string { return a.Config().Mode() }
		}
	}
	client := sourceClient(id.CA)
	o.Update = func(ctx context.Context, req agent.UpdateRequest) (agent.UpdateResponse, error) {
		trial, err := req.TrialDuration()
		if err != nil {
			return agent.UpdateResponse{}, err
		}
		res, err := update.OnNode(ctx, update.NodeOptions{Source: req.Source, Client: client, Role: roleName, Logf: logf, Tries: req.Tries, Trial: trial, Stage: req.Stage})
		if err != nil {
			return agent.UpdateResponse{}, err
		}
		return agent.UpdateResponse{Slot: res.Slot, Role: res.Role, Version: res.Version, RootHash: res.RootHash, Staged: res.Staged, Reused: res.Reused}, nil
	}
	c, err := agent.NewControl(o)
	if err != nil {
		logf("control endpoint off: %v", err)
		return
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		logf("control endpoint off: %v", err)
		return
	}
	who := "operator certificates of the cluster CA only"
	if len(o.Snapshot) > 0 {
		who = "operator certificates of the cluster CA; its snapshot to nodes of role " + roleName
	}
	logf("control endpoint on https://%s (%s)", addr, who)
	if err := agent.ServeControl(ctx, l, c); err != nil {
		logf("%v", err)
	}
}

// sourceClient fetches update sources, trusting the system's CAs and the
// cluster CA (a set served with a certificate from it).
func sourceClient(ca *x509.Certificate) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = time.Minute
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pool.AddCert(ca)
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}
}
