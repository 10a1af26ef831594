package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// exporterText is what prometheus-mysqld-exporter 0.14 says of a
// replica (its slave_status collector, MariaDB's connection_name label).
const exporterText = `# HELP mysql_up Whether the MySQL server is up.
# TYPE mysql_up gauge
mysql_up 1
# HELP mysql_slave_status_seconds_behind_master Generic metric from SHOW SLAVE STATUS.
# TYPE mysql_slave_status_seconds_behind_master untyped
mysql_slave_status_seconds_behind_master{channel_name="",connection_name="",master_host="10.0.4.1",master_uuid=""} 3
# HELP mysql_slave_status_slave_io_running Generic metric from SHOW SLAVE STATUS.
# TYPE mysql_slave_status_slave_io_running untyped
mysql_slave_status_slave_io_running{channel_name="",connection_name="",master_host="10.0.4.1",master_uuid=""} IO
# HELP mysql_slave_status_slave_sql_running Generic metric from SHOW SLAVE STATUS.
# TYPE mysql_slave_status_slave_sql_running untyped
mysql_slave_status_slave_sql_running{channel_name="",connection_name="",master_host="10.0.4.1",master_uuid=""} 1
`

func dbReportsRole() *imagemeta.RoleInfo {
	zero := 0.0
	return &imagemeta.RoleInfo{Role: "db", Exporters: []imagemeta.Exporter{{Name: "mysqld", Port: 9104, Path: "/metrics"}},
		Reports: []imagemeta.Report{
			{Name: "db_replica_lag_seconds", Help: "Seconds behind.", Exporter: "mysqld", Metrics: []string{"mysql_slave_status_seconds_behind_master"}, Aggregate: "max", When: map[string]string{"mode": "replica"}},
			{Name: "db_replica_running", Help: "1 when both run.", Exporter: "mysqld", Metrics: []string{"mysql_slave_status_slave_io_running", "mysql_slave_status_slave_sql_running"}, Aggregate: "min", Missing: &zero, When: map[string]string{"mode": "replica"}},
		}}
}

type fakeExporter struct {
	text  string
	err   error
	urls  []string
	calls int
}

func (f *fakeExporter) fetch(ctx context.Context, url string) (io.ReadCloser, error) {
	f.calls++
	f.urls = append(f.urls, url)
	if f.err != nil {
		return nil, f.err
	}
	return io.NopCloser(strings.NewReader(f.text)), nil
}

func TestExporterReports(t *testing.T) {
	for _, tt := range []struct {
		name, mode, io string
		err            error
		want           map[string]float64
		wantErr        string
	}{
		{"replicating", "replica", "1", nil, map[string]float64{"db_replica_lag_seconds": 3, "db_replica_running": 1}, ""},
		{"io connecting", "replica", "0", nil, map[string]float64{"db_replica_lag_seconds": 3, "db_replica_running": 0}, ""},
		{"not replicating", "replica", "", nil, map[string]float64{"db_replica_running": 0}, ""},
		{"primary", "primary", "1", nil, map[string]float64{}, ""},
		{"exporter down", "replica", "1", errors.New("connection refused"), map[string]float64{}, "exporter mysqld: connection refused"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := strings.ReplaceAll(exporterText, "} IO", "} "+tt.io)
			if tt.io == "" {
				text = "mysql_up 1\n"
			}
			f := &fakeExporter{text: text, err: tt.err}
			r := &ExporterReports{Role: dbReportsRole(), Options: func() map[string]string { return map[string]string{"mode": tt.mode} }, Fetch: f.fetch}
			got, errs := r.Values(t.Context())
			if len(got) != len(tt.want) {
				t.Errorf("values %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s = %v (%v), want %v", k, g, ok, v)
				}
			}
			if (tt.wantErr == "") != (len(errs) == 0) || tt.wantErr != "" && !strings.Contains(errs[0], tt.wantErr) {
				t.Errorf("errors %q, want %q", errs, tt.wantErr)
			}
			if tt.mode == "replica" && (f.calls != 1 || f.urls[0] != "http://127.0.0.1:9104/metrics") {
				t.Errorf("asked %q, want the exporter once", f.urls)
			}
			if tt.mode == "primary" && f.calls != 0 {
				t.Errorf("a primary asked its exporter %d times for replica reports", f.calls)
			}
		})
	}
}

// TestReportsServed: /status and /metrics carry the reports; the exporter
// is asked once per TTL.
func TestReportsServed(t *testing.T) {
	f := &fakeExporter{text: strings.ReplaceAll(exporterText, "} IO", "} 1")}
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	r := &ExporterReports{Role: dbReportsRole(), Options: func() map[string]string { return map[string]string{"mode": "replica"} }, Fetch: f.fetch,
		Now: func() time.Time { return now }}
	a := New(Options{Reports: r})
	get := func(path string) string {
		w := httptest.NewRecorder()
		a.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != http.StatusOK {
			t.Fatalf("%s: HTTP %d", path, w.Code)
		}
		return w.Body.String()
	}
	m := get("/metrics")
	for _, want := range []string{
		"# HELP imgforge_db_replica_lag_seconds Seconds behind.\n# TYPE imgforge_db_replica_lag_seconds gauge\nimgforge_db_replica_lag_seconds 3\n",
		"imgforge_db_replica_running 1\n",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, m)
		}
	}
	var st Status
	if err := json.Unmarshal([]byte(get("/status")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Reports["db_replica_lag_seconds"] != 3 || st.Reports["db_replica_running"] != 1 {
		t.Errorf("status reports %v", st.Reports)
	}
	if f.calls != 1 {
		t.Errorf("the exporter was asked %d times within the TTL, want 1", f.calls)
	}
	now = now.Add(6 * time.Second)
	get("/status")
	if f.calls != 2 {
		t.Errorf("the exporter was asked %d times after the TTL, want 2", f.calls)
	}
	// No reports: nothing is added.
	if m := func() string {
		w := httptest.NewRecorder()
		New(Options{}).Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		return w.Body.String()
	}(); strings.Contains(m, "imgforge_db_") {
		t.Errorf("an agent without reports wrote them:\n%s", m)
	}
}

// TestExporterReportsOverHTTP: without Fetch, the reports read the
// exporter's port on loopback over HTTP (metrics.Scrape).
func TestExporterReportsOverHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/metrics" {
			http.NotFound(w, req)
			return
		}
		_, _ = io.WriteString(w, strings.ReplaceAll(exporterText, "} IO", "} 1"))
	}))
	defer srv.Close()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	role := dbReportsRole()
	role.Exporters[0].Port, _ = strconv.Atoi(port)
	r := &ExporterReports{Role: role, Options: func() map[string]string { return map[string]string{"mode": "replica"} }}
	values, errs := r.Values(t.Context())
	if len(errs) != 0 || values["db_replica_lag_seconds"] != 3 || values["db_replica_running"] != 1 {
		t.Errorf("values %v, errors %v; want a lag of 3 and running 1", values, errs)
	}
}
