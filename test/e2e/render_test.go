//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/render"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// roleRoots unpacks the OCI image of each role: from the shared cold
// build when this run has one, else from a build with the user's cache
// (running this test alone: go test -tags e2e -run TestRender ./test/e2e).
// It takes n slots (hostSlots) for the rest of t once the build is there.
func roleRoots(t *testing.T, n int64, roles ...string) map[string]string {
	t.Helper()
	out := ""
	if coldStarted() {
		out = cold(t, 0).out
		hostSlots(t, n)
	} else {
		hostSlots(t, n)
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				t.Fatal(err)
			}
			cache = filepath.Join(home, ".cache")
		}
		out = filepath.Join(workdir, "render-out")
		mustBuild(t, cache, out, append([]string{"--format", "oci"}, roles...)...)
	}
	roots := map[string]string{}
	for _, role := range roles {
		bundle := filepath.Join(t.TempDir(), "bundle")
		tool(t, "umoci", "unpack", "--image", filepath.Join(out, role, "oci")+":"+role, bundle)
		roots[role] = filepath.Join(bundle, "rootfs")
	}
	return roots
}

// chrootRunner runs the checkers inside a role's root. No service runs
// there, so the services' commands (systemctl, the SQL step) are only
// recorded.
type chrootRunner struct {
	root string
	ran  []string
}

func (c *chrootRunner) Run(ctx context.Context, argv []string) ([]byte, error) {
	// Played, not run: services do not run in the chroot, and the agent's
	// own commands (a replica's seed, a restore) need the node's
	// user-data and its peers.
	if argv[0] == "systemctl" || argv[0] == "mariadb" || argv[0] == "imgforge-agent" {
		c.ran = append(c.ran, strings.Join(argv, " "))
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chroot", append([]string{c.root}, argv...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root"}
	return cmd.CombinedOutput()
}

// renderTemplates reads the templates the image carries, as the agent does.
func renderTemplates(root string) fs.FS {
	return os.DirFS(filepath.Join(root, "usr/share/imgforge/templates"))
}

func e2eNodes(role string, n int, v6 bool) []render.Node {
	octet := map[string]int{"lb": 1, "web": 2, "app": 3, "db": 4}[role]
	var out []render.Node
	for i := 1; i <= n; i++ {
		a := netip.AddrFrom4([4]byte{10, 0, byte(octet), byte(i)})
		if v6 {
			a = netip.MustParseAddr(fmt.Sprintf("2001:db8:%d::%d", octet, i))
		}
		out = append(out, render.Node{Name: fmt.Sprintf("%s-%02d", role, i), Role: role, Address: a})
	}
	return out
}

// e2eInput is the input of role's first node with n members of what it
// discovers (and n other lb nodes for an lb), with monitoring.
func e2eInput(t *testing.T, role string, n int, v6 bool, pair *render.TLS) render.Input {
	t.Helper()
	self := e2eNodes(role, 1, v6)[0]
	self.Name = role + "-self"
	in := render.Input{
		Self:    self,
		Members: map[string][]render.Node{},
		DB:      render.DB{User: "app", Password: "app-password", ReplicationUser: "repl", ReplicationPassword: "repl-password"},
		Monitoring: &render.Monitoring{
			MetricsURL: "https://metrics.example:9090/api/v1/write", MetricsUser: "node", MetricsPassword: "metrics-password",
			LogsURL: "https://logs.example:19532", LogsCert: pair, CAPEM: pair.CertPEM,
		},
		MemoryBytes: 2 << 30,
	}
	switch role {
	case "lb":
		in.Members["lb"] = e2eNodes("lb", n, v6)
		in.Members["web"] = e2eNodes("web", n, v6)
		vip := netip.MustParseAddr("192.0.2.10")
		if v6 {
			vip = netip.MustParseAddr("2001:db8:ff::10")
		}
		in.VIPs = []render.VIP{{Address: vip, Prefix: 24, Interface: "eth0"}, {Address: vip.Next(), Prefix: 24, Interface: "eth0"}}
		if v6 {
			in.VIPs[0].Prefix, in.VIPs[1].Prefix = 64, 64
		}
	case "web":
		in.Members["app"] = e2eNodes("app", n, v6)
		// The other branch of nginx.conf.tmpl: no redirect.
		if v6 {
			in.Options = map[string]string{"https": "optional"}
		}
	case "app":
		in.Members["db"] = e2eNodes("db", n, v6)
		if n > 0 {
			in.Members["db"][0].Primary = true
		}
	case "db":
		in.Self.ID = 1
		in.Members["db"] = e2eNodes("db", n, v6)
		if n > 0 {
			in.Members["db"][0].Primary = true
			in.Options = map[string]string{"mode": "replica"}
		} else {
			in.Self.Primary = true
		}
	}
	return in
}

// TestRenderCheckers renders each role's configuration with 0, 1 and 3
// members (and IPv6 for lb and web), applies it inside the role's built
// root, where the real checkers (haproxy -c, keepalived -t, nginx -t,
// mariadbd --help) and the metrics shipper's own parser must accept it;
// then a broken file, which they must refuse while the last good file
// stays.
func TestRenderCheckers(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("chroot needs root")
	}
	roots := roleRoots(t, 1, allRoles...)
	pair, err := render.SelfSigned(rand.Reader, time.Now(), "monitoring.example", netip.MustParseAddr("192.0.2.1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, role := range allRoles {
		t.Run(role, func(t *testing.T) {
			root := roots[role]
			// What to render, check and reload is the image's role.json.
			ri, err := imagemeta.ReadRoleInfo(filepath.Join(root, imagemeta.RolePath))
			if err != nil {
				t.Fatal(err)
			}
			r := &render.Renderer{Templates: renderTemplates(root), Current: os.DirFS(root), Rand: rand.Reader, Now: time.Now, Role: &ri}
			run := &chrootRunner{root: root}
			a := &render.Applier{Root: root, Runner: run}
			type variant struct {
				n  int
				v6 bool
			}
			variants := []variant{{0, false}, {1, false}, {3, false}}
			if role == "lb" || role == "web" {
				variants = append(variants, variant{3, true})
			}
			var last *render.Config
			for _, v := range variants {
				in := e2eInput(t, role, v.n, v.v6, pair)
				c, err := r.Render(ctx, in)
				if err != nil {
					t.Fatalf("%d members (IPv6 %v): %v", v.n, v.v6, err)
				}
				rep, err := a.Apply(ctx, c)
				if err != nil {
					t.Fatalf("%d members (IPv6 %v): %v", v.n, v.v6, err)
				}
				checked := 0
				for _, s := range c.Services {
					for _, f := range s.Files {
						b, err := os.ReadFile(filepath.Join(root, f.Path))
						if err != nil || string(b) != string(f.Data) {
							t.Errorf("%s is not the rendered text (%v)", f.Path, err)
						}
						if f.Check != nil || f.Validate != nil {
							checked++
						}
					}
				}
				t.Logf("%d members (IPv6 %v): %d services, %d files checked by their checker, waiting %v", v.n, v.v6, len(rep.Services), checked, c.Waiting)
				last = c
			}
			// A broken file: the real checker refuses it, the good one stays.
			for _, s := range last.Services {
				for i, f := range s.Files {
					if f.Check == nil && f.Validate == nil {
						continue
					}
					t.Run(path.Base(f.Path), func(t *testing.T) {
						bad := s
						bad.Files = append([]render.File(nil), s.Files...)
						bad.Files[i].Data = append(append([]byte(nil), f.Data...), "\nimgforge_bogus_directive on;\n"...)
						run.ran = nil
						_, err := a.Apply(ctx, &render.Config{Role: role, Services: []render.Service{bad}})
						if !errors.Is(err, render.ErrCheck) {
							t.Fatalf("%s with a bogus line: err = %v, want the checker's refusal", f.Path, err)
						}
						t.Logf("refused: %v", err)
						if strings.Contains(err.Error(), "\n") {
							t.Errorf("the error is not one line: %q", err)
						}
						if b, _ := os.ReadFile(filepath.Join(root, f.Path)); string(b) != string(f.Data) {
							t.Errorf("%s: the last good file was not kept", f.Path)
						}
						if len(run.ran) > 0 {
							t.Errorf("ran %v after a refused file", run.ran)
						}
					})
				}
			}
		})
	}
}
