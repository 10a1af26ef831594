package agent

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/imgforge/imgforge/pkg/agent/metrics"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// ExporterReports reads the values a role's reports name (role.json's
// reports) from the role's exporters on the node, for the status and
// /metrics: what to read and how is the role's data, so the agent knows
// no role's metrics. Each exporter is asked at most once per TTL.
type ExporterReports struct {
	Role *imagemeta.RoleInfo
	// Options are the node's options now (a report's when).
	Options func() map[string]string
	// Fetch gets an exporter's text exposition (default: HTTP GET with a
	// 2 s timeout).
	Fetch func(ctx context.Context, url string) (io.ReadCloser, error)
	Now   func() time.Time
	TTL   time.Duration // default 5s

	mu     sync.Mutex
	at     time.Time
	values map[string]float64
	errs   []string
}

// Values are the reports' values now, by name (a report without a value
// is left out), and why an exporter could not be read.
func (r *ExporterReports) Values(ctx context.Context) (map[string]float64, []string) {
	if r == nil || r.Role == nil || len(r.Role.Reports) == 0 {
		return nil, nil
	}
	now := time.Now()
	if r.Now != nil {
		now = r.Now()
	}
	ttl := r.TTL
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.at.IsZero() && now.Sub(r.at) < ttl {
		return maps.Clone(r.values), slices.Clone(r.errs)
	}
	r.values, r.errs = r.read(ctx, now)
	r.at = now
	return maps.Clone(r.values), slices.Clone(r.errs)
}

func (r *ExporterReports) read(ctx context.Context, now time.Time) (map[string]float64, []string) {
	var opts map[string]string
	if r.Options != nil {
		opts = r.Options()
	}
	samples := map[string][]model.Sample{}
	failed := map[string]bool{}
	values := map[string]float64{}
	var errs []string
	for _, rp := range r.Role.Reports {
		if !applies(rp, opts) {
			continue
		}
		if _, done := samples[rp.Exporter]; !done && !failed[rp.Exporter] {
			s, err := r.scrape(ctx, rp.Exporter, now)
			if err != nil {
				failed[rp.Exporter] = true
				errs = append(errs, fmt.Sprintf("exporter %s: %v", rp.Exporter, err))
				continue
			}
			samples[rp.Exporter] = s
		}
		if failed[rp.Exporter] {
			continue
		}
		if v, ok := aggregate(rp, samples[rp.Exporter]); ok {
			values[rp.Name] = v
		}
	}
	return values, errs
}

// applies says whether the node's options hold every value of rp.When.
func applies(rp imagemeta.Report, opts map[string]string) bool {
	for k, v := range rp.When {
		if opts[k] != v {
			return false
		}
	}
	return true
}

// aggregate is rp's value from samples: the min or max of the samples of
// its metrics, else Missing.
func aggregate(rp imagemeta.Report, samples []model.Sample) (float64, bool) {
	var v float64
	n := 0
	for _, s := range samples {
		if !slices.Contains(rp.Metrics, string(s.Metric[model.MetricNameLabel])) || math.IsNaN(float64(s.Value)) {
			continue
		}
		x := float64(s.Value)
		switch {
		case n == 0:
			v = x
		case rp.Aggregate == "min":
			v = min(v, x)
		default:
			v = max(v, x)
		}
		n++
	}
	if n > 0 {
		return v, true
	}
	if rp.Missing != nil {
		return *rp.Missing, true
	}
	return 0, false
}

// scrape reads the exporter called name on the node's loopback.
func (r *ExporterReports) scrape(ctx context.Context, name string, now time.Time) ([]model.Sample, error) {
	i := slices.IndexFunc(r.Role.Exporters, func(e imagemeta.Exporter) bool { return e.Name == name })
	if i < 0 {
		return nil, fmt.Errorf("not one of the role's exporters")
	}
	e := r.Role.Exporters[i]
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(e.Port)) + e.Path
	ts := model.TimeFromUnixNano(now.UnixNano())
	if r.Fetch == nil {
		return metrics.Scrape(ctx, reportsClient, url, 16<<20, ts)
	}
	body, err := r.Fetch(ctx, url)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return metrics.Decode(io.LimitReader(body, 16<<20), ts)
}

// reportsClient reads the role's exporters on loopback: no proxy, and an
// exporter that hangs costs a status request at most 2 s.
var reportsClient = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 2 * time.Second}

// writeReports writes the reports' values as imgforge_NAME gauges, with
// their help from the role file.
func writeReports(w io.Writer, ri *imagemeta.RoleInfo, values map[string]float64) {
	if ri == nil {
		return
	}
	for _, rp := range ri.Reports {
		v, ok := values[rp.Name]
		if !ok {
			continue
		}
		name := "imgforge_" + rp.Name
		help := strings.ReplaceAll(strings.Join(strings.Fields(rp.Help), " "), `\`, `\\`)
		if help == "" {
			help = "From the role's exporter " + rp.Exporter + "."
		}
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %s\n", name, help, name, name, strconv.FormatFloat(v, 'g', -1, 64))
	}
}
