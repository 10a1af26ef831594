package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"sync"
	"time"
)

// The relay's bounds: one export's body, what it keeps while the endpoint
// is down (the oldest go first), and for how long.
const (
	maxExportBytes = 4 << 20
	maxQueueBytes  = 16 << 20
	maxQueueAge    = 2 * time.Minute
	// relayRetry is the wait before a failed send is tried again.
	relayRetry = 2 * time.Second
)

// Relay takes OTLP/HTTP trace exports from the node's programs on loopback
// (POST /v1/traces, protobuf or JSON, as the OpenTelemetry SDKs send them)
// and forwards each, as it came, to the traces endpoint with the node's
// monitoring credentials over TLS. It answers the program at once, so a
// slow or absent endpoint never holds a request of the application up,
// and keeps the exports briefly while the endpoint is down (maxQueueAge,
// maxQueueBytes), sending them in order once it answers.
type Relay struct {
	url    string
	client *http.Client
	auth   func(*http.Request)
	log    *slog.Logger
	now    func() time.Time

	mu     sync.Mutex
	queue  []export
	queued int // bytes
	seq    uint64
	wake   chan struct{}
	// forwarded and dropped count exports (Counts).
	forwarded, dropped int
}

type export struct {
	seq                   uint64
	body                  []byte
	contentType, encoding string
	at                    time.Time
}

// Relay makes the traces relay of s's configuration (nil without
// traces_url).
func (s *Shipper) Relay() *Relay {
	if s.cfg.TracesURL == "" {
		return nil
	}
	return &Relay{url: s.cfg.TracesURL, client: s.client, auth: s.auth, log: s.log, now: s.now, wake: make(chan struct{}, 1)}
}

// Listen is the relay's address from the configuration.
func (c *Config) Listen() string {
	if c.TracesListen != "" {
		return c.TracesListen
	}
	return DefaultTracesListen
}

// ServeHTTP takes one export.
func (r *Relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" {
		http.Error(w, "not found: this relay takes OTLP/HTTP traces at /v1/traces", http.StatusNotFound)
		return
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if ct != "application/x-protobuf" && ct != "application/json" {
		http.Error(w, "unsupported media type: accepted: application/x-protobuf, application/json", http.StatusUnsupportedMediaType)
		return
	}
	enc := req.Header.Get("Content-Encoding")
	if enc != "" && enc != "gzip" {
		http.Error(w, "unsupported content encoding: accepted: gzip or none", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxExportBytes+1))
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) == 0 {
		http.Error(w, "empty body: accepted: one ExportTraceServiceRequest", http.StatusBadRequest)
		return
	}
	if len(body) > maxExportBytes {
		http.Error(w, fmt.Sprintf("body over %d bytes", maxExportBytes), http.StatusRequestEntityTooLarge)
		return
	}
	r.add(export{body: body, contentType: ct, encoding: enc, at: r.now()})
	// The OTLP/HTTP answer: an empty ExportTraceServiceResponse in the
	// request's encoding.
	w.Header().Set("Content-Type", ct)
	if ct == "application/json" {
		_, _ = io.WriteString(w, "{}")
	}
}

func (r *Relay) add(e export) {
	r.mu.Lock()
	r.seq++
	e.seq = r.seq
	r.queue = append(r.queue, e)
	r.queued += len(e.body)
	r.trim()
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// trim drops the oldest exports over the bounds; r.mu held.
func (r *Relay) trim() {
	n := 0
	for n < len(r.queue) && (r.queued > maxQueueBytes || r.now().Sub(r.queue[n].at) > maxQueueAge) {
		r.queued -= len(r.queue[n].body)
		n++
	}
	if n > 0 {
		r.dropped += n
		r.log.Warn("the traces endpoint has not taken spans for a while: dropping the oldest", "exports", n)
		r.queue = r.queue[n:]
	}
}

// Serve listens on addr (loopback) and forwards until ctx ends.
func (r *Relay) Serve(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("traces relay: %w", err)
	}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go r.Forward(ctx)
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("traces relay: %w", err)
	}
	return nil
}

// Forward sends the queued exports in order until ctx ends: at once when
// one comes, again relayRetry after a failure.
func (r *Relay) Forward(ctx context.Context) {
	retry := time.NewTimer(relayRetry)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-retry.C:
		}
		r.flush(ctx)
		retry.Reset(relayRetry)
	}
}

// flush sends what is queued, oldest first, until a send fails.
func (r *Relay) flush(ctx context.Context) {
	for {
		r.mu.Lock()
		r.trim()
		if len(r.queue) == 0 {
			r.mu.Unlock()
			return
		}
		e := r.queue[0]
		r.mu.Unlock()
		err := r.send(ctx, e)
		var perm permanent
		switch {
		case errors.As(err, &perm):
			r.log.Error("the traces endpoint refused spans", "err", err)
		case err != nil:
			r.log.Warn("forwarding spans; kept for a retry", "err", err)
			return
		}
		r.mu.Lock()
		// trim may have dropped e while it was being sent.
		if len(r.queue) > 0 && r.queue[0].seq == e.seq {
			r.queue = r.queue[1:]
			r.queued -= len(e.body)
			if err == nil {
				r.forwarded++
			} else {
				r.dropped++
			}
		}
		r.mu.Unlock()
	}
}

func (r *Relay) send(ctx context.Context, e export) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(e.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", e.contentType)
	if e.encoding != "" {
		req.Header.Set("Content-Encoding", e.encoding)
	}
	return send(r.client, r.auth, req)
}

// Counts are the exports forwarded and dropped so far.
func (r *Relay) Counts() (forwarded, dropped int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.forwarded, r.dropped
}
