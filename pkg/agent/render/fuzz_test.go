package render_test

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/pkg/agent/render"
)

// fuzzInputs puts the fuzzed strings wherever outside input reaches a
// template: node names, the VIP interface, database and metrics
// credentials, the endpoints.
func fuzzInputs(t testing.TB, name, iface, user, password, url string) []render.Input {
	member := func(role string, i int) render.Node {
		n := nodes(role, 3)[i]
		n.Name = name
		return n
	}
	dbs := []render.Node{member("db", 0), nodes("db", 3)[1]}
	dbs[0].Primary = true
	members := map[string][]render.Node{
		"lb": {member("lb", 1)}, "web": {member("web", 0)}, "app": {member("app", 0)}, "db": dbs,
	}
	mon := &render.Monitoring{MetricsURL: url, MetricsUser: user, MetricsPassword: password, LogsURL: url, LogsCert: testPairOnce(t)}
	dbc := render.DB{Name: user, User: user, Password: password, ReplicationUser: "repl", ReplicationPassword: password}
	var out []render.Input
	for _, role := range []string{"lb", "web", "app", "db"} {
		in := render.Input{
			Self: nodes(role, 1)[0], Members: members, DB: dbc, Monitoring: mon, MemoryBytes: 1 << 30,
			VIPs:    []render.VIP{{Address: netip.MustParseAddr("10.0.9.1"), Prefix: 24, Interface: iface}},
			Options: map[string]string{"mode": "replica"},
		}
		if role == "web" {
			in.TLS = testPairOnce(t)
		}
		out = append(out, in)
	}
	// The node's own name too.
	self := out[0]
	self.Self.Name = name
	self.Members = map[string][]render.Node{"lb": nodes("lb", 3)[1:], "web": nodes("web", 1)}
	return append(out, self)
}

// structure counts what would let a value add a line, a directive or end
// a quoted string.
func structure(path string, b []byte) map[rune]int {
	marks := "\n'\"`\\"
	if strings.HasSuffix(path, ".cfg") || strings.HasSuffix(path, "keepalived.conf") || strings.HasSuffix(path, "nginx.conf") || strings.HasSuffix(path, ".cnf") {
		marks += ";{}#"
	}
	m := map[rune]int{}
	for _, r := range string(b) {
		if strings.ContainsRune(marks, r) {
			m[r]++
		}
	}
	return m
}

// FuzzNoInjection renders every role with fuzzed names, interface,
// credentials and URLs: what Validate accepts must give files with the
// same lines, quotes and (in the service configurations) directive
// separators as a plain value gives.
func FuzzNoInjection(f *testing.F) {
	f.Add("web-01", "eth0", "app", "password1", "https://m.example/w")
	f.Add("web-01\n    server evil 6.6.6.6:80", "eth0", "app", "password1", "https://m.example/w")
	f.Add("web-01", "eth0 }\nvrrp_script x {", "app", "password1", "https://m.example/w")
	f.Add("web-01", "eth0", "app", "pw'); DROP TABLE x; --", "https://m.example/w")
	f.Add("web-01", "eth0", "app", "p{w};#x:y", "https://m.example/w\"\n  - url: https://evil/")
	f.Add("a.b.c", "br-lan.10", "a_b", "~!@#%^&*()-+=[]{}|;:,.<>/?", "https://m.example:1/a?b=c#d")
	r := renderer(f)
	plain := fuzzInputs(f, "plain-name", "eth0", "plain_user", "plain-password", "https://plain.example/w")
	want := make([]map[string]map[rune]int, len(plain))
	for i, in := range plain {
		c, err := r.Render(context.Background(), in)
		if err != nil {
			f.Fatal(err)
		}
		want[i] = map[string]map[rune]int{}
		for _, s := range c.Services {
			for _, file := range s.Files {
				want[i][file.Path] = structure(file.Path, file.Data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, name, iface, user, password, url string) {
		for i, in := range fuzzInputs(t, name, iface, user, password, url) {
			if in.Validate() != nil {
				continue
			}
			c, err := r.Render(context.Background(), in)
			if err != nil {
				t.Fatalf("valid input, but Render: %v", err)
			}
			for _, s := range c.Services {
				for _, file := range s.Files {
					if strings.HasSuffix(file.Path, ".secret") {
						continue // the secret alone, not parsed as configuration
					}
					got, w := structure(file.Path, file.Data), want[i][file.Path]
					for _, mark := range "\n'\"`\\;{}#" {
						if got[mark] != w[mark] {
							t.Fatalf("%s: %d of %q, a plain value gives %d:\n%s", file.Path, got[mark], mark, w[mark], file.Data)
						}
					}
				}
			}
		}
	})
}
