package main

import (
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpdateNoRebootOnError: a failed update never reboots, even with
// --reboot; the flags are checked first.
func TestUpdateNoRebootOnError(t *testing.T) {
	rebooted := false
	old := rebootNode
	rebootNode = func() error { rebooted = true; return nil }
	t.Cleanup(func() { rebootNode = old })
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	os.WriteFile(cmdline, []byte("boot=imgforge imgforge.slot=a imgforge.root=PARTUUID=00000000-0000-4000-8000-000000000000\n"), 0o644)
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-o", "yaml"}, `--output "yaml"`},
		{[]string{"--ca", filepath.Join(dir, "missing.pem")}, "--ca"},
		{nil, "no disk holds the root partition"},
	} {
		args := append([]string{"update", "http://127.0.0.1:1/sets/lb/", "--reboot", "--role-file", "",
			"--cmdline", cmdline, "--sys-block", dir, "--dev", dir, "--run-dir", filepath.Join(dir, "run"), "--esp", dir}, tc.args...)
		_, _, err := execute(context.Background(), args...)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
		}
	}
	if rebooted {
		t.Error("a failed update rebooted the node")
	}
}

// TestUpdateClientCA: with --ca, an https source is trusted only when
// the CA signed its certificate.
func TestUpdateClientCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	other := filepath.Join(dir, "other.pem")
	os.WriteFile(other, []byte("not a certificate"), 0o644)
	c, err := httpClient(ca)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	resp.Body.Close()
	c, _ = httpClient("")
	if resp, err := c.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Error("a certificate of an unknown CA was accepted without --ca")
	}
	if _, err := httpClient(other); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a --ca file without a certificate: %v", err)
	}
}
