package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/identity"
)

// ControlClientTLS is the TLS configuration of a client of node's control
// endpoint: it presents the operator certificate and accepts only the
// node certificate the cluster CA issued to that node. (Node certificates
// name the node in their subject, not in a DNS name, so the check is
// identity.Verifier's rather than the TLS library's host name check.)
func ControlClientTLS(ca *x509.Certificate, operator tls.Certificate, node string, now func() time.Time) *tls.Config {
	return nodeServerTLS(ca, operator, node, "", now)
}

// PeerClientTLS is the TLS configuration of a node that asks a peer's
// control endpoint (a replica its primary): it presents the node's own
// certificate and accepts only the certificate the cluster CA issued to
// node, of role role.
func PeerClientTLS(ca *x509.Certificate, self tls.Certificate, node, role string, now func() time.Time) *tls.Config {
	return nodeServerTLS(ca, self, node, role, now)
}

// nodeServerTLS presents client and accepts node's certificate, of role
// role when it is not empty.
func nodeServerTLS(ca *x509.Certificate, client tls.Certificate, node, role string, now func() time.Time) *tls.Config {
	if now == nil {
		now = time.Now
	}
	v := identity.NewVerifier(ca)
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{client},
		InsecureSkipVerify: true, // replaced by VerifyConnection below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the node sent no certificate")
			}
			claims, _, err := v.Verify(cs.PeerCertificates[0].Raw, now())
			if err != nil {
				return fmt.Errorf("the node's certificate: %w", err)
			}
			if claims.Name != node {
				return fmt.Errorf("the certificate is node %s's, not %s's", claims.Name, node)
			}
			if role != "" && claims.Role != role {
				return fmt.Errorf("the certificate of node %s is for role %s, not %s", node, claims.Role, role)
			}
			return nil
		},
	}
}

// ControlClient talks to one node's control endpoint.
type ControlClient struct {
	// Addr is HOST:PORT.
	Addr string
	// HTTP carries the commands (drain, undrain, update), each on a
	// connection of its own, so that none is sent on a connection the
	// node dropped (a reboot) and retried; its transport holds
	// ControlClientTLS.
	HTTP *http.Client
	// StatusHTTP carries the status requests (HTTP when nil), on a
	// connection kept between them: a rollout asks every node its status
	// every few seconds, and a TLS handshake each time cost an emulated
	// node a tenth of its CPU.
	StatusHTTP *http.Client
}

// NewControlClient makes a client of node's control endpoint at addr.
func NewControlClient(addr, node string, ca *x509.Certificate, operator tls.Certificate) *ControlClient {
	transport := func(keep bool) *http.Transport {
		return &http.Transport{
			Proxy: nil, TLSClientConfig: ControlClientTLS(ca, operator, node, nil),
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second, DisableKeepAlives: !keep,
			MaxIdleConnsPerHost: 1, IdleConnTimeout: 30 * time.Second,
		}
	}
	return &ControlClient{Addr: addr, HTTP: &http.Client{Transport: transport(false)}, StatusHTTP: &http.Client{Transport: transport(true)}}
}

// RequestTimeout bounds the control requests but the update (a node
// that reboots may drop packets rather than refuse them).
const RequestTimeout = 15 * time.Second

// Status asks GET /v1/status.
func (c *ControlClient) Status(ctx context.Context) (ControlStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	var st ControlStatus
	hc := c.StatusHTTP
	if hc == nil {
		hc = c.HTTP
	}
	err := c.do(ctx, hc, http.MethodGet, ControlStatusPath, nil, &st)
	return st, err
}

// Drain asks POST /v1/drain.
func (c *ControlClient) Drain(ctx context.Context) (ControlStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	var st ControlStatus
	err := c.do(ctx, c.HTTP, http.MethodPost, ControlDrainPath, struct{}{}, &st)
	return st, err
}

// Undrain asks POST /v1/undrain.
func (c *ControlClient) Undrain(ctx context.Context) (ControlStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	var st ControlStatus
	err := c.do(ctx, c.HTTP, http.MethodPost, ControlUndrainPath, struct{}{}, &st)
	return st, err
}

// Update asks POST /v1/update: the node writes req.Source into its
// inactive slot and reboots into it.
func (c *ControlClient) Update(ctx context.Context, req UpdateRequest) (UpdateResponse, error) {
	var res UpdateResponse
	err := c.do(ctx, c.HTTP, http.MethodPost, ControlUpdatePath, req, &res)
	return res, err
}

func (c *ControlClient) do(ctx context.Context, hc *http.Client, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+c.Addr+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("reading the answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e ControlError
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, e.Error)
		}
		return fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the answer of %s %s is not JSON: %w", method, path, err)
	}
	return nil
}

// FetchSnapshot asks the control endpoint at addr (HOST:PORT) of node,
// of role role, for its snapshot (GET /v1/snapshot), presenting self,
// the asking node's certificate. The body it returns fails at its end
// unless the node said the snapshot is complete (SnapshotTrailer), so a
// snapshot cut short is never taken for a whole one.
func FetchSnapshot(ctx context.Context, addr, node, role string, ca *x509.Certificate, self tls.Certificate) (io.ReadCloser, error) {
	hc := &http.Client{Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: PeerClientTLS(ca, self, node, role, nil),
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second, DisableKeepAlives: true,
		// The snapshot command may take a while before its first byte
		// (mariadb-backup copies the redo log first).
		ResponseHeaderTimeout: 10 * time.Minute,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+ControlSnapshotPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking node %s at %s for its snapshot: %w", node, addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e ControlError
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("node %s's snapshot: HTTP %d: %s", node, resp.StatusCode, e.Error)
		}
		return nil, fmt.Errorf("node %s's snapshot: HTTP %d", node, resp.StatusCode)
	}
	return &snapshotBody{resp: resp, node: node}, nil
}

// snapshotBody is a snapshot's body whose end is an error unless the
// trailer says the snapshot is complete.
type snapshotBody struct {
	resp *http.Response
	node string
}

func (b *snapshotBody) Read(p []byte) (int, error) {
	n, err := b.resp.Body.Read(p)
	if errors.Is(err, io.EOF) {
		switch st := b.resp.Trailer.Get(SnapshotTrailer); st {
		case SnapshotOK:
		case "":
			err = fmt.Errorf("node %s's snapshot ended without saying it is complete: it was cut", b.node)
		default:
			err = fmt.Errorf("node %s's snapshot is not complete: %s", b.node, st)
		}
	}
	return n, err
}

func (b *snapshotBody) Close() error { return b.resp.Body.Close() }
