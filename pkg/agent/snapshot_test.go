package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
)

// fakeSnapshot is a snapshot command: it writes out (after release is
// closed, when set) and fails with err.
type fakeSnapshot struct {
	mu      sync.Mutex
	argv    [][]string
	dirSeen bool
	out     string
	err     error
	started chan struct{}
	release chan struct{}
}

func (f *fakeSnapshot) run(ctx context.Context, argv []string, stdout, stderr io.Writer) error {
	f.mu.Lock()
	f.argv = append(f.argv, argv)
	for _, a := range argv {
		if d, ok := strings.CutPrefix(a, "--target-dir="); ok {
			if st, err := os.Stat(d); err == nil && st.IsDir() && st.Mode().Perm() == 0o700 {
				f.dirSeen = true
			}
		}
	}
	f.mu.Unlock()
	fmt.Fprintln(stderr, "[00] copying ./ibdata1")
	if f.started != nil {
		f.started <- struct{}{}
	}
	if f.release != nil {
		<-f.release
	}
	if _, err := io.WriteString(stdout, f.out); err != nil {
		return err
	}
	return f.err
}

// startDBControl serves the control endpoint of db-1 (its role's
// snapshot command the fake's) in mode.
func startDBControl(t *testing.T, ca *testCA, f *fakeSnapshot, mode string) string {
	t.Helper()
	a, _ := startStatic(t, nil)
	c, err := NewControl(ControlOptions{
		Identity: ca.node(t, "db", "db-1"), Agent: a, Logf: logf(t),
		Snapshot:    []string{"mariadb-backup", "--backup", "--stream=xbstream", "--target-dir={dir}", "--user=root"},
		Mode:        func() string { return mode },
		RunSnapshot: f.run, SnapshotDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return serveControl(t, c)
}

func fetchAll(t *testing.T, addr string, ca *testCA, role, name string) (string, error) {
	t.Helper()
	body, err := FetchSnapshot(t.Context(), addr, "db-1", "db", ca.ca.Cert, ca.node(t, role, name).TLSCertificate())
	if err != nil {
		return "", err
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	return string(b), err
}

// TestControlSnapshot: a db peer gets the primary's snapshot, streamed
// from the role's command with {dir} a private folder; nobody else does,
// and a db peer gets nothing else from the endpoint.
func TestControlSnapshot(t *testing.T) {
	ca := shopCA(t)
	f := &fakeSnapshot{out: "xbstream bytes"}
	addr := startDBControl(t, ca, f, "primary")
	got, err := fetchAll(t, addr, ca, "db", "db-2")
	if err != nil || got != "xbstream bytes" {
		t.Fatalf("a db peer's snapshot: %q, %v", got, err)
	}
	if len(f.argv) != 1 || f.argv[0][0] != "mariadb-backup" || strings.Contains(strings.Join(f.argv[0], " "), "{dir}") || !f.dirSeen {
		t.Errorf("ran %q (its folder made 0700: %v)", f.argv, f.dirSeen)
	}
	// A web node fails the handshake; an operator is refused by the handler.
	if _, err := fetchAll(t, addr, ca, "web", "web-1"); err == nil {
		t.Error("a web node got the snapshot")
	}
	op := operatorCert(t, ca)
	if body, err := FetchSnapshot(t.Context(), addr, "db-1", "db", ca.ca.Cert, op); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		if body != nil {
			body.Close()
		}
		t.Errorf("an operator: %v", err)
	}
	// A db peer may not command the node.
	cl := NewControlClient(addr, "db-1", ca.ca.Cert, ca.node(t, "db", "db-2").TLSCertificate())
	if _, err := cl.Status(t.Context()); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Errorf("a db peer's status request: %v", err)
	}
	if _, err := cl.Drain(t.Context()); err == nil {
		t.Error("a db peer drained the node")
	}
	// The replica checks that it talks to the db node it meant.
	if _, err := FetchSnapshot(t.Context(), addr, "db-1", "web", ca.ca.Cert, ca.node(t, "db", "db-2").TLSCertificate()); err == nil || !strings.Contains(err.Error(), "for role db, not web") {
		t.Errorf("asking for a web node's snapshot at a db node: %v", err)
	}
	if n := len(f.argv); n != 1 {
		t.Errorf("%d snapshots made, want 1", n)
	}
}

func TestControlSnapshotRefusals(t *testing.T) {
	ca := shopCA(t)
	t.Run("replica", func(t *testing.T) {
		addr := startDBControl(t, ca, &fakeSnapshot{out: "x"}, "replica")
		if _, err := fetchAll(t, addr, ca, "db", "db-2"); err == nil || !strings.Contains(err.Error(), "HTTP 409") || !strings.Contains(err.Error(), "ask the primary") {
			t.Errorf("a replica's snapshot: %v", err)
		}
	})
	t.Run("fails at once", func(t *testing.T) {
		addr := startDBControl(t, ca, &fakeSnapshot{err: errors.New("exit status 1")}, "primary")
		if _, err := fetchAll(t, addr, ca, "db", "db-2"); err == nil || !strings.Contains(err.Error(), "HTTP 500") || !strings.Contains(err.Error(), "exit status 1") {
			t.Errorf("a failed snapshot: %v", err)
		}
	})
	t.Run("fails midway", func(t *testing.T) {
		addr := startDBControl(t, ca, &fakeSnapshot{out: "half", err: errors.New("exit status 1")}, "primary")
		got, err := fetchAll(t, addr, ca, "db", "db-2")
		if err == nil || !strings.Contains(err.Error(), "is not complete: failed: exit status 1") {
			t.Errorf("a snapshot cut: %q, %v", got, err)
		}
	})
	t.Run("one at a time", func(t *testing.T) {
		f := &fakeSnapshot{out: "x", started: make(chan struct{}, 1), release: make(chan struct{})}
		addr := startDBControl(t, ca, f, "primary")
		first := make(chan error, 1)
		go func() { _, err := fetchAll(t, addr, ca, "db", "db-2"); first <- err }()
		<-f.started
		if _, err := fetchAll(t, addr, ca, "db", "db-3"); err == nil || !strings.Contains(err.Error(), "HTTP 429") {
			t.Errorf("a second snapshot at the same time: %v", err)
		}
		close(f.release)
		if err := <-first; err != nil {
			t.Errorf("the first snapshot: %v", err)
		}
	})
}
