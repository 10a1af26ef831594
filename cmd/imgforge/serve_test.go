package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestServeErrors(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "out")
	os.MkdirAll(filepath.Join(root, "lb", "pxe"), 0o755)
	os.WriteFile(filepath.Join(root, "lb", "pxe", "boot.ipxe"), []byte("#!ipxe\n"), 0o644)
	bad := filepath.Join(dir, "machines.yaml")
	os.WriteFile(bad, []byte("machines:\n  - mac: 52:54:00:00:00:01\n    role: web\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no root", []string{"serve", "--root", filepath.Join(dir, "nope"), "--listen", "127.0.0.1:0"}, "opening the PXE root: "},
		{"bad machines", []string{"serve", "--root", root, "--machines", bad, "--listen", "127.0.0.1:0"},
			bad + `:3:11: field "machines[0].role": role "web" has no PXE set; accepted: the PXE sets under ` + root + `: lb`},
		{"bad listen", []string{"serve", "--root", root, "--listen", "127.0.0.1:99999"}, "http: listen tcp: address 99999: invalid port"},
		{"no interface", []string{"serve", "--root", root, "--listen", "127.0.0.1:0", "--proxy-dhcp", "nosuchif0"}, `proxyDHCP: interface "nosuchif0": `},
		{"args", []string{"serve", "lb"}, `unknown command "lb"`},
		{"no loaders folder", []string{"serve", "--root", root, "--listen", "127.0.0.1:0", "--tftp", "127.0.0.1:0", "--loaders", filepath.Join(dir, "nope")},
			"--loaders: reading the loaders folder: open " + filepath.Join(dir, "nope") + ": no such file or directory; accepted: a folder holding ipxe.efi, snponly.efi or undionly.kpxe, such as /usr/lib/ipxe from Debian's ipxe package (apt-get install ipxe)"},
		{"no loader", []string{"serve", "--root", root, "--listen", "127.0.0.1:0", "--tftp", "127.0.0.1:0", "--loaders", root},
			"--loaders: the loaders folder " + root + " holds no loader; accepted: a folder holding ipxe.efi,"},
		{"no loader without tftp", []string{"serve", "--root", root, "--listen", "127.0.0.1:0", "--loaders", root}, "--loaders: the loaders folder " + root + " holds no loader"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runCLI(t, nil, tt.args...)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q\nwant one line containing %q", err, tt.want)
			}
		})
	}
}

// syncWriter is a log buffer the server and the test share.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestServeRearmOnSIGHUP: imgforge serve hands a machine's user-data out
// once, says in the refusal how to re-arm it (its own PID), and SIGHUP
// re-arms it.
func TestServeRearmOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "out")
	os.MkdirAll(filepath.Join(root, "lb", "pxe"), 0o755)
	os.WriteFile(filepath.Join(root, "lb", "pxe", "boot.ipxe"), []byte("#!ipxe\n"), 0o644)
	seedDir := filepath.Join(root, "seeds", "lb-1")
	os.MkdirAll(seedDir, 0o755)
	os.WriteFile(filepath.Join(seedDir, "meta-data"), []byte("instance-id: lb-1\n"), 0o644)
	os.WriteFile(filepath.Join(seedDir, "user-data"), []byte("#cloud-config\n# SECRET\n"), 0o600)
	os.WriteFile(filepath.Join(root, "machines.yaml"), []byte("machines:\n  - mac: 52:54:00:00:00:01\n    role: lb\n    seed: seeds/lb-1\n"), 0o644)

	log := &syncWriter{}
	cmd := newRootCmd(io.Discard, log, func(string) string { return "" })
	cmd.SetArgs([]string{"serve", "--root", root, "--listen", "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	addr := waitLog(t, log, regexp.MustCompile(`over http on (127\.0\.0\.1:\d+)`))
	url := "http://" + addr + "/seed/52-54-00-00-00-01/user-data"
	// The second fetch comes from another address: the same one may
	// fetch again within the grace time.
	fetch := func(from string) int {
		c := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext}}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := fetch("127.0.0.1"); code != 200 {
		t.Fatalf("first fetch: %d", code)
	}
	if code := fetch("127.0.0.2"); code != http.StatusGone {
		t.Fatalf("second fetch: %d", code)
	}
	hint := fmt.Sprintf("kill -HUP %d", os.Getpid())
	if !strings.Contains(log.String(), "WARNING: refused user-data of machine 52:54:00:00:00:01 to 127.0.0.2:") || !strings.Contains(log.String(), hint) {
		t.Fatalf("the refusal is not logged with %q:\n%s", hint, log)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, log, regexp.MustCompile(`seeds re-armed: (1) handed-out`))
	if code := fetch("127.0.0.2"); code != 200 {
		t.Errorf("fetch after SIGHUP: %d", code)
	}
}

func waitLog(t *testing.T, log *syncWriter, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(log.String()); m != nil {
			return m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the log lacks %s:\n%s", re, log)
	return ""
}
