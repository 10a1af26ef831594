package agent

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/imgforge/imgforge/images"
	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/discovery"
	"github.com/imgforge/imgforge/pkg/agent/render"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/spec"
	"github.com/imgforge/imgforge/roles"
)

// imageTemplates lays the repository's templates out as an image does,
// following the files: entries of roles/*.yaml and images/default.yaml
// that land under TemplatesDir, so the test also checks that layout.
func imageTemplates(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	type entry struct{ Src, Dst string }
	type def struct {
		Files   []entry
		Options []struct {
			Choices map[string]struct{ Files []entry }
		}
	}
	var n int
	for _, d := range []struct{ file, base string }{
		{"../../roles/lb.yaml", "../../roles"}, {"../../roles/web.yaml", "../../roles"},
		{"../../roles/app.yaml", "../../roles"}, {"../../roles/db.yaml", "../../roles"},
		{"../../images/default.yaml", "../../images"},
	} {
		b, err := os.ReadFile(d.file)
		if err != nil {
			t.Fatal(err)
		}
		var def def
		if err := yaml.Unmarshal(b, &def); err != nil {
			t.Fatalf("%s: %v", d.file, err)
		}
		files := def.Files
		for _, o := range def.Options {
			for _, c := range o.Choices {
				files = append(files, c.Files...)
			}
		}
		for _, f := range files {
			rel, ok := strings.CutPrefix(f.Dst, TemplatesDir+"/")
			if !ok {
				continue
			}
			if err := os.CopyFS(filepath.Join(dir, rel), os.DirFS(filepath.Join(d.base, f.Src))); err != nil {
				t.Fatalf("%s: %s: %v", d.file, f.Src, err)
			}
			n++
		}
	}
	for _, want := range []string{"lb/haproxy.cfg.tmpl", "lb/keepalived.conf.tmpl", "web/nginx.conf.tmpl", "app/db.json.tmpl",
		"db/node.cnf.tmpl", "db/primary.sql.tmpl", "db/replica.sql.tmpl", "common/journal-upload.conf.tmpl"} {
		if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
			t.Errorf("the image has no %s/%s (from %d template folders): %v", TemplatesDir, want, n, err)
		}
	}
	return dir
}

// fakeRunner records commands; those starting with a prefix in fail fail.
type fakeRunner struct {
	mu   sync.Mutex
	ran  []string
	fail []string
}

func (f *fakeRunner) Run(_ context.Context, argv []string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd := strings.Join(argv, " ")
	f.ran = append(f.ran, cmd)
	for _, p := range f.fail {
		if strings.HasPrefix(cmd, p) {
			return []byte("error: " + p + " failed\n"), errors.New("exit status 1")
		}
	}
	return nil, nil
}

func (f *fakeRunner) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.ran
	f.ran = nil
	return out
}

// nodeRoot is a node's root whose users and groups map to the test's ids.
func nodeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	uid, gid := os.Getuid(), os.Getgid()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/passwd"), fmt.Appendf(nil, "root:x:%d:%d::/root:/bin/sh\n", uid, gid), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/group"), fmt.Appendf(nil, "root:x:%d:\nwww-data:x:%d:\nprometheus:x:%d:\n", gid, gid, gid), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

type testNode struct {
	root   string
	runner *fakeRunner
	rr     *RoleRenderer
	now    time.Time
}

// repoRole is the role.json of the repository's role name
// (roles/NAME.yaml), as its image carries it.
func repoRole(t *testing.T, name string) *imagemeta.RoleInfo {
	t.Helper()
	cat := &spec.Catalog{Roles: []spec.Folder{{FS: roles.FS, Label: "roles"}}, Images: []spec.Folder{{FS: images.FS, Label: "images"}}}
	p, err := plan.Resolve(cat, name, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ri := p.RoleInfo()
	return &ri
}

func newTestNode(t *testing.T, templates, role string) *testNode {
	t.Helper()
	n := &testNode{root: nodeRoot(t), runner: &fakeRunner{}, now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	clock := func() time.Time { return n.now }
	ri := repoRole(t, role)
	n.rr = &RoleRenderer{
		Role:     ri,
		Renderer: &render.Renderer{Templates: os.DirFS(templates), Current: os.DirFS(n.root), Rand: rand.Reader, Now: clock, Role: ri},
		Applier:  &render.Applier{Root: n.root, Runner: n.runner},
		ReadFile: func(name string) ([]byte, error) {
			if name != MemInfoPath {
				return nil, fmt.Errorf("read %s", name)
			}
			return []byte("MemTotal:        4030464 kB\nMemFree:          123456 kB\n"), nil
		},
		Now: clock,
	}
	return n
}

func (n *testNode) read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func member(name, role, addr string, healthy bool, mode string) discovery.Member {
	return discovery.Member{Name: name, Role: role, Address: netip.MustParseAddr(addr), Healthy: healthy, Mode: mode}
}

func snapshot(t *testing.T, c *config.Config, healthy bool, others ...discovery.Member) Snapshot {
	t.Helper()
	self, err := SelfMember(c, healthy)
	if err != nil {
		t.Fatal(err)
	}
	return Snapshot{Config: c, Self: self, Members: discovery.NewSet(others).With(self)}
}

func readPair(t *testing.T) (string, string) {
	t.Helper()
	c, err := os.ReadFile("config/testdata/journal-client.crt")
	if err != nil {
		t.Fatal(err)
	}
	k, err := os.ReadFile("config/testdata/journal-client.key")
	if err != nil {
		t.Fatal(err)
	}
	return string(c), string(k)
}

func TestRoleRendererWeb(t *testing.T) {
	tmpl := imageTemplates(t)
	n := newTestNode(t, tmpl, "web")
	cert, key := readPair(t)
	c := &config.Config{
		Cluster: "shop", Role: "web", Node: config.Node{Name: "web-1", Address: "10.10.0.21/24"},
		Discovery: config.Discovery{Method: "static"}, TLS: &config.TLS{SelfSigned: true},
		Monitoring: &config.Monitoring{
			MetricsURL: "https://monitor.example:9090/api/v1/write", Username: "shop", Password: "s3cret-pass",
			LogsURL: "https://monitor.example:19532/upload", LogsCert: cert, LogsKey: key,
		},
	}
	s := snapshot(t, c, false,
		member("app-1", "app", "10.10.0.31", true, ""),
		member("app-2", "app", "10.10.0.32", false, ""), // unhealthy: not a backend
		member("lb-1", "lb", "10.10.0.11", true, ""),
	)
	if err := n.rr.Render(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	conf := n.read(t, "etc/nginx/nginx.conf")
	if !strings.Contains(conf, "10.10.0.31:9000") || strings.Contains(conf, "10.10.0.32") {
		t.Errorf("nginx.conf should list app-1 only (app-2 is unhealthy):\n%s", conf)
	}
	if !strings.Contains(conf, "fastcgi_pass") {
		t.Errorf("nginx.conf does not speak FastCGI to php-fpm (the default runtime)")
	}
	ran := n.runner.take()
	for _, want := range []string{"nginx -t -q -c", "systemctl reload-or-restart nginx.service",
		"systemctl restart imgforge-metrics.service", "systemctl reload-or-restart systemd-journal-upload.service"} {
		if !slices.ContainsFunc(ran, func(r string) bool { return strings.HasPrefix(r, want) }) {
			t.Errorf("did not run %q; ran %q", want, ran)
		}
	}
	if got := n.read(t, "etc/imgforge/journal-upload/client.crt"); got != cert {
		t.Errorf("the journal-upload client certificate is not the configured one")
	}
	rep := n.rr.Report()
	if rep.LastReload != n.now {
		t.Errorf("last reload %v, want %v", rep.LastReload, n.now)
	}
	byPath := map[string]RenderedFile{}
	for _, f := range rep.Files {
		byPath[f.Path] = f
	}
	for _, p := range []string{"/etc/imgforge/tls/tls.key", "/etc/imgforge/journal-upload/client.key", "/etc/imgforge/metrics/remote-write.secret"} {
		if f, ok := byPath[p]; !ok || !f.Sensitive || f.SHA256 != "" {
			t.Errorf("%s: %+v; want it reported as sensitive, without a digest", p, f)
		}
	}
	if f := byPath["/etc/nginx/nginx.conf"]; len(f.SHA256) != 64 || f.Service != "nginx" || f.Changed != n.now {
		t.Errorf("nginx.conf reported as %+v", f)
	}

	// The same snapshot again, later: nothing changes, nothing reloads,
	// the self-signed pair on the node is kept.
	crt := n.read(t, strings.TrimPrefix("/etc/imgforge/tls/tls.crt", "/"))
	first := n.now
	n.now = n.now.Add(time.Hour)
	if err := n.rr.Render(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if ran := n.runner.take(); len(ran) != 0 {
		t.Errorf("an unchanged render ran %q", ran)
	}
	if n.read(t, strings.TrimPrefix("/etc/imgforge/tls/tls.crt", "/")) != crt {
		t.Error("the self-signed certificate was made again")
	}
	if rep := n.rr.Report(); rep.LastReload != first || rep.Files[0].Changed != first {
		t.Errorf("an unchanged render moved the times: %+v", rep)
	}

	// app-2 becomes healthy; old user-data still gives the web node a
	// runtime, which changes nothing: FastCGI to app nodes of either.
	c2 := *c
	c2.Options = map[string]string{"runtime": "uwsgi"}
	s = snapshot(t, &c2, true, member("app-1", "app", "10.10.0.31", true, ""), member("app-2", "app", "10.10.0.32", true, ""))
	if err := n.rr.Render(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	conf = n.read(t, "etc/nginx/nginx.conf")
	if !strings.Contains(conf, "10.10.0.32:9000") || !strings.Contains(conf, "fastcgi_pass app;") || strings.Contains(conf, "uwsgi_") {
		t.Errorf("nginx.conf should pass to both app nodes over FastCGI:\n%s", conf)
	}
}

func TestRoleRendererAppWaitsForPrimary(t *testing.T) {
	n := newTestNode(t, imageTemplates(t), "app")
	c := &config.Config{
		Cluster: "shop", Role: "app", Node: config.Node{Name: "app-1", Address: "10.10.0.31/24"},
		Discovery: config.Discovery{Method: "static"}, Database: &config.Database{User: "shop", Password: "app-password-1"},
	}
	// The primary is down: app-1 waits and writes nothing.
	s := snapshot(t, c, true, member("db-1", "db", "10.10.0.41", false, "primary"), member("db-2", "db", "10.10.0.42", true, "replica"))
	if err := n.rr.Render(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if rep := n.rr.Report(); len(rep.Waiting) != 1 || !strings.Contains(rep.Waiting[0], "no db primary") || len(rep.Files) != 0 {
		t.Errorf("report %+v, want waiting for the primary", rep)
	}
	if _, err := os.Stat(filepath.Join(n.root, "/etc/imgforge/db.json")); err == nil {
		t.Error("db.json written without a primary")
	}
	s = snapshot(t, c, true, member("db-1", "db", "10.10.0.41", true, "primary"), member("db-2", "db", "10.10.0.42", true, "replica"))
	if err := n.rr.Render(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if got := n.read(t, strings.TrimPrefix("/etc/imgforge/db.json", "/")); !strings.Contains(got, `"host": "10.10.0.41"`) || !strings.Contains(got, `"password": "app-password-1"`) {
		t.Errorf("db.json: %s", got)
	}
	rep := n.rr.Report()
	if len(rep.Waiting) != 0 || len(rep.Files) != 1 || rep.Files[0].SHA256 != "" || !rep.Files[0].Sensitive {
		t.Errorf("report %+v, want db.json, sensitive", rep)
	}
}

func TestRoleRendererDB(t *testing.T) {
	n := newTestNode(t, imageTemplates(t), "db")
	c := &config.Config{
		Cluster: "shop", Role: "db", Options: map[string]string{"mode": "replica"}, Node: config.Node{Name: "db-2", ID: 7, Address: "10.10.0.42/24"},
		Discovery: config.Discovery{Method: "static"},
		Database:  &config.Database{User: "shop", Password: "app-password-1", ReplicationUser: "repl", ReplicationPassword: "repl-password-1"},
	}
	s := snapshot(t, c, false, member("db-1", "db", "10.10.0.41", true, "primary"))
	if err := n.rr.Render(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	cnf := n.read(t, strings.TrimPrefix("/etc/mysql/mariadb.conf.d/91-imgforge-node.cnf", "/"))
	mem := render.MemorySettings(4030464 << 10)
	for _, want := range []string{"server_id = 7", fmt.Sprintf("innodb_buffer_pool_size = %dM", mem.BufferPoolMiB), "read_only"} {
		if !strings.Contains(cnf, want) {
			t.Errorf("node.cnf has no %q:\n%s", want, cnf)
		}
	}
	if sql := n.read(t, strings.TrimPrefix("/etc/imgforge/db/replica.sql", "/")); !strings.Contains(sql, "10.10.0.41") {
		t.Errorf("replica.sql does not attach to the primary:\n%s", sql)
	}
	ran := n.runner.take()
	if !slices.Contains(ran, "systemctl restart mariadb.service") || !slices.Contains(ran, "imgforge-agent mariadb seed --config /etc/imgforge/db/seed.json") {
		t.Errorf("ran %q", ran)
	}

	// No /proc/meminfo: a clear error, nothing run.
	n.rr.ReadFile = func(string) ([]byte, error) { return nil, os.ErrNotExist }
	if err := n.rr.Render(t.Context(), s); err == nil || !strings.Contains(err.Error(), "reading the machine's memory") {
		t.Errorf("without meminfo: %v", err)
	}
}

// TestRoleRendererBackoff: a reload that fails is not retried with the
// same input before the backoff, which doubles; new input is tried at once.
func TestRoleRendererBackoff(t *testing.T) {
	n := newTestNode(t, imageTemplates(t), "lb")
	n.runner.fail = []string{"systemctl reload-or-restart haproxy"}
	c := &config.Config{
		Cluster: "shop", Role: "lb", Node: config.Node{Name: "lb-1", Address: "10.10.0.11/24"},
		VIPs:      []config.VIP{{Address: "10.10.0.100", Prefix: 24, Interface: "eth0"}},
		Discovery: config.Discovery{Method: "static"},
	}
	s := snapshot(t, c, true, member("lb-2", "lb", "10.10.0.12", false, ""), member("web-1", "web", "10.10.0.21", true, ""), member("web-2", "web", "10.10.0.22", false, ""))
	retryAfter := func(err error) time.Duration {
		t.Helper()
		var ra RetryAfter
		if !errors.As(err, &ra) {
			t.Fatalf("error %v does not say when to retry", err)
		}
		return ra.RetryAfter()
	}
	err := n.rr.Render(t.Context(), s)
	if err == nil || !strings.Contains(err.Error(), "haproxy") || retryAfter(err) != DefaultMinBackoff {
		t.Fatalf("first failure: %v", err)
	}
	// keepalived's files were kept; haproxy's were put back (none before).
	if _, err := os.Stat(filepath.Join(n.root, "etc/haproxy/haproxy.cfg")); err == nil {
		t.Error("haproxy.cfg kept after its reload failed")
	}
	ka := n.read(t, "etc/keepalived/keepalived.conf")
	if !strings.Contains(ka, "10.10.0.12") || !strings.Contains(ka, "10.10.0.100/24") {
		t.Errorf("keepalived.conf should peer with lb-2 (even unhealthy) and carry the VIP:\n%s", ka)
	}
	n.runner.take()

	n.now = n.now.Add(5 * time.Second)
	err = n.rr.Render(t.Context(), s)
	if err == nil || retryAfter(err) != 5*time.Second || !strings.Contains(err.Error(), "next try in 5s") {
		t.Fatalf("within the backoff: %v", err)
	}
	if ran := n.runner.take(); len(ran) != 0 {
		t.Errorf("ran %q within the backoff", ran)
	}
	n.now = n.now.Add(5 * time.Second)
	if err := n.rr.Render(t.Context(), s); err == nil || retryAfter(err) != 2*DefaultMinBackoff {
		t.Fatalf("second failure: %v", err)
	}
	if ran := n.runner.take(); !slices.Contains(ran, "systemctl reload-or-restart haproxy.service") {
		t.Errorf("after the backoff it did not try again: %q", ran)
	}

	// Another web node turns healthy: new input, tried at once; it works.
	n.runner.fail = nil
	s = snapshot(t, c, true, member("lb-2", "lb", "10.10.0.12", false, ""), member("web-1", "web", "10.10.0.21", true, ""), member("web-2", "web", "10.10.0.22", true, ""))
	if err := n.rr.Render(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if cfg := n.read(t, "etc/haproxy/haproxy.cfg"); !strings.Contains(cfg, "10.10.0.21:80") || !strings.Contains(cfg, "10.10.0.22:80") {
		t.Errorf("haproxy.cfg should have both web nodes:\n%s", cfg)
	}
	if got := n.rr.backoff(20); got != DefaultMaxBackoff {
		t.Errorf("backoff after 20 failures = %s, want %s", got, DefaultMaxBackoff)
	}
}

func TestRenderInput(t *testing.T) {
	cert, key := readPair(t)
	c := &config.Config{
		Cluster: "shop", Role: "db", Node: config.Node{Name: "db-1", ID: 41, Address: "10.10.0.41/24"},
		Discovery: config.Discovery{Method: "static"},
		Database:  &config.Database{User: "shop", Password: "app-password-1", ReplicationUser: "repl", ReplicationPassword: "repl-password-1"},
		Monitoring: &config.Monitoring{LogsURL: "https://logs.example/upload", LogsCert: cert, LogsKey: key, CA: cert,
			MetricsURL: "https://m.example/w", BearerToken: "token-1"},
	}
	s := snapshot(t, c, false, member("db-2", "db", "10.10.0.42", true, "replica"), member("db-3", "db", "10.10.0.43", false, "replica"), member("app-1", "app", "10.10.0.31", true, ""))
	in, err := RenderInput(s, 1<<30, repoRole(t, "db"))
	if err != nil {
		t.Fatal(err)
	}
	want := render.Node{Name: "db-1", Role: "db", Address: netip.MustParseAddr("10.10.0.41"), ID: 41, Primary: true}
	if in.Self != want {
		t.Errorf("self %+v, want %+v", in.Self, want)
	}
	// Self is listed though unhealthy (it is starting); db-3 is not.
	if got := in.Members["db"]; len(got) != 2 || got[0] != want || got[1].Name != "db-2" || got[1].Primary {
		t.Errorf("db members %+v", got)
	}
	if in.Options["mode"] != "primary" || in.MemoryBytes != 1<<30 || in.DB.ReplicationUser != "repl" || in.TLS != nil || len(in.VIPs) != 0 {
		t.Errorf("input %+v", in)
	}
	m := in.Monitoring
	if m == nil || m.MetricsToken != "token-1" || m.LogsCert == nil || string(m.LogsCert.KeyPEM) != key || string(m.CAPEM) != cert {
		t.Errorf("monitoring %+v", m)
	}
	if err := in.Validate(); err != nil {
		t.Errorf("the input does not validate: %v", err)
	}
}

// TestRenderInputVerifiedOnly: with gossip, an lb renders only web
// members whose role gossip verified; with static discovery the seed is
// trusted.
func TestRenderInputVerifiedOnly(t *testing.T) {
	c := &config.Config{
		Cluster: "shop", Role: "lb", Node: config.Node{Name: "lb-1", ID: 11, Address: "10.10.0.11/24"},
		VIPs:      []config.VIP{{Address: "10.10.0.100", Prefix: 24, Interface: "eth0"}},
		Discovery: config.Discovery{Method: config.MethodGossip},
	}
	verified := member("web-1", "web", "10.10.0.21", true, "")
	verified.Verified = true
	unverified := member("web-2", "web", "10.10.0.22", true, "")
	s := snapshot(t, c, true, verified, unverified)
	// A member listed under a role it does not have is not that role's.
	s.Members["web"] = append(s.Members["web"], member("app-9", "app", "10.10.0.39", true, ""))
	in, err := RenderInput(s, 0, repoRole(t, "lb"))
	if err != nil {
		t.Fatal(err)
	}
	if got := in.Members["web"]; len(got) != 1 || got[0].Name != "web-1" {
		t.Errorf("gossip: web backends %+v, want web-1 only", got)
	}
	if got := in.Members["lb"]; len(got) != 1 || got[0].Name != "lb-1" {
		t.Errorf("gossip: lb members %+v, want lb-1 (itself)", got)
	}
	c.Discovery.Method = config.MethodStatic
	in, err = RenderInput(s, 0, repoRole(t, "lb"))
	if err != nil {
		t.Fatal(err)
	}
	if got := in.Members["web"]; len(got) != 2 {
		t.Errorf("static: web backends %+v, want web-1 and web-2", got)
	}
}

// TestRenderInputDiscover: with a role.json, the members are those of the
// roles it discovers, with the port discovery gave (an SRV record's),
// and the VIPs only reach a role that holds them.
func TestRenderInputDiscover(t *testing.T) {
	c := &config.Config{
		Cluster: "shop", Role: "cache", Node: config.Node{Name: "cache-1", ID: 51, Address: "10.10.0.51/24"},
		VIPs:      []config.VIP{{Address: "10.10.0.100", Prefix: 24, Interface: "eth0"}},
		Discovery: config.Discovery{Method: config.MethodStatic},
	}
	web := member("web-1", "web", "10.10.0.21", true, "")
	web.Port = 8080
	s := snapshot(t, c, true, web, member("web-2", "web", "10.10.0.22", false, ""), member("app-1", "app", "10.10.0.31", true, ""),
		member("cache-2", "cache", "10.10.0.52", false, ""))
	ri := &imagemeta.RoleInfo{Role: "cache", Discover: []string{"web"}, Options: map[string]string{"size": "small"}}
	in, err := RenderInput(s, 1<<30, ri)
	if err != nil {
		t.Fatal(err)
	}
	if got := in.Members["web"]; len(got) != 1 || got[0].Name != "web-1" || got[0].Port != 8080 {
		t.Errorf("web members %+v, want the healthy web-1 with its SRV port 8080", got)
	}
	if _, ok := in.Members["app"]; ok {
		t.Errorf("app members %+v: cache does not discover app", in.Members["app"])
	}
	if got := in.Members["cache"]; len(got) != 1 || got[0].Name != "cache-1" {
		t.Errorf("cache members %+v, want itself only (cache-2 is unhealthy)", got)
	}
	if len(in.VIPs) != 0 || in.Options["size"] != "small" || in.MemoryBytes != 1<<30 {
		t.Errorf("input %+v", in)
	}
	ri.VIPs = true
	if in, err = RenderInput(s, 1<<30, ri); err != nil {
		t.Fatal(err)
	}
	if got := in.Members["cache"]; len(in.VIPs) != 1 || len(got) != 2 {
		t.Errorf("VIP holders: vips %+v, members %+v (every member of the own role)", in.VIPs, got)
	}
}

func TestMemTotal(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint64
		err  bool
	}{
		{"MemTotal:        4030464 kB\nMemFree: 1 kB\n", 4030464 << 10, false},
		{"MemFree: 1 kB\nMemTotal: 2048 kB\n", 2 << 20, false},
		{"MemFree: 1 kB\n", 0, true},
		{"MemTotal: x kB\n", 0, true},
		{"MemTotal: 0 kB\n", 0, true},
		{"MemTotal: 2048 MB\n", 0, true},
	} {
		got, err := MemTotal([]byte(tt.in))
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("MemTotal(%q) = %d, %v", tt.in, got, err)
		}
	}
}

// TestRoleRendererLBKeepsPeers renders an lb node whose peer lb reboots
// (it leaves the members, then comes back) and which then drains:
// keepalived.conf never changes, so keepalived is never reloaded (a
// reload with other peers drops the VIPs for about three seconds); the
// drain goes through the file keepalived tracks.
func TestRoleRendererLBKeepsPeers(t *testing.T) {
	n := newTestNode(t, imageTemplates(t), "lb")
	c := &config.Config{
		Cluster: "shop", Role: "lb", Node: config.Node{Name: "lb-1", Address: "10.10.0.11/24"},
		Discovery: config.Discovery{Method: "static"},
		VIPs:      []config.VIP{{Address: "10.10.0.100", Prefix: 24, Interface: "eth0"}},
	}
	web := member("web-1", "web", "10.10.0.21", true, "")
	lb2 := member("lb-2", "lb", "10.10.0.12", true, "")
	if err := n.rr.Render(t.Context(), snapshot(t, c, true, web, lb2)); err != nil {
		t.Fatal(err)
	}
	conf := n.read(t, "etc/keepalived/keepalived.conf")
	if !strings.Contains(conf, "        10.10.0.12\n") {
		t.Fatalf("keepalived.conf does not list lb-2 as a peer:\n%s", conf)
	}
	if d := n.read(t, "etc/keepalived/drain"); d != "0\n" {
		t.Errorf("drain file %q, want 0", d)
	}
	n.runner.take()
	reloads := func(step string) {
		t.Helper()
		for _, r := range n.runner.take() {
			if strings.Contains(r, "keepalived.service") {
				t.Errorf("%s: keepalived reloaded (%s)", step, r)
			}
		}
		if got := n.read(t, "etc/keepalived/keepalived.conf"); got != conf {
			t.Errorf("%s: keepalived.conf changed:\n%s", step, got)
		}
	}
	if err := n.rr.Render(t.Context(), snapshot(t, c, true, web)); err != nil {
		t.Fatal(err)
	}
	reloads("lb-2 gone")
	lb2.Healthy = false
	if err := n.rr.Render(t.Context(), snapshot(t, c, true, web, lb2)); err != nil {
		t.Fatal(err)
	}
	reloads("lb-2 back, not healthy yet")
	s := snapshot(t, c, false, web, lb2)
	s.Draining = true
	if err := n.rr.Render(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	reloads("draining")
	if d := n.read(t, "etc/keepalived/drain"); d != "1\n" {
		t.Errorf("draining: drain file %q, want 1", d)
	}
	// A new renderer (the agent restarted, at the next boot) forgets a
	// peer that is gone.
	n2 := newTestNode(t, imageTemplates(t), "lb")
	if err := n2.rr.Render(t.Context(), snapshot(t, c, true, web)); err != nil {
		t.Fatal(err)
	}
	if got := n2.read(t, "etc/keepalived/keepalived.conf"); strings.Contains(got, "10.10.0.12") {
		t.Errorf("a new agent lists lb-2, which it never saw")
	}
}
