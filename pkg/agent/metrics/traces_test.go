package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// span is an OTLP/JSON export of one span, as the default apps send it.
func span(traceID, name string) string {
	return `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"app"}}]},` +
		`"scopeSpans":[{"scope":{"name":"imgforge"},"spans":[{"traceId":"` + traceID + `","spanId":"00f067aa0ba902b7",` +
		`"name":"` + name + `","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2"}]}]}]}`
}

// traceIDs reads the trace ids of an OTLP/JSON export.
func traceIDs(t *testing.T, b []byte) []string {
	t.Helper()
	var req struct {
		ResourceSpans []struct {
			ScopeSpans []struct {
				Spans []struct {
					TraceID string `json:"traceId"`
				} `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	}
	if err := json.Unmarshal(b, &req); err != nil {
		t.Errorf("the endpoint got %q: %v", b, err)
		return nil
	}
	var ids []string
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				ids = append(ids, s.TraceID)
			}
		}
	}
	return ids
}

func relayFor(t *testing.T, url string) (*Relay, *Shipper) {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{TracesURL: url, Instance: "app-1", User: "e2e", SecretFile: secret}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Relay()
	if r == nil {
		t.Fatal("no relay with traces_url set")
	}
	return r, s
}

func post(t *testing.T, h http.Handler, path, ct, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", ct)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// TestRelayForwards: exports are answered at once, kept while the endpoint
// is down, and sent in order, with the credentials, once it answers; one
// the endpoint refuses (a 400) is dropped and the next goes on.
func TestRelayForwards(t *testing.T) {
	var mu sync.Mutex
	var got []string
	status := http.StatusServiceUnavailable
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/v1/traces" {
			t.Errorf("path %q", r.URL.Path)
		}
		if u, p, ok := r.BasicAuth(); !ok || u != "e2e" || p != "s3cret" {
			t.Errorf("basic auth %q %q %v", u, p, ok)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		b, _ := io.ReadAll(r.Body)
		ids := traceIDs(t, b)
		if len(ids) == 1 && ids[0] == "bad" {
			http.Error(w, "invalid trace id", http.StatusBadRequest)
			return
		}
		if status != http.StatusOK {
			http.Error(w, "down", status)
			return
		}
		got = append(got, ids...)
		io.WriteString(w, "{}")
	}))
	defer srv.Close()
	r, _ := relayFor(t, srv.URL+"/v1/traces")

	ids := []string{"4bf92f3577b34da6a3ce929d0e0e4736", "bad", "0af7651916cd43dd8448eb211c80319c"}
	for _, id := range ids {
		w := post(t, r, "/v1/traces", "application/json", span(id, "GET /"))
		if w.Code != http.StatusOK || w.Body.String() != "{}" {
			t.Fatalf("export answered %d %q", w.Code, w.Body.String())
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.flush(ctx) // the endpoint is down: all kept
	if f, d := r.Counts(); f != 0 || d != 0 {
		t.Fatalf("with the endpoint down: forwarded %d, dropped %d", f, d)
	}
	mu.Lock()
	status = http.StatusOK
	mu.Unlock()
	go r.Forward(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if f, d := r.Counts(); f == 2 && d == 1 {
			break
		}
		if time.Now().After(deadline) {
			f, d := r.Counts()
			t.Fatalf("forwarded %d, dropped %d; want 2 and 1", f, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{ids[0], ids[2]}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("the endpoint got %v, want %v in order", got, want)
	}
}

// TestRelayBounds: exports older than maxQueueAge, or over maxQueueBytes
// in all, are dropped oldest first.
func TestRelayBounds(t *testing.T) {
	r, _ := relayFor(t, "http://127.0.0.1:1/v1/traces")
	now := time.Unix(1e9, 0)
	r.now = func() time.Time { return now }
	post(t, r, "/v1/traces", "application/json", span("01", "old"))
	now = now.Add(maxQueueAge + time.Second)
	post(t, r, "/v1/traces", "application/json", span("02", "new"))
	if len(r.queue) != 1 || !bytes.Contains(r.queue[0].body, []byte(`"02"`)) {
		t.Errorf("after %s the queue holds %d exports, want the new one", maxQueueAge, len(r.queue))
	}
	big := strings.Repeat("x", maxExportBytes-100)
	for i := 0; i < maxQueueBytes/len(big)+2; i++ {
		if w := post(t, r, "/v1/traces", "application/x-protobuf", big); w.Code != http.StatusOK {
			t.Fatalf("export %d: %d %s", i, w.Code, w.Body)
		}
	}
	if r.queued > maxQueueBytes {
		t.Errorf("%d bytes kept, over %d", r.queued, maxQueueBytes)
	}
	if _, d := r.Counts(); d < 3 {
		t.Errorf("dropped %d exports, want the old one and the oldest big ones", d)
	}
}

// TestRelayRefuses: what is not an OTLP/HTTP traces export is refused
// with a status that says why, and not kept.
func TestRelayRefuses(t *testing.T) {
	r, _ := relayFor(t, "http://127.0.0.1:1/v1/traces")
	for _, tc := range []struct {
		method, path, ct, body string
		code                   int
	}{
		{http.MethodPost, "/v1/metrics", "application/json", "{}", http.StatusNotFound},
		{http.MethodGet, "/v1/traces", "application/json", "", http.StatusMethodNotAllowed},
		{http.MethodPost, "/v1/traces", "text/plain", "{}", http.StatusUnsupportedMediaType},
		{http.MethodPost, "/v1/traces", "application/json", "", http.StatusBadRequest},
		{http.MethodPost, "/v1/traces", "application/json", strings.Repeat("x", maxExportBytes+1), http.StatusRequestEntityTooLarge},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		req.Header.Set("Content-Type", tc.ct)
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != tc.code {
			t.Errorf("%s %s (%s, %d bytes): %d, want %d", tc.method, tc.path, tc.ct, len(tc.body), w.Code, tc.code)
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/traces", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "br")
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code != http.StatusUnsupportedMediaType {
		t.Errorf("Content-Encoding br: %d", w.Code)
	}
	if len(r.queue) != 0 {
		t.Errorf("%d refused exports kept", len(r.queue))
	}
}

// TestRelayServes: the relay listens where the configuration says, on
// loopback, and a real HTTP client's export reaches the endpoint.
func TestRelayServes(t *testing.T) {
	got := make(chan []string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- traceIDs(t, b)
	}))
	defer srv.Close()
	r, _ := relayFor(t, srv.URL+"/v1/traces")
	l := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, l) }()
	id := "4bf92f3577b34da6a3ce929d0e0e4736"
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Post("http://"+l+"/v1/traces", "application/json", strings.NewReader(span(id, "GET /")))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("export: %s", resp.Status)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case ids := <-got:
		if len(ids) != 1 || ids[0] != id {
			t.Errorf("the endpoint got %v", ids)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the export did not reach the endpoint")
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// freePort is a loopback address with a port nobody listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
