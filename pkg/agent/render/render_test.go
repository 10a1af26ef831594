package render_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/imgforge/imgforge/images"
	"github.com/imgforge/imgforge/pkg/agent/render"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/spec"
	"github.com/imgforge/imgforge/roles"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// templates lays the repository's templates out as an image does under
// /usr/share/imgforge/templates: ROLE/NAME and common/NAME.
func templates(t testing.TB) fs.FS {
	t.Helper()
	m := fstest.MapFS{}
	add := func(src fs.FS, dir, as string) {
		err := fs.WalkDir(src, dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(src, p)
			m[path.Join(as, strings.TrimPrefix(p, dir+"/"))] = &fstest.MapFile{Data: b, Mode: 0o644}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []string{"lb", "web", "app", "db"} {
		add(roles.FS, r+"/templates", r)
	}
	add(images.FS, "default/templates/common", "common")
	return m
}

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// testRenderer renders each input with the role.json of its role, as the
// images of the repository's roles (roles/*.yaml) carry it.
type testRenderer struct {
	render.Renderer
	roles map[string]*imagemeta.RoleInfo
}

func (r *testRenderer) Render(ctx context.Context, in render.Input) (*render.Config, error) {
	rr := r.Renderer
	rr.Role = r.roles[in.Self.Role]
	return rr.Render(ctx, in)
}

var (
	roleInfosOnce sync.Once
	roleInfos     map[string]*imagemeta.RoleInfo
	roleInfosErr  error
)

// repoRoles are the role.json of the repository's roles.
func repoRoles(t testing.TB) map[string]*imagemeta.RoleInfo {
	t.Helper()
	roleInfosOnce.Do(func() {
		cat := &spec.Catalog{Roles: []spec.Folder{{FS: roles.FS, Label: "roles"}}, Images: []spec.Folder{{FS: images.FS, Label: "images"}}}
		roleInfos = map[string]*imagemeta.RoleInfo{}
		for _, name := range cat.RoleNames() {
			p, err := plan.Resolve(cat, name, plan.Options{})
			if err != nil {
				roleInfosErr = err
				return
			}
			ri := p.RoleInfo()
			roleInfos[name] = &ri
		}
	})
	if roleInfosErr != nil {
		t.Fatal(roleInfosErr)
	}
	return roleInfos
}

func renderer(t testing.TB) *testRenderer {
	t.Helper()
	return &testRenderer{
		Renderer: render.Renderer{Templates: templates(t), Rand: rand.Reader, Now: func() time.Time { return now }},
		roles:    repoRoles(t),
	}
}

// nodes makes n nodes of a role: ROLE-01..., at 10.0.R.1....
func nodes(role string, n int) []render.Node {
	octet := map[string]int{"lb": 1, "web": 2, "app": 3, "db": 4}[role]
	var out []render.Node
	for i := 1; i <= n; i++ {
		out = append(out, render.Node{
			Name: fmt.Sprintf("%s-%02d", role, i), Role: role,
			Address: netip.AddrFrom4([4]byte{10, 0, byte(octet), byte(i)}),
		})
	}
	return out
}

var (
	testPair     *render.TLS
	testPairOnce = func() func(testing.TB) *render.TLS {
		return func(t testing.TB) *render.TLS {
			t.Helper()
			if testPair == nil {
				p, err := render.SelfSigned(rand.Reader, now, "test.example", netip.MustParseAddr("192.0.2.1"))
				if err != nil {
					t.Fatal(err)
				}
				testPair = p
			}
			return testPair
		}
	}()
)

func monitoring(t testing.TB, token bool) *render.Monitoring {
	m := &render.Monitoring{
		MetricsURL: "https://metrics.example:9090/api/v1/write",
		LogsURL:    "https://logs.example:19532",
		LogsCert:   testPairOnce(t),
		CAPEM:      testPairOnce(t).CertPEM,
	}
	if token {
		m.MetricsToken = "tok3n.abc"
	} else {
		m.MetricsUser, m.MetricsPassword = "node", "s3cret-pass"
	}
	return m
}

var db = render.DB{User: "app", Password: "app-pass-1", ReplicationUser: "repl", ReplicationPassword: "repl-pass-1"}

// goldenCases are the inputs of the golden files: every role with 0, 1,
// 3 and 50 members of what it discovers, the lb with and without peers.
func goldenCases(t testing.TB) map[string]render.Input {
	lb := func(self int, peers, web int, vips int) render.Input {
		all := nodes("lb", peers+1)
		in := render.Input{Self: all[self], Members: map[string][]render.Node{"lb": all, "web": nodes("web", web)}}
		for j := range vips {
			in.VIPs = append(in.VIPs, render.VIP{Address: netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + j)}), Prefix: 24, Interface: "eth0"})
		}
		return in
	}
	web := func(app int, runtime string, https ...string) render.Input {
		o := map[string]string{"runtime": runtime}
		if len(https) > 0 {
			o["https"] = https[0]
		}
		return render.Input{Self: nodes("web", 1)[0], Members: map[string][]render.Node{"app": nodes("app", app)},
			Options: o, TLS: testPairOnce(t)}
	}
	app := func(dbs int) render.Input {
		m := nodes("db", dbs)
		if dbs > 0 {
			m[len(m)/2].Primary = true
		}
		return render.Input{Self: nodes("app", 1)[0], Members: map[string][]render.Node{"db": m}, DB: db}
	}
	dbIn := func(dbs int, mode string, mem uint64) render.Input {
		m := nodes("db", dbs)
		self := render.Node{Name: "db-00", Role: "db", Address: netip.MustParseAddr("10.0.4.200"), ID: 7, Primary: mode == "primary"}
		if len(m) > 0 && mode == "replica" {
			m[0].Primary = true
		}
		return render.Input{Self: self, Members: map[string][]render.Node{"db": append(m, self)}, DB: db,
			Options: map[string]string{"mode": mode}, MemoryBytes: mem}
	}
	cases := map[string]render.Input{
		"lb-alone-web0":                 lb(0, 0, 0, 1),
		"lb-alone-web1":                 lb(0, 0, 1, 1),
		"lb-peer-web3-vip2-a":           lb(0, 1, 3, 2),
		"lb-peer-web3-vip2-b":           lb(1, 1, 3, 2),
		"lb-peers3-web50":               lb(2, 3, 50, 2),
		"web-app0":                      web(0, "php-fpm"),
		"web-app1":                      web(1, "php-fpm"),
		"web-app3-uwsgi":                web(3, "uwsgi"),
		"web-app50":                     web(50, "php-fpm"),
		"web-app1-https-optional-uwsgi": web(1, "uwsgi", "optional"),
		"app-db0":                       app(0),
		"app-db1":                       app(1),
		"app-db3":                       app(3),
		"app-db50":                      app(50),
		"db-primary-alone":              dbIn(0, "primary", 1<<30),
		"db-replica-db0":                dbIn(0, "replica", 4<<30),
		"db-replica-db1":                dbIn(1, "replica", 4<<30),
		"db-replica-db3":                dbIn(3, "replica", 16<<30),
		"db-primary-db50":               dbIn(50, "primary", 64<<30),
	}
	mon := cases["lb-peer-web3-vip2-a"]
	mon.Monitoring = monitoring(t, false)
	cases["lb-monitoring-basic"] = mon
	mon = cases["web-app1"]
	mon.Monitoring = monitoring(t, true)
	cases["web-monitoring-token"] = mon
	mon = cases["db-replica-db1"]
	mon.Monitoring = &render.Monitoring{MetricsURL: "https://metrics.example/push"}
	cases["db-monitoring-noauth"] = mon
	mon = cases["app-db1"]
	mon.Monitoring = monitoring(t, false)
	mon.Monitoring.TracesURL = "https://traces.example:4318/v1/traces"
	cases["app-monitoring-basic"] = mon
	mon = cases["app-db1"]
	mon.Monitoring = &render.Monitoring{TracesURL: "https://traces.example/v1/traces", MetricsUser: "node", MetricsPassword: "s3cret-pass"}
	cases["app-monitoring-traces-only"] = mon
	return cases
}

// dump is the golden text of a Config.
func dump(c *render.Config) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# role %s\n", c.Role)
	for _, w := range c.Waiting {
		fmt.Fprintf(&b, "# waiting: %s\n", w)
	}
	for _, s := range c.Services {
		fmt.Fprintf(&b, "\n=== service %s\n", s.Name)
		for _, cmd := range s.Then {
			fmt.Fprintf(&b, "=== then: %s\n", strings.Join(cmd, " "))
		}
		for _, f := range s.Files {
			fmt.Fprintf(&b, "--- %s %04o %s:%s", f.Path, f.Mode, f.Owner, f.Group)
			if f.Sensitive {
				b.WriteString(" sensitive")
			}
			if f.Check != nil {
				fmt.Fprintf(&b, " check: %s", strings.Join(f.Check, " "))
			}
			if f.Validate != nil {
				fmt.Fprintf(&b, " validate: %s", f.Validate.Name)
			}
			b.WriteString("\n")
			if bytes.HasPrefix(f.Data, []byte("-----BEGIN ")) {
				// Keys and certificates are made per test run.
				kind, _, _ := strings.Cut(strings.TrimPrefix(string(f.Data), "-----BEGIN "), "-----")
				fmt.Fprintf(&b, "(PEM %s)\n", kind)
				continue
			}
			b.Write(f.Data)
			if len(f.Data) > 0 && f.Data[len(f.Data)-1] != '\n' {
				b.WriteString("\n(no newline at end of file)\n")
			}
		}
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	r := renderer(t)
	for name, in := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			c, err := r.Render(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			got := dump(c)
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/agent/render -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s (run go test ./pkg/agent/render -update and review the diff):\n%s", name, golden, got)
			}
		})
	}
}
