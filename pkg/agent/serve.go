package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Listen opens the status endpoint's socket, so that a port in use is an
// error before anything starts.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status endpoint: %w", err)
	}
	return l, nil
}

// Serve serves the agent's Handler on l until ctx ends.
func Serve(ctx context.Context, l net.Listener, a *Agent) error {
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("status endpoint: %w", err)
	}
	return nil
}

// FetchStatus asks a running agent's endpoint (host:port) for its status.
func FetchStatus(ctx context.Context, addr string) (Status, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return Status{}, nil, err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		return Status{}, nil, fmt.Errorf("asking imgforge-agent at %s (is it running?): %w", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return Status{}, nil, fmt.Errorf("reading the status from %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Status{}, nil, fmt.Errorf("status from %s: HTTP %d", addr, resp.StatusCode)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return Status{}, nil, fmt.Errorf("status from %s is not JSON: %w", addr, err)
	}
	return st, body, nil
}

// WriteStatusText prints a status for people.
func WriteStatusText(w io.Writer, s Status) {
	fmt.Fprintf(w, "node      %s (%s, id %d, %s) in cluster %s\n", s.Node.Name, s.Role, s.Node.ID, s.Node.Address, s.Cluster)
	fmt.Fprintf(w, "health    %s\n", map[bool]string{true: "healthy", false: "unhealthy"}[s.Self.Healthy])
	fmt.Fprintf(w, "discovery %s, %d changes\n", s.Discovery, s.Changes)
	for _, r := range s.roles() {
		ms := s.Members.Role(r)
		fmt.Fprintf(w, "%-9s", r)
		if len(ms) == 0 {
			fmt.Fprint(w, " -")
		}
		for _, m := range ms {
			flag := ""
			if !m.Healthy {
				flag = " (unhealthy)"
			}
			if m.Mode != "" {
				flag += " " + m.Mode
			}
			fmt.Fprintf(w, " %s=%s%s", m.Name, m.Address, flag)
		}
		fmt.Fprintln(w)
	}
	for _, f := range s.Files {
		if f.Sensitive {
			fmt.Fprintf(w, "file      %s (sensitive)\n", f.Path)
			continue
		}
		fmt.Fprintf(w, "file      %s sha256:%s\n", f.Path, f.SHA256)
	}
	for _, x := range s.Waiting {
		fmt.Fprintf(w, "waiting   %s\n", x)
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "renders   %d ok, %d failed; last %s\n", s.Renders, s.RenderErrors, ts(s.LastRender))
	fmt.Fprintf(w, "reload    %s\n", ts(s.LastReload))
	for _, k := range slices.Sorted(maps.Keys(s.Reports)) {
		fmt.Fprintf(w, "report    %s %s\n", k, strconv.FormatFloat(s.Reports[k], 'g', -1, 64))
	}
	for _, e := range s.ReportErrors {
		fmt.Fprintf(w, "report    %s\n", e)
	}
	if s.LastError != "" {
		fmt.Fprintf(w, "error     %s: %s\n", ts(s.LastErrorAt), s.LastError)
	}
}
