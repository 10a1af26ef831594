package metrics

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/common/model"
)

// exposition is a text exposition with each kind of metric, and a target
// label that collides with the job label.
const exposition = `# HELP demo_requests_total Requests.
# TYPE demo_requests_total counter
demo_requests_total{code="200"} 1027
demo_requests_total{code="500"} 3
# TYPE demo_temperature gauge
demo_temperature -4.5
# TYPE demo_latency_seconds histogram
demo_latency_seconds_bucket{le="0.1"} 5
demo_latency_seconds_bucket{le="1"} 8
demo_latency_seconds_bucket{le="+Inf"} 9
demo_latency_seconds_sum 3.5
demo_latency_seconds_count 9
# TYPE demo_rpc summary
demo_rpc{quantile="0.5"} 0.2
demo_rpc_sum 12
demo_rpc_count 40
demo_untyped{job="theirs"} 7
`

func exporter(t *testing.T, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

func TestValidate(t *testing.T) {
	good := func() Config {
		return Config{
			URL: "https://metrics.example/api/v1/write", Instance: "web-1",
			Labels: map[string]string{"node": "web-1", "role": "web"},
			Jobs:   []Job{{Name: "node", URL: "http://127.0.0.1:9100/metrics"}},
			User:   "u", SecretFile: "/run/credentials/x/metrics.secret",
		}
	}
	if c := good(); c.Validate() != nil {
		t.Fatalf("a good config: %v", c.Validate())
	}
	for _, tc := range []struct {
		field string
		edit  func(*Config)
	}{
		{"url", func(c *Config) { c.URL = "ftp://x/" }},
		{"url", func(c *Config) { c.URL = "http://metrics.example/api/v1/write" }},
		{"url", func(c *Config) { c.URL = "https://u:p@metrics.example/" }},
		{"labels", func(c *Config) { c.Labels["bad-name"] = "x" }},
		{"labels", func(c *Config) { c.Labels["__name__"] = "x" }},
		{"labels", func(c *Config) { c.Labels["node"] = "" }},
		{"instance", func(c *Config) { c.Instance = "" }},
		{"jobs", func(c *Config) { c.Jobs = nil }},
		{"jobs[1].name", func(c *Config) { c.Jobs = append(c.Jobs, c.Jobs[0]) }},
		{"jobs[0].url", func(c *Config) { c.Jobs[0].URL = "http://10.0.0.1:9100/metrics" }},
		{"jobs[0].url", func(c *Config) { c.Jobs[0].URL = "file:///etc/shadow" }},
		{"user", func(c *Config) { c.SecretFile = "" }},
		{"bearer", func(c *Config) { c.User, c.SecretFile, c.Bearer = "", "", true }},
		{"interval_seconds", func(c *Config) { c.IntervalSeconds = -1 }},
		{"traces_url", func(c *Config) { c.TracesURL = "http://collector.example:4318/v1/traces" }},
		{"traces_url", func(c *Config) { c.TracesURL = "https://u:p@collector.example/v1/traces" }},
		{"traces_listen", func(c *Config) { c.TracesURL, c.TracesListen = "https://c.example/v1/traces", "0.0.0.0:4318" }},
		{"traces_listen", func(c *Config) { c.TracesURL, c.TracesListen = "https://c.example/v1/traces", "127.0.0.1" }},
		{"url", func(c *Config) { c.URL = "" }},
		{"jobs", func(c *Config) { c.URL, c.TracesURL = "", "https://c.example/v1/traces" }},
	} {
		c := good()
		tc.edit(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.field+":") {
			t.Errorf("%s: got %v, want an error naming %s", tc.field, err, tc.field)
		}
		if err != nil && strings.Contains(err.Error(), "u:p@") {
			t.Errorf("the error shows the URL's credentials: %v", err)
		}
	}
	traces := Config{TracesURL: "https://c.example/v1/traces", TracesListen: "[::1]:4318", Instance: "app-1", User: "u", SecretFile: "/s"}
	if err := traces.Validate(); err != nil {
		t.Errorf("a traces-only config: %v", err)
	}
	if _, err := Parse([]byte(`{"url":"https://x/","instance":"a","jobs":[{"name":"n","url":"http://127.0.0.1:1/"}],"extra":1}`)); err == nil {
		t.Error("an unknown field was accepted")
	}
	file := `{"url":"https://x/","instance":"a","jobs":[{"name":"n","url":"http://127.0.0.1:1/"}]}`
	if _, err := Parse([]byte(file + "\n")); err != nil {
		t.Errorf("a good file: %v", err)
	}
	for _, tail := range []string{"\nimgforge_bogus_directive on;\n", "{}", "\n[1]"} {
		if _, err := Parse([]byte(file + tail)); err == nil {
			t.Errorf("data after the object (%q) was accepted", tail)
		}
	}
}

type series struct {
	labels map[string]string
	value  float64
	ts     int64
}

// decodeWrite reads a remote-write body back with DecodeWrite.
func decodeWrite(t *testing.T, body []byte) []series {
	t.Helper()
	samples, err := DecodeWrite(body)
	if err != nil {
		t.Fatal(err)
	}
	var out []series
	for _, s := range samples {
		l := map[string]string{}
		for k, v := range s.Metric {
			l[string(k)] = string(v)
		}
		out = append(out, series{labels: l, value: float64(s.Value), ts: int64(s.Timestamp)})
	}
	return out
}

func key(l map[string]string) string {
	var parts []string
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// TestShipperPushes checks the request the shipper makes: the headers, the
// authentication, every sample with its labels, and that samples kept
// while the endpoint failed arrive later, in order.
func TestShipperPushes(t *testing.T) {
	var mu sync.Mutex
	var got [][]series
	fail := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if u, p, ok := r.BasicAuth(); !ok || u != "e2e" || p != "s3cret" {
			t.Errorf("basic auth %q %q %v", u, p, ok)
		}
		for h, want := range map[string]string{"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf", "X-Prometheus-Remote-Write-Version": "0.1.0"} {
			if r.Header.Get(h) != want {
				t.Errorf("%s: %q, want %q", h, r.Header.Get(h), want)
			}
		}
		b, _ := io.ReadAll(r.Body)
		got = append(got, decodeWrite(t, b))
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{
		URL: srv.URL + "/api/v1/write", Instance: "web-1",
		Labels: map[string]string{"node": "web-1", "role": "web"},
		Jobs: []Job{
			{Name: "demo", URL: exporter(t, exposition)},
			{Name: "gone", URL: "http://127.0.0.1:1/metrics"},
		},
		User: "e2e", SecretFile: secret,
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sh, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1767225600, 0)
	sh.now = func() time.Time { return clock }
	sh.Once(context.Background()) // the endpoint fails: kept
	if len(sh.pending) != 1 {
		t.Fatalf("pending after a failed push: %d, want 1", len(sh.pending))
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	clock = clock.Add(30 * time.Second)
	sh.Once(context.Background())
	if len(sh.pending) != 0 || len(got) != 2 {
		t.Fatalf("after the endpoint came back: %d pending, %d pushes; want 0 and 2", len(sh.pending), len(got))
	}
	if got[0][0].ts != 1767225600000 || got[1][0].ts != 1767225630000 {
		t.Errorf("pushes out of order: timestamps %d, %d", got[0][0].ts, got[1][0].ts)
	}
	byKey := map[string]float64{}
	for _, s := range got[1] {
		byKey[key(s.labels)] = s.value
	}
	// Each sample has the job, the instance and the external labels.
	for extra, want := range map[string]float64{
		"__name__=demo_requests_total,code=200,job=demo":        1027,
		"__name__=demo_temperature,job=demo":                    -4.5,
		"__name__=demo_latency_seconds_bucket,job=demo,le=+Inf": 9,
		"__name__=demo_latency_seconds_sum,job=demo":            3.5,
		"__name__=demo_rpc,job=demo,quantile=0.5":               0.2,
		"__name__=demo_rpc_count,job=demo":                      40,
		"__name__=demo_untyped,exported_job=theirs,job=demo":    7,
		"__name__=up,job=demo":                                  1,
		"__name__=up,job=gone":                                  0,
		"__name__=scrape_samples_scraped,job=demo":              12,
	} {
		lbl := map[string]string{"instance": "web-1", "node": "web-1", "role": "web"}
		for _, p := range strings.Split(extra, ",") {
			n, v, _ := strings.Cut(p, "=")
			lbl[n] = v
		}
		if v, ok := byKey[key(lbl)]; !ok || v != want {
			t.Errorf("%s: %v (present %v), want %v", key(lbl), v, ok, want)
		}
	}
	if len(got[1]) != 18 {
		t.Errorf("%d samples in a push, want 18 (12 scraped, 3 for each of the 2 jobs)", len(got[1]))
	}
}

// TestShipperKeepsAtMost bounds what is kept while the endpoint is down.
func TestShipperKeepsAtMost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no", http.StatusBadGateway)
	}))
	defer srv.Close()
	sh, err := New(&Config{URL: srv.URL, Instance: "x", Jobs: []Job{{Name: "demo", URL: exporter(t, exposition)}}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for range maxPending + 5 {
		sh.Once(context.Background())
	}
	if len(sh.pending) != maxPending {
		t.Errorf("pending: %d, want %d", len(sh.pending), maxPending)
	}
}

// TestShipperToPrometheus pushes to a real Prometheus (Debian's, with its
// remote-write receiver on) and reads the samples back with PromQL.
func TestShipperToPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("runs prometheus")
	}
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus (Debian package prometheus, which hack/setup.sh installs): %v", err)
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte("global: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--web.enable-remote-write-receiver")
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() { cancel(); <-done }()
	base := "http://" + addr
	for i := 0; ; i++ {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("prometheus ended:\n%s", log.String())
		case <-time.After(200 * time.Millisecond):
		}
		if i > 600 {
			t.Fatalf("prometheus not ready after 2 minutes:\n%s", log.String())
		}
	}
	cfg := &Config{
		URL: base + "/api/v1/write", Instance: "db-1",
		Labels: map[string]string{"node": "db-1", "role": "db"},
		Jobs:   []Job{{Name: "demo", URL: exporter(t, exposition)}, {Name: "gone", URL: "http://127.0.0.1:1/metrics"}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	sh, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sh.Once(ctx)
	if len(sh.pending) != 0 {
		t.Fatalf("prometheus did not take the samples (see the warning above):\n%s", log.String())
	}
	query := func(q string) map[string]string {
		resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
					Value  [2]any            `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, s := range r.Data.Result {
			out[key(s.Metric)] = fmt.Sprint(s.Value[1])
		}
		return out
	}
	for q, want := range map[string]map[string]string{
		`demo_requests_total{code="500"}`: {"__name__=demo_requests_total,code=500,instance=db-1,job=demo,node=db-1,role=db": "3"},
		`up`: {
			"__name__=up,instance=db-1,job=demo,node=db-1,role=db": "1",
			"__name__=up,instance=db-1,job=gone,node=db-1,role=db": "0",
		},
		`demo_latency_seconds_bucket{le="1"}`: {"__name__=demo_latency_seconds_bucket,instance=db-1,job=demo,le=1,node=db-1,role=db": "8"},
	} {
		got := query(q)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v", q, got, want)
		}
	}
}

// TestDecodeWriteRefuses: DecodeWrite refuses what is not a remote-write body, and
// labels out of order.
func TestDecodeWriteRefuses(t *testing.T) {
	if _, err := DecodeWrite([]byte("not snappy at all")); err == nil {
		t.Error("Decode took a body that is not snappy")
	}
	body := encode([]model.Sample{{Metric: model.Metric{"__name__": "up", "job": "node"}, Value: 1, Timestamp: 5}})
	got, err := DecodeWrite(body)
	if err != nil || len(got) != 1 || got[0].Metric["job"] != "node" || got[0].Value != 1 || got[0].Timestamp != 5 {
		t.Fatalf("DecodeWrite(encode(...)) = %v, %v", got, err)
	}
	// The same series with its labels swapped on the wire.
	raw, _ := s2.Decode(nil, body)
	swapped := bytes.Replace(raw, []byte("__name__"), []byte("zzname__"), 1)
	if _, err := DecodeWrite(s2.EncodeSnappy(nil, swapped)); err == nil || !strings.Contains(err.Error(), "labels not sorted") {
		t.Errorf("labels out of order: %v", err)
	}
}
