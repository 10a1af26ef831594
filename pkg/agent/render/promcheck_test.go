package render_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/pkg/agent/render"
)

// promGood is what common/prometheus-agent.yml.tmpl renders, with every
// optional part.
const promGood = `global:
  scrape_interval: 30s
  scrape_timeout: 10s
  external_labels:
    node: "lb-1"
    role: "lb"

scrape_configs:
  - job_name: "node"
    metrics_path: "/metrics"
    static_configs:
      - targets: ["127.0.0.1:9100"]
    relabel_configs:
      - target_label: instance
        replacement: "lb-1"
  - job_name: "haproxy"
    metrics_path: "/metrics"
    static_configs:
      - targets: ["127.0.0.1:8404"]

remote_write:
  - url: "https://metrics.example:9090/api/v1/write"
    basic_auth:
      username: "node"
      password_file: "/etc/prometheus/imgforge/remote-write.secret"
    tls_config:
      ca_file: "/etc/prometheus/imgforge/ca.pem"
`

// TestPrometheusAgentCheck: the rendered file passes; each mistake
// promtool refuses is refused, in one line naming the field.
func TestPrometheusAgentCheck(t *testing.T) {
	edit := func(old, new string) string {
		if !strings.Contains(promGood, old) {
			t.Fatalf("%q is not in the good file", old)
		}
		return strings.Replace(promGood, old, new, 1)
	}
	for _, tc := range []struct {
		name, data, want string // want: "" accepts, else a part of the error
	}{
		{"rendered", promGood, ""},
		{"bearer token", edit("basic_auth:\n      username: \"node\"\n      password_file:", "authorization:\n      type: Bearer\n      credentials_file:"), ""},
		{"no auth, no CA", strings.Split(promGood, "    basic_auth:")[0], ""},
		{"durations", edit("30s", "1h30m"), ""},
		{"zero timeout", edit("scrape_timeout: 10s", "scrape_timeout: 0"), ""},
		{"empty", "", "empty"},
		{"bogus line", promGood + "\nimgforge_bogus_directive on;\n", "line"},
		{"unknown field", edit("metrics_path:", "metric_path:"), "field metric_path not found"},
		{"misplaced field", edit("    relabel_configs:", "    job_nme: x\n    relabel_configs:"), "job_nme"},
		{"two documents", promGood + "---\nglobal: {}\n", "more than one"},
		{"bad duration", edit("30s", "30 seconds"), "global.scrape_interval"},
		{"go duration", edit("30s", "1.5s"), "not a duration"},
		{"timeout over interval", edit("scrape_timeout: 10s", "scrape_timeout: 1m"), "longer than"},
		{"duplicate job", edit(`job_name: "haproxy"`, `job_name: "node"`), `scrape_configs[1].job_name: "node" is used twice`},
		{"no job name", edit(`job_name: "haproxy"`, `job_name: ""`), "scrape_configs[1].job_name: missing"},
		{"bad label", edit("node: \"lb-1\"", "no-de: \"lb-1\""), "global.external_labels"},
		{"target without port", edit("127.0.0.1:9100", "127.0.0.1"), "targets[0]"},
		{"relative path", edit(`metrics_path: "/metrics"`, `metrics_path: "metrics"`), "metrics_path"},
		{"relabel without target", edit("target_label: instance", "target_label: \"\""), "target_label: missing"},
		{"unknown action", edit("target_label: instance", "target_label: instance\n        action: rename"), "unknown action"},
		{"bad regex", edit("target_label: instance", "target_label: instance\n        regex: \"(\""), "regex"},
		{"relative URL", edit("https://metrics.example:9090", "metrics.example:9090"), "remote_write[0].url"},
		{"ftp URL", edit("https://", "ftp://"), "remote_write[0].url"},
		{"no username", edit(`username: "node"`, `username: ""`), "basic_auth.username"},
		{"two auths", edit("    tls_config:", "    authorization:\n      type: Bearer\n    tls_config:"), "both set"},
		{"wrong type", edit("username: \"node\"", "username: [a]"), "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := render.PrometheusAgentCheck.Check([]byte(tc.data))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want an error with %q", tc.want)
			case err != nil && !strings.Contains(err.Error(), tc.want):
				t.Errorf("error %q, want it to say %q", err, tc.want)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Errorf("the error is not one line: %q", err)
			}
		})
	}
}

// TestPrometheusAgentCheckApplied: Apply refuses a file the check
// refuses, keeps the previous one and runs nothing; the rendered one is
// checked without running a program.
func TestPrometheusAgentCheckApplied(t *testing.T) {
	root := nodeRoot(t)
	run := &fakeRunner{root: root}
	a := &render.Applier{Root: root, Runner: run}
	svc := func(data string) *render.Config {
		return &render.Config{Services: []render.Service{{Name: "prometheus", Then: [][]string{{"systemctl", "reload-or-restart", "prometheus.service"}},
			Files: []render.File{{Path: render.PrometheusConfigPath, Mode: 0o644, Owner: "root", Group: "root", Data: []byte(data), Validate: render.PrometheusAgentCheck}}}}}
	}
	ctx := context.Background()
	if _, err := a.Apply(ctx, svc(promGood)); err != nil {
		t.Fatal(err)
	}
	if len(run.ran) != 1 {
		t.Errorf("ran %q, want only the reload", run.ran)
	}
	run.ran = nil
	_, err := a.Apply(ctx, svc(promGood+"bogus: [\n"))
	if !errors.Is(err, render.ErrCheck) {
		t.Fatalf("a broken file: %v, want ErrCheck", err)
	}
	if !strings.Contains(err.Error(), render.PrometheusAgentCheck.Name) || strings.Contains(err.Error(), "\n") {
		t.Errorf("error %q: want one line naming the check", err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, render.PrometheusConfigPath)); string(b) != promGood {
		t.Error("the last good file was not kept")
	}
	if len(run.ran) > 0 {
		t.Errorf("ran %q after a refused file", run.ran)
	}
}

// FuzzPrometheusAgentCheck: any bytes give an answer, never a panic; the
// corpus is testdata/fuzz/FuzzPrometheusAgentCheck.
func FuzzPrometheusAgentCheck(f *testing.F) {
	f.Add([]byte(promGood))
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := render.PrometheusAgentCheck.Check(data); err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("the error is not one line: %q", err)
		}
	})
}
