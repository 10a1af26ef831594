package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/discovery"
)

// Status is what GET /status returns.
type Status struct {
	Version      string           `json:"version,omitempty"`
	Cluster      string           `json:"cluster,omitempty"`
	Role         string           `json:"role,omitempty"`
	Node         config.Node      `json:"node"`
	Self         discovery.Member `json:"self"`
	Discovery    string           `json:"discovery,omitempty"`
	Members      discovery.Set    `json:"members"`
	Files        []RenderedFile   `json:"files"`
	Started      time.Time        `json:"started,omitzero"`
	LastRender   time.Time        `json:"last_render,omitzero"`
	LastReload   time.Time        `json:"last_reload,omitzero"`
	Waiting      []string         `json:"waiting,omitempty"`
	LastError    string           `json:"last_error,omitempty"`
	LastErrorAt  time.Time        `json:"last_error_at,omitzero"`
	Renders      uint64           `json:"renders"`
	RenderErrors uint64           `json:"render_errors"`
	ConfigErrors uint64           `json:"config_errors"`
	Changes      uint64           `json:"discovery_changes"`
	// Draining says the node is leaving service (the control endpoint's
	// drain).
	Draining bool `json:"draining,omitempty"`
	// Rendered are the members of the last snapshot rendered without
	// error: the peers this node's configuration holds now.
	Rendered discovery.Set `json:"rendered"`
	// Reports are the values of the role's reports (role.json's reports,
	// read from its exporters), by name; ReportErrors say why an
	// exporter could not be read. Only GET /status and /metrics ask.
	Reports      map[string]float64 `json:"reports,omitempty"`
	ReportErrors []string           `json:"report_errors,omitempty"`
}

// Status returns the agent's state now.
func (a *Agent) Status() Status {
	a.mu.Lock()
	st := a.st
	a.mu.Unlock()
	s := Status{
		Version: a.o.Version, Self: st.self, Discovery: st.method, Members: st.members,
		Started: st.started, LastRender: st.lastRender, LastError: st.lastError, LastErrorAt: st.lastErrorAt,
		Renders: st.renders, RenderErrors: st.renderErrors, ConfigErrors: st.configErrors, Changes: st.changes,
		Files: []RenderedFile{}, Draining: st.draining, Rendered: st.rendered,
	}
	if s.Rendered == nil {
		s.Rendered = discovery.Set{}
	}
	if s.Members == nil {
		s.Members = discovery.Set{}
	}
	if st.cfg != nil {
		s.Cluster, s.Role, s.Node = st.cfg.Cluster, st.cfg.Role, st.cfg.Node
	}
	if rep, ok := a.o.Renderer.(Reporter); ok {
		r := rep.Report()
		if r.Files != nil {
			s.Files = r.Files
		}
		s.LastReload, s.Waiting = r.LastReload, r.Waiting
	}
	return s
}

// Handler serves GET /status (JSON) and GET /metrics (Prometheus text
// exposition format 0.0.4, written by hand: a handful of gauges and
// counters do not need a client library).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st := a.Status()
		st.Reports, st.ReportErrors = a.o.Reports.Values(r.Context())
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		values, _ := a.o.Reports.Values(r.Context())
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		WriteMetrics(w, a.Status())
		if a.o.Reports != nil {
			writeReports(w, a.o.Reports.Role, values)
		}
		writeProcessMetrics(w)
	})
	return mux
}

// WriteMetrics writes s in the Prometheus text format.
func WriteMetrics(w io.Writer, s Status) {
	metric := func(name, typ, help string) { metricHeader(w, name, typ, help) }
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "0"
		}
		return fmt.Sprintf("%.3f", float64(t.UnixMilli())/1000)
	}
	metric("imgforge_agent_info", "gauge", "The agent's node, role and cluster.")
	fmt.Fprintf(w, "imgforge_agent_info{cluster=%s,role=%s,node=%s,discovery=%s,version=%s} 1\n",
		label(s.Cluster), label(s.Role), label(s.Node.Name), label(s.Discovery), label(s.Version))
	metric("imgforge_agent_members", "gauge", "Live members known by discovery, by role (this node included).")
	for _, r := range s.roles() {
		fmt.Fprintf(w, "imgforge_agent_members{role=%s} %d\n", label(r), len(s.Members.Role(r)))
	}
	metric("imgforge_agent_members_healthy", "gauge", "Live members that advertise a healthy service, by role.")
	for _, r := range s.roles() {
		n := 0
		for _, m := range s.Members.Role(r) {
			if m.Healthy {
				n++
			}
		}
		fmt.Fprintf(w, "imgforge_agent_members_healthy{role=%s} %d\n", label(r), n)
	}
	metric("imgforge_agent_healthy", "gauge", "1 when this node's role service passes its health check.")
	fmt.Fprintf(w, "imgforge_agent_healthy %d\n", b2i(s.Self.Healthy))
	metric("imgforge_agent_renders_total", "counter", "Renders, by result.")
	fmt.Fprintf(w, "imgforge_agent_renders_total{result=\"ok\"} %d\n", s.Renders)
	fmt.Fprintf(w, "imgforge_agent_renders_total{result=\"error\"} %d\n", s.RenderErrors)
	metric("imgforge_agent_config_errors_total", "counter", "Times the settings were invalid.")
	fmt.Fprintf(w, "imgforge_agent_config_errors_total %d\n", s.ConfigErrors)
	metric("imgforge_agent_discovery_changes_total", "counter", "Membership changes discovery reported.")
	fmt.Fprintf(w, "imgforge_agent_discovery_changes_total %d\n", s.Changes)
	metric("imgforge_agent_rendered_files", "gauge", "Files the renderers manage.")
	fmt.Fprintf(w, "imgforge_agent_rendered_files %d\n", len(s.Files))
	metric("imgforge_agent_last_render_timestamp_seconds", "gauge", "When the last render succeeded (0: never).")
	fmt.Fprintf(w, "imgforge_agent_last_render_timestamp_seconds %s\n", ts(s.LastRender))
	metric("imgforge_agent_last_reload_timestamp_seconds", "gauge", "When a service was last reloaded (0: never).")
	fmt.Fprintf(w, "imgforge_agent_last_reload_timestamp_seconds %s\n", ts(s.LastReload))
	metric("imgforge_agent_last_error_timestamp_seconds", "gauge", "When the last error happened (0: never).")
	fmt.Fprintf(w, "imgforge_agent_last_error_timestamp_seconds %s\n", ts(s.LastErrorAt))
}

// writeProcessMetrics writes the agent process's own use of the node,
// under the names Prometheus's client libraries give them: resident
// memory, CPU time, Go heap in use and goroutines. The metrics shipper
// scrapes the agent too (job "agent"), so they reach the monitoring
// service with every node's.
func writeProcessMetrics(w io.Writer) {
	gauge := func(name, help string, v any) {
		metricHeader(w, name, "gauge", help)
		fmt.Fprintf(w, "%s %v\n", name, v)
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		metricHeader(w, "process_cpu_seconds_total", "counter", "User and system CPU time of the agent.")
		fmt.Fprintf(w, "process_cpu_seconds_total %.3f\n", cpu.Seconds())
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		// size resident shared ... in pages
		if f := strings.Fields(string(b)); len(f) > 1 {
			if pages, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				gauge("process_resident_memory_bytes", "Resident memory of the agent.", pages*int64(os.Getpagesize()))
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	gauge("go_memstats_heap_inuse_bytes", "Go heap in use.", ms.HeapInuse)
	gauge("go_goroutines", "Goroutines of the agent.", runtime.NumGoroutine())
}

// metricHeader writes a metric's HELP and TYPE lines.
func metricHeader(w io.Writer, name, typ, help string) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// label quotes a label value as the text format wants.
func label(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(v) + `"`
}

// roles are the roles the status shows: this node's and those of its
// members, sorted (roles are names from the role files, not a list the
// agent knows).
func (s Status) roles() []string {
	out := []string{}
	if s.Role != "" {
		out = append(out, s.Role)
	}
	for r := range s.Members {
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}
