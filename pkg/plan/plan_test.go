package plan_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"gopkg.in/yaml.v3"

	"github.com/imgforge/imgforge/pkg/imgforge"
	"github.com/imgforge/imgforge/pkg/plan"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func embedded(t *testing.T) *plan.Options {
	t.Helper()
	return &plan.Options{HostMirrors: plan.Mirrors{Debian: "http://mirror.test/debian", Security: "http://mirror.test/debian-security"}}
}

func render(t *testing.T, p *plan.Plan) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("# plan digest: " + p.Digest() + "\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestGolden resolves every default role (and the app's uWSGI runtime)
// from the embedded definitions and compares the plan with testdata/.
func TestGolden(t *testing.T) {
	cat, err := imgforge.Catalog("", "")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]map[string]string{"lb": nil, "web": nil, "app": nil, "db": nil, "app-uwsgi": {"runtime": "uwsgi"}, "db-replica": {"mode": "replica"}}
	for name, set := range cases {
		t.Run(name, func(t *testing.T) {
			opts := embedded(t)
			opts.Set = set
			p, err := plan.Resolve(cat, strings.SplitN(name, "-", 2)[0], *opts)
			if err != nil {
				t.Fatal(err)
			}
			got := render(t, p)
			golden := filepath.Join("testdata", name+".yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/plan -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("plan of %s differs from %s (run go test ./pkg/plan -update and review the diff):\n%s", name, golden, got)
			}
		})
	}
}

func TestDefaultRolesAreTheStack(t *testing.T) {
	cat, _ := imgforge.Catalog("", "")
	if got := strings.Join(cat.RoleNames(), " "); got != "app db lb web" {
		t.Errorf("roles = %s", got)
	}
	want := map[string][]string{"lb": {"haproxy", "keepalived"}, "web": {"nginx"}, "app": {"php-fpm"}, "db": {"mariadb-server"}}
	for role, pkgs := range want {
		p, err := plan.Resolve(cat, role, *embedded(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, pkg := range pkgs {
			if !slices.Contains(p.Packages, pkg) {
				t.Errorf("%s plan lacks %s: %v", role, pkg, p.Packages)
			}
		}
		for _, pkg := range []string{"systemd", "linux-image-amd64", "cloud-init", "openssh-server", "prometheus-node-exporter"} {
			if !slices.Contains(p.BasePackages, pkg) {
				t.Errorf("%s base lacks %s", role, pkg)
			}
		}
	}
}

func TestOptions(t *testing.T) {
	cat, _ := imgforge.Catalog("", "")
	opts := embedded(t)
	opts.Set = map[string]string{"runtime": "rails"}
	if _, err := plan.Resolve(cat, "app", *opts); err == nil || !strings.Contains(err.Error(), `"rails" is not a choice; accepted: php-fpm, uwsgi`) {
		t.Errorf("err = %v", err)
	}
	opts.Set = map[string]string{"colour": "blue"}
	if _, err := plan.Resolve(cat, "lb", *opts); err == nil || !strings.Contains(err.Error(), `role lb has no option "colour"; its options: none`) {
		t.Errorf("err = %v", err)
	}
	opts.Set = nil
	opts.Mirror = "http://other.test/debian"
	opts.SourceDateEpoch = 42
	p, err := plan.Resolve(cat, "lb", *opts)
	if err != nil {
		t.Fatal(err)
	}
	if p.Distribution.Sources[0] != "deb http://other.test/debian bookworm main" || p.SourceDateEpoch != 42 {
		t.Errorf("overrides not applied: %v %d", p.Distribution.Sources, p.SourceDateEpoch)
	}
}

func TestDigestIgnoresWhereFilesCameFrom(t *testing.T) {
	cat, _ := imgforge.Catalog("", "")
	p1, _ := plan.Resolve(cat, "lb", *embedded(t))
	disk, _ := imgforge.Catalog("../../roles", "../../images")
	p2, err := plan.Resolve(disk, "lb", *embedded(t))
	if err != nil {
		t.Fatal(err)
	}
	if p1.Files[0].Source == p2.Files[0].Source {
		t.Fatalf("sources should differ: %s", p1.Files[0].Source)
	}
	if p1.Digest() != p2.Digest() {
		t.Error("the same definitions from disk and embedded give different plan digests")
	}
}

func TestDetectMirrors(t *testing.T) {
	tests := []struct {
		name  string
		files fstest.MapFS
		want  plan.Mirrors
	}{
		{"none", fstest.MapFS{}, plan.Mirrors{}},
		{"one-line", fstest.MapFS{"etc/apt/sources.list": {Data: []byte("# c\ndeb [arch=amd64] http://m.test/debian/ bookworm main\ndeb http://m.test/debian-security bookworm-security main\n")}},
			plan.Mirrors{Debian: "http://m.test/debian", Security: "http://m.test/debian-security"}},
		{"deb822", fstest.MapFS{"etc/apt/sources.list.d/debian.sources": {Data: []byte("Types: deb\nURIs: http://d.test/debian\nSuites: bookworm\n\nTypes: deb-src\nURIs: http://src.test/debian\n\nTypes: deb\nURIs: http://d.test/debian-security\nSuites: bookworm-security\n")},
			"etc/apt/sources.list.d/other.list": {Data: []byte("deb https://packages.example/apt stable main\n")}},
			plan.Mirrors{Debian: "http://d.test/debian", Security: "http://d.test/debian-security"}},
		{"disabled", fstest.MapFS{"etc/apt/sources.list.d/x.sources": {Data: []byte("Types: deb\nEnabled: no\nURIs: http://off.test/debian\n")}}, plan.Mirrors{}},
		// Issue 11, finding 3: what the host names passes spec.CheckMirror too.
		{"refused URIs passed over", fstest.MapFS{"etc/apt/sources.list": {Data: []byte("deb http://user:pw@a.test/debian bookworm main\ndeb file:///srv/debian bookworm main\ndeb http://q.test/debian?x=1/debian bookworm main\ndeb http://ok.test/debian bookworm main\n")}},
			plan.Mirrors{Debian: "http://ok.test/debian"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := plan.DetectMirrors(tt.files); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestMirrorOption checks issue 11, finding 3: a mirror given as an
// option is checked as the image definition's is, and a host mirror that
// the check refuses is not used.
func TestMirrorOption(t *testing.T) {
	cat, _ := imgforge.Catalog("", "")
	for _, m := range []string{"http://m.test/debian\ndeb [trusted=yes] http://evil.test/ bookworm main", "http://m.test/debian evil", "ftp://m.test/debian", "http://u:p@m.test/debian"} {
		opts := embedded(t)
		opts.Mirror = m
		_, err := plan.Resolve(cat, "lb", *opts)
		if err == nil || !strings.Contains(err.Error(), "mirror option: the mirror URL") {
			t.Errorf("mirror %q: err = %v", m, err)
		}
		if err != nil && strings.Contains(err.Error(), "u:p@") {
			t.Errorf("the error repeats the mirror's password: %v", err)
		}
	}
	opts := embedded(t)
	opts.HostMirrors.Debian = "http://m.test/debian\ndeb [trusted=yes] http://evil.test/ bookworm main"
	p, err := plan.Resolve(cat, "lb", *opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Distribution.Sources {
		if strings.Contains(s, "evil") || strings.Contains(s, "\n") {
			t.Errorf("source %q comes from a refused host mirror", s)
		}
	}
	if p.Distribution.Mirror != plan.DefaultMirror {
		t.Errorf("mirror = %q, want the default", p.Distribution.Mirror)
	}
}

// TestSymlinkedSources checks issue 11, finding 2: a files: source that is
// a symbolic link, or passes through one, out of the roles folder is
// refused with the role file, line and field, and never read; links in a
// copied folder are refused wherever they lead; a link that stays inside
// the folder is followed.
func TestSymlinkedSources(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	roles := filepath.Join(dir, "roles")
	for _, d := range []string{outside, filepath.Join(roles, "lb", "tree"), filepath.Join(roles, "lb", "tree2")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const secret = "root:$y$SECRET:19000:0:99999:7:::\n"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(outside, "shadow"), []byte(secret), 0o600))
	must(os.WriteFile(filepath.Join(roles, "lb", "real.cfg"), []byte("global\n"), 0o644))
	must(os.Symlink(filepath.Join(outside, "shadow"), filepath.Join(roles, "lb", "evil")))
	must(os.Symlink("../../outside/shadow", filepath.Join(roles, "lb", "evil-relative")))
	must(os.Symlink(outside, filepath.Join(roles, "lb", "evildir")))
	must(os.Symlink(filepath.Join(outside, "shadow"), filepath.Join(roles, "lb", "tree", "stolen")))
	must(os.WriteFile(filepath.Join(roles, "lb", "tree2", "a"), []byte("a"), 0o644))
	must(os.Symlink("a", filepath.Join(roles, "lb", "tree2", "b")))
	must(os.Symlink("real.cfg", filepath.Join(roles, "lb", "alias")))
	must(os.Symlink("tree2", filepath.Join(roles, "lb", "treealias")))

	role := func(src string) string {
		return "name: lb\nhealth: {type: tcp, port: 80}\nfiles:\n  - {src: " + src + ", dst: /etc/x}\n"
	}
	for _, tc := range []struct{ src, want string }{
		{"lb/evil", roles + `/lb.yaml:4:11: field "files[0].src": "lb/evil" leads outside ` + roles + ` through a symbolic link; accepted: files and folders inside it`},
		{"lb/evil-relative", `field "files[0].src": "lb/evil-relative" leads outside`},
		{"lb/evildir/shadow", `field "files[0].src": "lb/evildir/shadow" leads outside`},
		{"lb/evildir", `field "files[0].src": "lb/evildir" leads outside`},
		{"lb/tree", roles + `/lb.yaml:4:11: field "files[0].src": ` + roles + `/lb/tree/stolen is a symbolic link; accepted in a copied folder: files and folders`},
		{"lb/tree2", `field "files[0].src": ` + roles + `/lb/tree2/b is a symbolic link`},
		{"lb/alias", ""},
	} {
		t.Run(tc.src, func(t *testing.T) {
			must(os.WriteFile(filepath.Join(roles, "lb.yaml"), []byte(role(tc.src)), 0o644))
			cat, err := imgforge.Catalog(roles, "")
			if err != nil {
				t.Fatal(err)
			}
			p, err := plan.Resolve(cat, "lb", *embedded(t))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range p.Files {
					if f.Path == "/etc/x" && string(p.Blobs[f.Digest]) != "global\n" {
						t.Errorf("/etc/x holds %q, want the linked file's content", p.Blobs[f.Digest])
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v\nwant it to contain %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error is not one line, or shows the file: %q", err)
			}
		})
	}

	// The role file itself, linked from outside, is refused too.
	must(os.Remove(filepath.Join(roles, "lb.yaml")))
	must(os.WriteFile(filepath.Join(outside, "lb.yaml"), []byte(role("lb/real.cfg")), 0o644))
	must(os.Symlink(filepath.Join(outside, "lb.yaml"), filepath.Join(roles, "lb.yaml")))
	cat, err := imgforge.Catalog(roles, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plan.Resolve(cat, "lb", *embedded(t)); err == nil || !strings.Contains(err.Error(), "path escapes") {
		t.Errorf("a role file linked from outside: err = %v", err)
	}
}

func TestSlotSize(t *testing.T) {
	cat, _ := imgforge.Catalog("", "")
	p, err := plan.Resolve(cat, "lb", *embedded(t))
	if err != nil {
		t.Fatal(err)
	}
	if pos := p.DiskPos["disk.slot_size"]; p.Disk.SlotSize != 512<<20 || !strings.HasSuffix(pos.File, "images/default.yaml") || pos.Line == 0 {
		t.Errorf("slot size %d at %v, want 512MiB at images/default.yaml:LINE", p.Disk.SlotSize, pos)
	}
	// An image definition that does not set it gets the default.
	def, err := os.ReadFile("../../images/default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	mine := regexp.MustCompile(`(?m)^  slot_size: .*\n`).ReplaceAll(def, nil)
	if bytes.Equal(mine, def) {
		t.Fatal("images/default.yaml sets no disk.slot_size")
	}
	images := t.TempDir()
	if err := os.CopyFS(images, os.DirFS("../../images")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "default.yaml"), mine, 0o644); err != nil {
		t.Fatal(err)
	}
	cat, _ = imgforge.Catalog("../../roles", images)
	if p, err = plan.Resolve(cat, "lb", *embedded(t)); err != nil {
		t.Fatal(err)
	}
	if pos := p.DiskPos["disk.slot_size"]; p.Disk.SlotSize != plan.DefaultSlotSize || pos.Line != 0 || !strings.HasSuffix(pos.File, "default.yaml") {
		t.Errorf("unset: slot size %d at %+v, want the default", p.Disk.SlotSize, pos)
	}
}
