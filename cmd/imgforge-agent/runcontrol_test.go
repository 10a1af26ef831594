package main

import (
	"context"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/agent/identity"
)

// TestRunControl: imgforge-agent run serves the control endpoint with the
// node's identity from user-data: an operator gets the status, the node's
// own certificate is refused.
func TestRunControl(t *testing.T) {
	now := time.Now()
	caPEM, caKey, err := identity.NewCA(rand.Reader, "shop", now)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.ParseCA(caPEM, caKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(rand.Reader, "web", "web-1", now)
	if err != nil {
		t.Fatal(err)
	}
	ind := func(b []byte) string {
		return "      " + strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "\n      ") + "\n"
	}
	ud := userData + "  identity:\n    ca: |\n" + ind(caPEM) + "    cert: |\n" + ind(certPEM) + "    key: |\n" + ind(keyPEM)
	_, args := files(t, ud, webRoleJSON(t))
	control := freeAddr(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := execute(ctx, append(append([]string{"run", "--listen", freeAddr(t), "--snapshot", t.TempDir() + "/s.json", "--control", control}, nodeDirs(t)...), args...)...)
		done <- err
	}()
	op, err := ca.IssueOperator(rand.Reader, "test", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := agent.NewControlClient(control, "web-1", ca.Cert, op)
	var st agent.ControlStatus
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err = c.Status(t.Context())
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.Node != "web-1" || st.Role != "web" || !st.Ready || !slices.Equal(st.Discovers, []string{"app"}) || st.ImageError == "" {
		t.Errorf("status %+v", st)
	}
	node, err := identity.ParseNode(caPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.NewControlClient(control, "web-1", ca.Cert, node.TLSCertificate()).Status(t.Context()); err == nil {
		t.Error("the node's own certificate got the status")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}
