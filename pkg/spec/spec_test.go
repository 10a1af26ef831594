package spec

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

const goodRole = `name: lb
description: test
packages: [haproxy, keepalived]
services: [haproxy]
ports:
  - {name: http, port: 80}
health: {type: http, port: 8404, path: /health}
discover: [lb, web]
files:
  - {src: lb/haproxy.cfg, dst: /etc/haproxy/haproxy.cfg, mode: "0640", owner: haproxy}
`

func catalogWith(role string) *Catalog {
	return &Catalog{Roles: []Folder{{FS: fstest.MapFS{
		"lb.yaml":         {Data: []byte(role)},
		"web.yaml":        {Data: []byte("name: web\nhealth: {type: tcp, port: 80}\n")},
		"lb/haproxy.cfg":  {Data: []byte("global\n")},
		"lb/tmpl/a.tmpl":  {Data: []byte("a")},
		"notes/README.md": {Data: []byte("x")},
	}, Label: "roles"}}}
}

func TestRoleErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"syntax", "name: lb\ndescription: a: b\n", "roles/lb.yaml:2: invalid YAML: mapping values are not allowed in this context"},
		{"tab", "name: lb\n\tpackages: [a]\n", "roles/lb.yaml:2: invalid YAML: found a tab character"},
		{"unknown field", "name: lb\npakages: [x]\n", `roles/lb.yaml:2:1: field "pakages": unknown field here; accepted: credentials, description, discover, exporters, files, health, image, name, options, packages, ports, prune, render, reports, services, snapshot, vips`},
		{"nested unknown", "name: lb\nhealth: {type: tcp, port: 80, paht: /x}\n", `roles/lb.yaml:2:31: field "health.paht": unknown field in health; accepted: command, interval, path, port, type`},
		{"wrong type", "name: lb\nhealth: {type: tcp, port: eighty}\n", `roles/lb.yaml:2:27: field "health.port": expected a whole number, got "eighty"`},
		{"list expected", "name: lb\npackages: haproxy\nhealth: {type: tcp, port: 1}\n", `roles/lb.yaml:2:11: field "packages": expected a list, got "haproxy"`},
		{"bad mode", "name: lb\nhealth: {type: tcp, port: 1}\nfiles: [{src: lb/haproxy.cfg, dst: /x, mode: rwx}]\n", `field "files[0].mode": expected an octal file mode`},
		{"bad port", "name: lb\nhealth: {type: tcp, port: 1}\nports: [{name: http, port: 70000}]\n", `roles/lb.yaml:3:28: field "ports[0].port": 70000 is out of range; accepted: 1 to 65535`},
		{"bad package", "name: lb\nhealth: {type: tcp, port: 1}\npackages: [Hap Proxy]\n", `field "packages[0]": "Hap Proxy" is not a Debian package name`},
		{"unknown discover", "name: lb\nhealth: {type: tcp, port: 1}\ndiscover: [cache]\n", `field "discover[0]": unknown role "cache"; known roles: lb, web`},
		{"missing src", "name: lb\nhealth: {type: tcp, port: 1}\nfiles: [{src: nope, dst: /etc/x}]\n", `field "files[0].src": "nope" does not exist in roles`},
		{"escaping src", "name: lb\nhealth: {type: tcp, port: 1}\nfiles: [{src: ../x, dst: /etc/x}]\n", `must be a path inside roles`},
		{"relative dst", "name: lb\nhealth: {type: tcp, port: 1}\nfiles: [{src: lb/haproxy.cfg, dst: etc/x}]\n", `field "files[0].dst"`},
		{"health type", "name: lb\nhealth: {type: ping}\n", `field "health.type": "ping" is not accepted; accepted: http, tcp, command`},
		{"name mismatch", "name: web2\nhealth: {type: tcp, port: 1}\n", `field "name": is "web2" but the file is named lb.yaml`},
		{"duplicate key", "name: lb\nname: lb\n", `field "name": set twice`},
		{"empty", "", "roles/lb.yaml: the file is empty"},
		{"option default", "name: lb\nhealth: {type: tcp, port: 1}\noptions: [{name: rt, default: x, choices: {a: {}}}]\n", `field "options[0].default": "x" is not one of the choices; accepted: a`},
		{"boot option with packages", "name: lb\nhealth: {type: tcp, port: 1}\noptions: [{name: rt, default: a, boot: true, choices: {a: {packages: [curl]}}}]\n", `field "options[0].choices.a": adds packages, files or services, but the option is chosen at boot (boot: true)`},
		{"unknown credential", "name: lb\nhealth: {type: tcp, port: 1}\ncredentials: [ldap]\n", `field "credentials[0]": "ldap" is not accepted; accepted: database, replication`},
		{"prune", "name: lb\nhealth: {type: tcp, port: 1}\nprune: [var/lib]\n", `field "prune[0]"`},
		// Finding 1 of issue 11: this became a shell hook on the build host.
		{"prune shell", "name: lb\nhealth: {type: tcp, port: 1}\nprune: [\"/var/lib/x;touch${IFS}/tmp/PWNED\"]\n", `roles/lb.yaml:3:9: field "prune[0]": "/var/lib/x;touch${IFS}/tmp/PWNED" is not accepted: a prune glob is a clean absolute path other than / made of letters, digits, '/', '.', '_', '-', '+', '@', ':', ',' and the wildcards '*' and '?'`},
		{"prune subshell", "name: lb\nhealth: {type: tcp, port: 1}\nprune: [\"/var/$(id)\"]\n", `field "prune[0]"`},
		{"prune backquote", "name: lb\nhealth: {type: tcp, port: 1}\nprune: [\"/var/`id`\"]\n", `field "prune[0]"`},
		{"prune newline", "name: lb\nhealth: {type: tcp, port: 1}\nprune: [\"/var/x\\nrm\"]\n", `field "prune[0]"`},
		{"prune class", "name: lb\nhealth: {type: tcp, port: 1}\nprune: [\"/var/[ab]\"]\n", `field "prune[0]"`},
		{"prune dotdot", "name: lb\nhealth: {type: tcp, port: 1}\nprune: [\"/var/../etc\"]\n", `field "prune[0]"`},
		{"prune root", "name: lb\nhealth: {type: tcp, port: 1}\nprune: [\"/\"]\n", `field "prune[0]"`},
		// Issue 12: what the agent renders is data in the role file.
		{"render no file", "name: lb\nhealth: {type: tcp, port: 1}\nrender: [{service: haproxy}]\n", `field "render[0].files": a rendered service needs at least one file`},
		{"render template and from", "name: lb\nhealth: {type: tcp, port: 1}\nrender: [{service: x, files: [{template: a.tmpl, from: tls-key, path: /etc/x}]}]\n", `field "render[0].files[0]": give a template or from, not both`},
		{"render from", "name: lb\nhealth: {type: tcp, port: 1}\nrender: [{service: x, files: [{from: password, path: /etc/x}]}]\n", `field "render[0].files[0].from": "password" is not accepted; accepted: tls-cert, tls-key`},
		{"render template path", "name: lb\nhealth: {type: tcp, port: 1}\nrender: [{service: x, files: [{template: ../a.tmpl, path: /etc/x}]}]\n", `field "render[0].files[0].template"`},
		{"render path", "name: lb\nhealth: {type: tcp, port: 1}\nrender: [{service: x, files: [{template: a.tmpl, path: etc/x}]}]\n", `field "render[0].files[0].path"`},
		{"render twice", "name: lb\nhealth: {type: tcp, port: 1}\nrender: [{service: x, files: [{template: a.tmpl, path: /etc/x}, {template: b.tmpl, path: /etc/x}]}]\n", `field "render[0].files[1].path": "/etc/x" is rendered twice`},
		{"render check candidate", "name: lb\nhealth: {type: tcp, port: 1}\nrender: [{service: x, files: [{template: a.tmpl, path: /etc/x, check: [haproxy, -c]}]}]\n", `field "render[0].files[0].check": the checker does not name the file`},
		{"render check shell", "name: lb\nhealth: {type: tcp, port: 1}\nrender: [{service: x, files: [{template: a.tmpl, path: /etc/x, check: [sh, -c, \"x {candidate}; id\"]}]}]\n", `field "render[0].files[0].check[2]"`},
		{"render reload empty", "name: lb\nhealth: {type: tcp, port: 1}\nrender: [{service: x, files: [{template: a.tmpl, path: /etc/x}], reload: [[]]}]\n", `field "render[0].reload[0]": an empty command`},
		{"render mode", "name: lb\nhealth: {type: tcp, port: 1}\nrender: [{service: x, files: [{template: a.tmpl, path: /etc/x, mode: 04755}]}]\n", `field "render[0].files[0].mode"`},
		{"exporter path", "name: lb\nhealth: {type: tcp, port: 1}\nexporters: [{name: x, port: 1, path: metrics}]\n", `field "exporters[0].path"`},
		{"exporter port", "name: lb\nhealth: {type: tcp, port: 1}\nexporters: [{name: x, port: 0, path: /metrics}]\n", `field "exporters[0].port"`},
		{"snapshot shell", "name: lb\nhealth: {type: tcp, port: 1}\nsnapshot: {command: [sh, -c, \"dump; id\"]}\n", `field "snapshot.command[2]"`},
		{"snapshot empty", "name: lb\nhealth: {type: tcp, port: 1}\nsnapshot: {command: []}\n", `field "snapshot.command": an empty command`},
		{"report name", "name: lb\nhealth: {type: tcp, port: 1}\nexporters: [{name: x, port: 1, path: /metrics}]\noptions: [{name: mode, default: a, boot: true, choices: {a: {}, b: {}}}]\nreports: [{name: Lag, exporter: x, metrics: [m]}]\n", `field "reports[0].name"`},
		{"report exporter", "name: lb\nhealth: {type: tcp, port: 1}\nexporters: [{name: x, port: 1, path: /metrics}]\noptions: [{name: mode, default: a, boot: true, choices: {a: {}, b: {}}}]\nreports: [{name: lag, exporter: y, metrics: [m]}]\n", `field "reports[0].exporter": "y" is not one of the role's exporters`},
		{"report no metrics", "name: lb\nhealth: {type: tcp, port: 1}\nexporters: [{name: x, port: 1, path: /metrics}]\noptions: [{name: mode, default: a, boot: true, choices: {a: {}, b: {}}}]\nreports: [{name: lag, exporter: x}]\n", `field "reports[0].metrics"`},
		{"report metric name", "name: lb\nhealth: {type: tcp, port: 1}\nexporters: [{name: x, port: 1, path: /metrics}]\noptions: [{name: mode, default: a, boot: true, choices: {a: {}, b: {}}}]\nreports: [{name: lag, exporter: x, metrics: [\"a b\"]}]\n", `field "reports[0].metrics[0]"`},
		{"report aggregate", "name: lb\nhealth: {type: tcp, port: 1}\nexporters: [{name: x, port: 1, path: /metrics}]\noptions: [{name: mode, default: a, boot: true, choices: {a: {}, b: {}}}]\nreports: [{name: lag, exporter: x, metrics: [m], aggregate: sum}]\n", `field "reports[0].aggregate": "sum" is not accepted; accepted: max, min`},
		{"report when option", "name: lb\nhealth: {type: tcp, port: 1}\nexporters: [{name: x, port: 1, path: /metrics}]\noptions: [{name: mode, default: a, boot: true, choices: {a: {}, b: {}}}]\nreports: [{name: lag, exporter: x, metrics: [m], when: {role: b}}]\n", `field "reports[0].when.role": the role has no option`},
		{"report when value", "name: lb\nhealth: {type: tcp, port: 1}\nexporters: [{name: x, port: 1, path: /metrics}]\noptions: [{name: mode, default: a, boot: true, choices: {a: {}, b: {}}}]\nreports: [{name: lag, exporter: x, metrics: [m], when: {mode: c}}]\n", `field "reports[0].when.mode": "c" is not accepted; accepted: a, b`},
		{"report twice", "name: lb\nhealth: {type: tcp, port: 1}\nexporters: [{name: x, port: 1, path: /metrics}]\noptions: [{name: mode, default: a, boot: true, choices: {a: {}, b: {}}}]\nreports: [{name: lag, exporter: x, metrics: [m]}, {name: lag, exporter: x, metrics: [m]}]\n", `field "reports[1].name": report "lag" is listed twice`},
		{"report help", "name: lb\nhealth: {type: tcp, port: 1}\nexporters: [{name: x, port: 1, path: /metrics}]\noptions: [{name: mode, default: a, boot: true, choices: {a: {}, b: {}}}]\nreports: [{name: lag, exporter: x, metrics: [m], help: \"a\\\\b\"}]\n", `field "reports[0].help"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := catalogWith(tt.yaml).Role("lb")
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestRoleGood(t *testing.T) {
	r, src, err := catalogWith(goodRole).Role("lb")
	if err != nil {
		t.Fatal(err)
	}
	if r.Files[0].Mode != 0o640 || r.Files[0].Owner != "haproxy" || len(r.Packages) != 2 {
		t.Errorf("decoded %+v", r)
	}
	if p := src.At("packages[1]"); p.Line != 3 || p.Col != 21 {
		t.Errorf("position of packages[1] = %+v, want line 3 col 21", p)
	}
}

func TestUnknownRole(t *testing.T) {
	_, _, err := catalogWith(goodRole).Role("cache")
	if err == nil || !strings.Contains(err.Error(), `unknown definition: role "cache": known roles: lb, web`) {
		t.Fatalf("err = %v", err)
	}
}

func TestDiskOverridesEmbedded(t *testing.T) {
	disk := fstest.MapFS{"web.yaml": {Data: []byte("name: web\ndescription: mine\nhealth: {type: tcp, port: 80}\n")}}
	c := catalogWith(goodRole)
	c.Roles = append([]Folder{{FS: disk, Label: "myroles"}}, c.Roles...)
	r, src, err := c.Role("web")
	if err != nil {
		t.Fatal(err)
	}
	if r.Description != "mine" || src.File != "myroles/web.yaml" {
		t.Errorf("got %q from %s", r.Description, src.File)
	}
	if got := strings.Join(c.RoleNames(), ","); got != "lb,web" {
		t.Errorf("RoleNames = %s", got)
	}
}

func TestImageErrors(t *testing.T) {
	base := "name: default\ndistribution: {name: debian, suite: bookworm}\narchitecture: amd64\nsource_date_epoch: 1\n"
	tests := []struct{ name, yaml, want string }{
		{"ok", base, ""},
		{"arch", strings.Replace(base, "amd64", "sparc", 1), `field "architecture": "sparc" is not accepted; accepted: amd64, arm64`},
		{"arm64 later", strings.Replace(base, "amd64", "arm64", 1), `"arm64" is not built yet`},
		{"distro", strings.Replace(base, "debian,", "ubuntu,", 1), `field "distribution.name": "ubuntu" is not accepted`},
		{"mirror", base + "distribution: {}\n", `set twice`},
		{"bad mirror", strings.Replace(base, "suite: bookworm", "suite: bookworm, mirror: 'ftp:/x'", 1), `field "distribution.mirror"`},
		// Issue 11, finding 3: a newline added an apt source.
		{"mirror newline", strings.Replace(base, "suite: bookworm", `suite: bookworm, mirror: "http://m.test/debian\ndeb [trusted=yes] http://evil/ bookworm main"`, 1),
			`images/default.yaml:2:55: field "distribution.mirror": the mirror URL holds whitespace or a control character; accepted: an http:// or https:// URL`},
		{"security mirror userinfo", strings.Replace(base, "suite: bookworm", `suite: bookworm, security_mirror: "http://u:secret@m.test/debian-security"`, 1), `field "distribution.security_mirror": the mirror URL holds a user or password`},
		{"mirror file", strings.Replace(base, "suite: bookworm", `suite: bookworm, mirror: "file:///srv/debian"`, 1), `is not an http:// or https:// URL`},
		{"mirror ok", strings.Replace(base, "suite: bookworm", `suite: bookworm, mirror: "https://[fd00::1]:8080/debian/", security_mirror: "http://deb.debian.org/debian-security"`, 1), ""},
		{"epoch", strings.Replace(base, "source_date_epoch: 1", "source_date_epoch: 0", 1), `field "source_date_epoch": must be a positive Unix time`},
		{"output", base + "outputs: [oci, floppy]\n", `field "outputs[1]": unknown output format "floppy"; known: oci, docker-archive`},
		{"size", base + "disk: {size: lots}\n", `field "disk.size": expected a size such as 2GiB`},
		{"gce size", base + "outputs: [raw, gce]\ndisk: {size: 2GiB}\n", ""},
		{"gce size unit", base + "outputs: [raw, gce]\ndisk:\n  size: 1500MiB\n", `images/default.yaml:7:9: field "disk.size": 1572864000 bytes is not accepted with the gce output; accepted: a whole number of GiB`},
		{"vhd size unit", base + "outputs: [vhd]\ndisk: {size: 1000000}\n", `field "disk.size": 1000000 bytes is not accepted with the vhd output; accepted: a whole number of MiB`},
		{"slot size", base + "disk: {size: 4GiB, slot_size: 1GiB}\n", ""},
		{"slot size unit", base + "disk:\n  size: 4GiB\n  slot_size: 1000000\n", `images/default.yaml:7:14: field "disk.slot_size": 1000000 bytes is not a whole number of MiB`},
		{"globs", base + "exclude: [/usr/share/doc/*, /lib/modules/*/kernel/lib/test_*]\ninclude: [/usr/share/doc/*/copyright]\nboot_exclude: [/boot/*, /usr/lib/udev/hwdb.d/*]\n", ""},
		{"exclude newline", base + "exclude: [\"/usr/share/doc/*\\npath-include=/x\"]\n", `field "exclude[0]": "/usr/share/doc/*\npath-include=/x" is not accepted: a glob is an absolute path made of letters, digits`},
		{"include return", base + "include: [\"/usr/share/doc\\r\"]\n", `field "include[0]"`},
		{"boot_exclude relative", base + "boot_exclude: [boot/*]\n", `field "boot_exclude[0]"`},
		{"secure boot", base + "secure_boot: {key: /etc/imgforge/db.key, cert: /etc/imgforge/db.pem}\n", ""},
		{"secure boot no cert", base + "secure_boot:\n  key: /etc/imgforge/db.key\n", `field "secure_boot.cert": missing: secure_boot needs both key and cert`},
		{"secure boot relative", base + "secure_boot:\n  key: db.key\n  cert: /etc/imgforge/db.pem\n", `images/default.yaml:6:8: field "secure_boot.key": "db.key" is not an absolute path`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Catalog{Images: []Folder{{FS: fstest.MapFS{"default.yaml": {Data: []byte(tt.yaml)}}, Label: "images"}}}
			_, _, err := c.Image("default")
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{"2GiB": 2 << 30, "512M": 512 << 20, "1048576": 1 << 20, "3 KiB": 3 << 10} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "G", "-1", "1.5G", "99999999999T"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) gave no error", bad)
		}
	}
}

// FuzzParseRole checks that no input makes the role parser panic, and that
// every error it gives is one line naming the file.
func FuzzParseRole(f *testing.F) {
	f.Add([]byte(goodRole))
	for _, dir := range []string{"../../roles", "../../images"} {
		matches, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
		for _, m := range matches {
			if b, err := os.ReadFile(m); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func() error{
			func() error { _, _, err := ParseRole("x.yaml", data); return err },
			func() error { _, _, err := ParseImage("x.yaml", data); return err },
		} {
			err := parse()
			if err != nil && !strings.HasPrefix(err.Error(), "x.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
		}
	})
}

func TestCheckMirror(t *testing.T) {
	for _, ok := range []string{"http://deb.debian.org/debian", "https://m.test", "http://m.test/", "http://10.0.0.1:3142/debian", "https://[fd00::1]/debian", "http://m.test/debian_x/1.2+~a"} {
		if err := CheckMirror(ok); err != nil {
			t.Errorf("CheckMirror(%q) = %v", ok, err)
		}
	}
	for bad, why := range map[string]string{
		"":                               "is empty",
		"http://m.test/debian\nx":        "whitespace or a control character",
		"http://m.test/deb ian":          "whitespace or a control character",
		"http://m.test/debian\t":         "whitespace or a control character",
		"http://m.test/debian\x7f":       "whitespace or a control character",
		"file:///srv/debian":             "not an http:// or https:// URL",
		"HTTP://m.test/debian":           "not an http:// or https:// URL",
		"ftp://m.test/debian":            "not an http:// or https:// URL",
		"http://m.test/debian?x=1":       "a query or a fragment",
		"http://m.test/debian#f":         "a query or a fragment",
		"http://user:pass@m.test/debian": "a user or password",
		"http:///debian":                 "has no host",
		"http://m.test/$(id)":            "a character that is not accepted",
		"http://m.test:99999999/":        "a character that is not accepted",
		"http://m.test/debian;x":         "a character that is not accepted",
	} {
		err := CheckMirror(bad)
		if err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("CheckMirror(%q) = %v, want %q", bad, err, why)
			continue
		}
		if bad != "" && strings.Contains(err.Error(), bad) {
			t.Errorf("the error repeats the value: %v", err)
		}
	}
}

// TestFileSizeCap checks issue 11, finding 9: a 10 MB role file was
// accepted. Definition files are capped at 1 MiB, and the error names the
// file and the limit.
func TestFileSizeCap(t *testing.T) {
	pad := func(n int) []byte {
		b := []byte(goodRole + "# ")
		for len(b) < n-1 {
			b = append(b, 'x')
		}
		return append(b, '\n')
	}
	c := catalogWith(goodRole)
	c.Roles[0].FS.(fstest.MapFS)["lb.yaml"] = &fstest.MapFile{Data: pad(10 << 20)}
	_, _, err := c.Role("lb")
	if err == nil || err.Error() != "roles/lb.yaml: the file is larger than 1024 KiB (1 MiB), the most a definition file may be" {
		t.Errorf("10 MiB role: err = %v", err)
	}
	c.Roles[0].FS.(fstest.MapFS)["lb.yaml"] = &fstest.MapFile{Data: pad(MaxFileSize)}
	if _, _, err := c.Role("lb"); err != nil {
		t.Errorf("a role of exactly 1 MiB: %v", err)
	}
	c.Images = []Folder{{FS: fstest.MapFS{"default.yaml": {Data: pad(MaxFileSize + 1)}}, Label: "images"}}
	if _, _, err := c.Image("default"); err == nil || !strings.Contains(err.Error(), "images/default.yaml: the file is larger than 1024 KiB") {
		t.Errorf("image one byte over: err = %v", err)
	}
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(p, pad(MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPath(p); err == nil || !strings.Contains(err.Error(), p+": the file is larger than") {
		t.Errorf("ReadPath: err = %v", err)
	}
	if _, err := ReadPath(p + ".none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadPath of a missing file: err = %v", err)
	}
}

// FuzzParseImage checks the image-definition parser and validation on any
// input: no panic; every error one line naming the file; a definition
// that validates has only mirrors and globs that are safe to pass on (no
// whitespace or control characters). Its corpus is testdata/fuzz/FuzzParseImage.
func FuzzParseImage(f *testing.F) {
	matches, _ := filepath.Glob(filepath.Join("../../images", "*.yaml"))
	for _, m := range matches {
		if b, err := os.ReadFile(m); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		im, src, err := ParseImage("x.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "x.yaml") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line naming the file: %q", err)
			}
			return
		}
		if err := im.Validate(src); err != nil {
			if !strings.HasPrefix(err.Error(), "x.yaml") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("validation error is not one line naming the file: %q", err)
			}
			return
		}
		d := im.Distribution
		values := append([]string{d.Mirror, d.SecurityMirror, d.Suite}, d.Components...)
		for _, l := range [][]string{im.Exclude, im.Include, im.BootExclude, im.BootInclude} {
			values = append(values, l...)
		}
		for _, v := range values {
			if strings.IndexFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
				t.Fatalf("a validated image holds %q", v)
			}
		}
	})
}

// TestRoleNameLength: a role name travels in every node's signed gossip
// metadata (issue 12), so it has at most 32 characters.
func TestRoleNameLength(t *testing.T) {
	long := "r" + strings.Repeat("x", 32)
	c := &Catalog{Roles: []Folder{{FS: fstest.MapFS{
		long + ".yaml":      {Data: []byte("name: " + long + "\nhealth: {type: tcp, port: 1}\n")},
		long[:32] + ".yaml": {Data: []byte("name: " + long[:32] + "\nhealth: {type: tcp, port: 1}\n")},
	}, Label: "roles"}}}
	if _, _, err := c.Role(long); err == nil || !strings.Contains(err.Error(), "a role name has at most 32") {
		t.Errorf("a 33-character role: %v", err)
	}
	if _, _, err := c.Role(long[:32]); err != nil {
		t.Errorf("a 32-character role: %v", err)
	}
}
