package agent

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/config"
)

// startStatic runs an agent of web-1 with static discovery.
func startStatic(t *testing.T, health func(context.Context) bool) (*Agent, *recorder) {
	t.Helper()
	rec := newRecorder()
	a := New(Options{
		Load: func() (*config.Config, error) {
			c, src, err := config.Parse("user-data", []byte(staticUserData("        - {name: lb-1, role: lb, address: 10.0.0.11}\n")))
			if err != nil {
				return nil, err
			}
			return c, c.Complete(src, config.InstanceData{InstanceID: "web-1"}, nil)
		},
		Renderer: rec, Health: health, Debounce: 10 * time.Millisecond, HealthInterval: 20 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	return a, rec
}

// logf is t.Logf until the test ends, and nothing after: the control
// endpoint's server logs a refused handshake when it sees it, which may
// be after the test that made it.
func logf(t *testing.T) func(string, ...any) {
	var mu sync.Mutex
	done := false
	t.Cleanup(func() { mu.Lock(); done = true; mu.Unlock() })
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			t.Logf(format, args...)
		}
	}
}

// startControl serves a control endpoint of node web-1 on loopback.
func startControl(t *testing.T, ca *testCA, a *Agent, update func(context.Context, UpdateRequest) (UpdateResponse, error), reboots *atomic.Int32) string {
	t.Helper()
	c, err := NewControl(ControlOptions{
		Identity: ca.node(t, "web", "web-1"), Agent: a, Update: update,
		Image:  func() (Image, error) { return Image{Role: "web", Version: "0123456789ab", Slot: "a"}, nil },
		Reboot: func() error { reboots.Add(1); return nil },
		Logf:   logf(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	return serveControl(t, c)
}

func operatorCert(t *testing.T, ca *testCA) tls.Certificate {
	t.Helper()
	c, err := ca.ca.IssueOperator(rand.Reader, "test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestControlAuth: only an operator certificate of the cluster's CA
// commands a node; no certificate, a node's certificate (of any role) and
// an operator certificate of another cluster are refused, for every
// endpoint.
func TestControlAuth(t *testing.T) {
	ca := shopCA(t)
	a, _ := startStatic(t, nil)
	var reboots atomic.Int32
	var updates atomic.Int32
	addr := startControl(t, ca, a, func(context.Context, UpdateRequest) (UpdateResponse, error) {
		updates.Add(1)
		return UpdateResponse{Slot: "b", Version: "fedcba987654"}, nil
	}, &reboots)
	nodeCert := ca.node(t, "lb", "lb-1").TLSCertificate()
	other := newTestCA(t, "shop") // same cluster name, another CA
	tests := []struct {
		name   string
		client tls.Certificate
		ok     bool
	}{
		{"operator", operatorCert(t, ca), true},
		{"no certificate", tls.Certificate{}, false},
		{"node certificate", nodeCert, false},
		{"own node certificate", ca.node(t, "web", "web-1").TLSCertificate(), false},
		{"operator of another CA", operatorCert(t, other), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewControlClient(addr, "web-1", ca.ca.Cert, tt.client)
			if _, err := c.Status(t.Context()); (err == nil) != tt.ok {
				t.Fatalf("status: %v, want ok=%v", err, tt.ok)
			}
			if _, err := c.Drain(t.Context()); (err == nil) != tt.ok {
				t.Fatalf("drain: %v, want ok=%v", err, tt.ok)
			}
			if _, err := c.Update(t.Context(), UpdateRequest{Source: "https://192.0.2.1/sets/web/"}); (err == nil) != tt.ok {
				t.Fatalf("update: %v, want ok=%v", err, tt.ok)
			}
			if _, err := c.Undrain(t.Context()); (err == nil) != tt.ok {
				t.Fatalf("undrain: %v, want ok=%v", err, tt.ok)
			}
		})
	}
	if n := updates.Load(); n != 1 {
		t.Errorf("%d updates ran, want 1 (the operator's)", n)
	}
	// A client that talks to the wrong node is refused by the client.
	c := NewControlClient(addr, "web-2", ca.ca.Cert, operatorCert(t, ca))
	if _, err := c.Status(t.Context()); err == nil || !strings.Contains(err.Error(), "not web-2's") {
		t.Errorf("asking web-2 at web-1's address: %v", err)
	}
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestControlStatusKeepsConnection: status requests share one connection
// (one TLS handshake on the node for a rollout's polls); each command has
// a connection of its own.
func TestControlStatusKeepsConnection(t *testing.T) {
	ca := shopCA(t)
	a, _ := startStatic(t, nil)
	c, err := NewControl(ControlOptions{
		Identity: ca.node(t, "web", "web-1"), Agent: a,
		Update: func(context.Context, UpdateRequest) (UpdateResponse, error) { return UpdateResponse{}, nil },
		Image:  func() (Image, error) { return Image{Role: "web", Version: "0123456789ab", Slot: "a"}, nil },
		Reboot: func() error { return nil }, Logf: logf(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	l0, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &countingListener{Listener: l0}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeControl(ctx, l, c) }()
	t.Cleanup(func() { cancel(); <-done })
	cl := NewControlClient(l0.Addr().String(), "web-1", ca.ca.Cert, operatorCert(t, ca))
	for range 5 {
		if _, err := cl.Status(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.n.Load(); n != 1 {
		t.Errorf("5 status requests took %d connections, want 1", n)
	}
	for range 2 {
		if _, err := cl.Drain(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := l.n.Load(); n != 3 {
		t.Errorf("2 drains after the status requests: %d connections in all, want 3", n)
	}
}

// TestControlHandlerNeedsTLS: the handler checks the operator itself,
// behind any listener.
func TestControlHandlerNeedsTLS(t *testing.T) {
	ca := shopCA(t)
	a, _ := startStatic(t, nil)
	c, err := NewControl(ControlOptions{Identity: ca.node(t, "web", "web-1"), Agent: a})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodGet, ControlStatusPath, nil),
		httptest.NewRequest(http.MethodPost, ControlUpdatePath, strings.NewReader(`{"source":"x"}`)),
	} {
		w := httptest.NewRecorder()
		c.Handler().ServeHTTP(w, r)
		if w.Code != http.StatusUnauthorized {
			t.Errorf("%s %s without TLS: HTTP %d", r.Method, r.URL.Path, w.Code)
		}
	}
	if _, err := NewControl(ControlOptions{Agent: a}); err == nil {
		t.Error("a control endpoint without the node's identity started")
	}
}

// TestControlDrainUpdate: drain advertises the node unhealthy and renders
// with Draining; undrain reverses it; update answers, then reboots.
func TestControlDrainUpdate(t *testing.T) {
	ca := shopCA(t)
	a, rec := startStatic(t, nil)
	var reboots atomic.Int32
	var got UpdateRequest
	addr := startControl(t, ca, a, func(_ context.Context, req UpdateRequest) (UpdateResponse, error) {
		got = req
		return UpdateResponse{Slot: "b", Role: "web", Version: "fedcba987654"}, nil
	}, &reboots)
	c := NewControlClient(addr, "web-1", ca.ca.Cert, operatorCert(t, ca))
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Healthy || st.Draining || st.Image.Version != "0123456789ab" || st.Node != "web-1" || st.Role != "web" {
		t.Fatalf("status %+v", st)
	}
	if st, err = c.Drain(t.Context()); err != nil || !st.Draining || st.Healthy {
		t.Fatalf("drain: %+v %v", st, err)
	}
	rec.waitRender(t, "a draining render", func(s Snapshot) bool { return s.Draining && !s.Self.Healthy })
	if st, err = c.Undrain(t.Context()); err != nil || st.Draining {
		t.Fatalf("undrain: %+v %v", st, err)
	}
	rec.waitRender(t, "a render in service", func(s Snapshot) bool { return !s.Draining && s.Self.Healthy })
	res, err := c.Update(t.Context(), UpdateRequest{Source: "https://192.0.2.1/sets/web/", Tries: 1, Trial: "90s"})
	if err != nil || res.Version != "fedcba987654" || !res.Reboot {
		t.Fatalf("update: %+v %v", res, err)
	}
	if got.Tries != 1 || got.Trial != "90s" {
		t.Errorf("the node's update got %+v, want tries 1 and trial 90s", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for reboots.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if reboots.Load() != 1 {
		t.Errorf("%d reboots after the update", reboots.Load())
	}
	for _, tt := range []struct {
		req  UpdateRequest
		want string
	}{
		{UpdateRequest{Source: " "}, "source: empty"},
		{UpdateRequest{Source: "https://192.0.2.1/sets/web/", Tries: 10}, "tries: 10; accepted: 1 to 9"},
		{UpdateRequest{Source: "https://192.0.2.1/sets/web/", Tries: -1}, "tries: -1; accepted: 1 to 9"},
		{UpdateRequest{Source: "https://192.0.2.1/sets/web/", Trial: "soon"}, `trial: "soon"; accepted: a duration`},
		{UpdateRequest{Source: "https://192.0.2.1/sets/web/", Trial: "2h"}, `trial: "2h"; accepted: a duration from 0s to 1h0m0s`},
	} {
		if _, err := c.Update(t.Context(), tt.req); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("update %+v: %v, want an error with %q", tt.req, err, tt.want)
		}
	}
	if reboots.Load() != 1 {
		t.Errorf("refused updates rebooted the node: %d reboots", reboots.Load())
	}
}

// TestHealthFall: a healthy node stays healthy through two failed checks
// in a row (a slow answer on a loaded machine), and advertises itself
// unhealthy at the third; it is healthy again at its first passing check.
func TestHealthFall(t *testing.T) {
	var calls atomic.Int32
	var failFrom, failTo atomic.Int32
	failFrom.Store(1 << 30)
	health := func(context.Context) bool {
		n := calls.Add(1)
		return n < failFrom.Load() || n >= failTo.Load()
	}
	a, rec := startStatic(t, health)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	healthy := func() bool { s, _ := rec.last(); return s.Self.Healthy }
	waitFor("healthy", healthy)
	// Two failures in a row, soon.
	n := calls.Load()
	failFrom.Store(n + 2)
	failTo.Store(n + 4)
	waitFor("the two failed checks and one more", func() bool { return calls.Load() >= n+5 })
	if st := a.Status(); !st.Self.Healthy {
		t.Fatalf("unhealthy after two failed checks")
	}
	rec.mu.Lock()
	first := slices.IndexFunc(rec.snaps, func(s Snapshot) bool { return s.Self.Healthy })
	for _, s := range rec.snaps[first:] {
		if !s.Self.Healthy {
			t.Errorf("rendered unhealthy after two failed checks")
			break
		}
	}
	rec.mu.Unlock()
	// Failing for good: unhealthy after the third.
	n = calls.Load()
	failFrom.Store(n + 1)
	failTo.Store(1 << 30)
	waitFor("unhealthy", func() bool { return !healthy() })
	if got := calls.Load() - n; got < 3 {
		t.Errorf("unhealthy after %d failed checks, want 3", got)
	}
	failTo.Store(calls.Load() + 1)
	waitFor("healthy again", healthy)
}

// serveControl serves c on a loopback port until the test ends.
func serveControl(t *testing.T, c *Control) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeControl(ctx, l, c) }()
	t.Cleanup(func() { cancel(); <-done })
	return l.Addr().String()
}
