package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTrialOf(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    time.Duration
		ok      bool
	}{
		{"console=ttyS0 boot=imgforge imgforge.slot=b imgforge.trial=180", 3 * time.Minute, true},
		{"boot=imgforge imgforge.slot=a", 0, false},
		{"imgforge.trial=0", 0, false},
		{"imgforge.trial=1e9", 0, false},
		{"imgforge.trial=;reboot", 0, false},
	} {
		f := filepath.Join(t.TempDir(), "cmdline")
		if err := os.WriteFile(f, []byte(tc.cmdline+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got, ok := trialOf(f)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %v %v, want %v %v", tc.cmdline, got, ok, tc.want, tc.ok)
		}
	}
}

// TestHealthWaitsForRender: on a node with an imgforge: section the gate
// passes only once the agent has rendered, however early the service
// answers (the image's first-boot configuration answers before the render);
// a node without one (an image booted with other boot data) is gated by
// the probe alone.
func TestHealthWaitsForRender(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name, file string
		want       bool
	}{
		{"with the section", write("with", userData), true},
		{"without it", write("without", "#cloud-config\nwrite_files:\n  - path: /x\n    content: y\n"), false},
		{"with a broken section", write("broken", "#cloud-config\nimgforge:\n  role: [\n"), true},
		{"missing", filepath.Join(dir, "missing"), false},
	} {
		if got := agentConfigured(tc.file); got != tc.want {
			t.Errorf("%s: agentConfigured = %v, want %v", tc.name, got, tc.want)
		}
	}

	answers := func(context.Context) bool { return true }
	renders, fail := uint64(0), error(nil)
	gate := afterRender(answers, func(context.Context) (uint64, error) { return renders, fail })
	ctx := context.Background()
	if gate(ctx) {
		t.Error("healthy before the agent rendered")
	}
	fail = errors.New("connection refused")
	renders = 1
	if gate(ctx) {
		t.Error("healthy while the agent's status cannot be read")
	}
	fail = nil
	if !gate(ctx) {
		t.Error("not healthy after a render, with the service answering")
	}
	if afterRender(func(context.Context) bool { return false }, func(context.Context) (uint64, error) { return 3, nil })(ctx) {
		t.Error("healthy after a render with the service not answering")
	}
}

// TestHealthCommandWaitsForRender runs the health command itself: with an
// imgforge: section in the user-data, a service that answers is not enough
// while the agent reports no render.
func TestHealthCommandWaitsForRender(t *testing.T) {
	dir := t.TempDir()
	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	go func() {
		for {
			c, err := svc.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	role := write("role.json", fmt.Sprintf(`{"role": "web", "health": {"type": "tcp", "port": %d}}`, svc.Addr().(*net.TCPAddr).Port))
	cmdline := write("cmdline", "boot=imgforge\n")
	var renders atomic.Int64
	status := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"renders": %d}`, renders.Load())
	}))
	defer status.Close()
	health := func(userData string) error {
		_, _, err := execute(context.Background(), "health", "--role-file", role, "--cmdline", cmdline, "--user-data", userData,
			"--addr", strings.TrimPrefix(status.URL, "http://"), "--wait", "1s", "--interval", "50ms")
		return err
	}
	configured := write("configured", userData)
	if err := health(configured); err == nil {
		t.Error("healthy before the agent rendered")
	}
	renders.Store(1)
	if err := health(configured); err != nil {
		t.Errorf("after a render: %v", err)
	}
	renders.Store(0)
	if err := health(write("other", "#cloud-config\nwrite_files: []\n")); err != nil {
		t.Errorf("no imgforge: section, service answering: %v", err)
	}
}
