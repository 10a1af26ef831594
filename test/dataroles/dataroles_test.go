// Package dataroles_test proves that a role is data (issue 12): the roles
// cache and front exist only as role files and templates under testdata;
// they are planned, shipped as role.json, rendered from a snapshot of
// members and checked by their real checker with no Go code of theirs.
package dataroles_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/discovery"
	"github.com/imgforge/imgforge/pkg/agent/render"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/imgforge"
	"github.com/imgforge/imgforge/pkg/plan"
)

const templatesDir = "/usr/share/imgforge/templates/"

// image gives what the image of role carries for the agent: its
// role.json (through its bytes, as on a node) and its templates, laid out
// as under /usr/share/imgforge/templates.
func image(t *testing.T, role string) (*imagemeta.RoleInfo, fs.FS) {
	t.Helper()
	cat, err := imgforge.Catalog("testdata/roles", "")
	if err != nil {
		t.Fatal(err)
	}
	plans, err := imgforge.Plans(cat, []string{role}, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := plans[0]
	b, err := p.RoleInfo().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	ri, err := imagemeta.ParseRoleInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	tm := fstest.MapFS{}
	for _, f := range p.Files {
		if f.Type == "file" && strings.HasPrefix(f.Path, templatesDir) {
			tm[strings.TrimPrefix(f.Path, templatesDir)] = &fstest.MapFile{Data: p.Blobs[f.Digest], Mode: 0o644}
		}
	}
	if len(tm) == 0 {
		t.Fatalf("the plan of %s carries no templates", role)
	}
	return &ri, tm
}

func node(name, role string, addr string, port uint16) render.Node {
	return render.Node{Name: name, Role: role, Address: netip.MustParseAddr(addr), Port: port}
}

func renderRole(t *testing.T, role string, in render.Input) *render.Config {
	t.Helper()
	ri, tm := image(t, role)
	r := &render.Renderer{Templates: tm, Role: ri, Rand: rand.Reader, Now: time.Now}
	c, err := r.Render(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// check runs a rendered file's checker on a copy of it, when the
// checker's program is installed (hack/setup.sh installs varnish).
func check(t *testing.T, f render.File) error {
	t.Helper()
	if _, err := exec.LookPath(f.Check[0]); err != nil {
		t.Skipf("%s is not installed (hack/setup.sh installs it): %v", f.Check[0], err)
	}
	// As the agent writes it: with the file's mode, readable by the
	// checker's own user (varnishd run as root drops to varnish).
	dir, err := os.MkdirTemp("", "dataroles-check-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "candidate")
	if err := os.WriteFile(p, f.Data, f.Mode); err != nil {
		t.Fatal(err)
	}
	argv := slices.Clone(f.Check)
	for i := range argv {
		argv[i] = strings.ReplaceAll(argv[i], render.Candidate, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		lines := strings.Split(string(out), "\n")
		return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.Join(lines[:min(len(lines), 8)], "\n"))
	}
	return nil
}

func file(t *testing.T, c *render.Config, path string) render.File {
	t.Helper()
	for _, s := range c.Services {
		for _, f := range s.Files {
			if f.Path == path {
				return f
			}
		}
	}
	t.Fatalf("%s was not rendered; services: %+v", path, c.Services)
	return render.File{}
}

func TestCacheRoleIsData(t *testing.T) {
	ri, _ := image(t, "cache")
	if ri.Role != "cache" || !slices.Equal(ri.Discover, []string{"web"}) || len(ri.Render) != 1 {
		t.Fatalf("role.json of cache: %+v", ri)
	}
	if got := ri.DiscoverPorts["web"]; len(got) == 0 || got[0] != (imagemeta.Port{Name: "http", Port: 80, Protocol: "tcp"}) {
		t.Errorf("discover_ports[web] = %+v; want the web role file's ports, http 80 first", got)
	}
	for _, tt := range []struct {
		name string
		web  []render.Node
		want []string
	}{
		{"no web node", nil, []string{"backend default none;"}},
		{"two web nodes, one port from SRV", []render.Node{
			node("web-02", "web", "10.0.2.2", 8080), node("web-01", "web", "fd00::21", 0),
		}, []string{
			"# web-01\nbackend web_0 {\n    .host = \"fd00::21\";\n    .port = \"80\";",
			"# web-02\nbackend web_1 {\n    .host = \"10.0.2.2\";\n    .port = \"8080\";",
			"web.add_backend(web_0);\n    web.add_backend(web_1);",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := render.Input{
				Self:       node("cache-01", "cache", "10.0.5.1", 0),
				Members:    map[string][]render.Node{"web": tt.web},
				Monitoring: &render.Monitoring{MetricsURL: "https://metrics.example/api/v1/write"},
			}
			c := renderRole(t, "cache", in)
			vcl := file(t, c, "/etc/varnish/default.vcl")
			for _, w := range tt.want {
				if !strings.Contains(string(vcl.Data), w) {
					t.Errorf("default.vcl lacks %q:\n%s", w, vcl.Data)
				}
			}
			if !slices.Equal(c.Services[0].Then[0], []string{"systemctl", "reload-or-restart", "varnish.service"}) {
				t.Errorf("reload = %q", c.Services[0].Then)
			}
			// The exporter of the role file is scraped.
			prom := file(t, c, render.MetricsConfigPath)
			if !strings.Contains(string(prom.Data), "http://127.0.0.1:9131/") {
				t.Errorf("the metrics shipper does not scrape the role's exporter:\n%s", prom.Data)
			}
			if err := check(t, vcl); err != nil {
				t.Fatalf("the checker refuses the rendered VCL: %v", err)
			}
		})
	}
	t.Run("checker refuses a broken file", func(t *testing.T) {
		c := renderRole(t, "cache", render.Input{Self: node("cache-01", "cache", "10.0.5.1", 0)})
		vcl := file(t, c, "/etc/varnish/default.vcl")
		vcl.Data = append(vcl.Data, "backend broken { .hots = \"x\"; }\n"...)
		err := check(t, vcl)
		if err == nil {
			t.Fatal("varnishd accepted a VCL with an unknown field: the checker checks nothing")
		}
		if !strings.Contains(err.Error(), "Unknown field: 'hots'") {
			t.Fatalf("varnishd failed, but not on the broken field: %v", err)
		}
	})
}

// TestFrontDiscoversCache: a web-like role's template reaches the cache
// members it discovers at the port each serves (the SRV port when
// discovery gave one), and gets the TLS pair.
func TestFrontDiscoversCache(t *testing.T) {
	in := render.Input{
		Self: node("front-01", "front", "10.0.6.1", 0),
		Members: map[string][]render.Node{"cache": {
			node("cache-01", "cache", "10.0.5.1", 0), node("cache-02", "cache", "fd00::52", 7000),
		}},
	}
	c := renderRole(t, "front", in)
	conf := string(file(t, c, "/etc/nginx/nginx.conf").Data)
	for _, w := range []string{"server 10.0.5.1:6081;", "server [fd00::52]:7000;", "listen 443 ssl;",
		"ssl_certificate /etc/imgforge/tls/tls.crt;", "ssl_certificate_key /etc/imgforge/tls/tls.key;"} {
		if !strings.Contains(conf, w) {
			t.Errorf("nginx.conf lacks %q:\n%s", w, conf)
		}
	}
	key := file(t, c, "/etc/imgforge/tls/tls.key")
	if !key.Sensitive || key.Mode != 0o600 || !strings.Contains(string(key.Data), "PRIVATE KEY") {
		t.Errorf("tls.key: sensitive %v, mode %v", key.Sensitive, key.Mode)
	}
}

// TestCacheOptionIsData: the cache role declares its own option (balance)
// in its role file; a node's user-data chooses it, the agent checks the
// choice against role.json, fills the declared default when it is left
// out, and the template renders with it, all with no Go change.
func TestCacheOptionIsData(t *testing.T) {
	ri, tm := image(t, "cache")
	want := []imagemeta.BootOption{{Name: "balance", Values: []string{"random", "round-robin"}, Default: "round-robin"}}
	if !reflect.DeepEqual(ri.BootOptions, want) {
		t.Fatalf("role.json boot_options = %+v, want %+v", ri.BootOptions, want)
	}
	userData := func(options string) string {
		return "#cloud-config\nimgforge:\n  cluster: shop\n  role: cache\n" + options +
			"  node: {name: cache-1, address: 10.10.0.51/24}\n" +
			"  discovery:\n    method: static\n    static:\n      members:\n" +
			"        - {name: web-1, role: web, address: 10.10.0.21}\n"
	}
	for _, tt := range []struct {
		name, options, want, err string
	}{
		{"default", "", "directors.round_robin()", ""},
		{"chosen", "  options: {balance: random}\n", "directors.random();\n    web.add_backend(web_0, 1.0);", ""},
		{"not accepted", "  options: {balance: fastest}\n", "", `field "imgforge.options.balance": fastest is not accepted by role cache; accepted: random, round-robin`},
		{"undeclared", "  options: {runtime: uwsgi}\n", "", `field "imgforge.options.runtime": role cache has no option runtime; accepted: balance`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := config.Parse("user-data", []byte(userData(tt.options)))
			if err != nil {
				t.Fatal(err)
			}
			err = agent.CheckRole(c, *ri)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error %v, want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			agent.CompleteFromRole(c, *ri)
			self, err := agent.SelfMember(c, true)
			if err != nil {
				t.Fatal(err)
			}
			web := discovery.Member{Name: "web-1", Role: "web", Address: netip.MustParseAddr("10.10.0.21"), Healthy: true}
			in, err := agent.RenderInput(agent.Snapshot{Config: c, Self: self, Members: discovery.NewSet([]discovery.Member{web}).With(self)}, 1<<30, ri)
			if err != nil {
				t.Fatal(err)
			}
			r := &render.Renderer{Templates: tm, Role: ri, Rand: rand.Reader, Now: time.Now}
			out, err := r.Render(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			vcl := file(t, out, "/etc/varnish/default.vcl")
			if !strings.Contains(string(vcl.Data), tt.want) {
				t.Fatalf("default.vcl lacks %q:\n%s", tt.want, vcl.Data)
			}
			if err := check(t, vcl); err != nil {
				t.Fatalf("the checker refuses the rendered VCL: %v", err)
			}
		})
	}
}
