package render_test

import (
	"context"
	"crypto/rand"
	"net/netip"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/pkg/agent/render"
)

func TestValidateRejects(t *testing.T) {
	base := func() render.Input {
		return render.Input{
			Self:    render.Node{Name: "lb-01", Role: "lb", Address: netip.MustParseAddr("10.0.1.1")},
			Members: map[string][]render.Node{"lb": nodes("lb", 2), "web": nodes("web", 2)},
			VIPs:    []render.VIP{{Address: netip.MustParseAddr("192.0.2.10"), Prefix: 24, Interface: "eth0"}},
		}
	}
	cases := []struct {
		name string
		edit func(*render.Input)
		want string
	}{
		{"newline in a name", func(in *render.Input) { in.Members["web"][1].Name = "web-02\n    server evil 6.6.6.6:80" }, "members[web][1].name"},
		{"space in a name", func(in *render.Input) { in.Self.Name = "lb 01" }, "self.name"},
		{"empty name", func(in *render.Input) { in.Members["web"][0].Name = "" }, "members[web][0].name"},
		{"leading hyphen", func(in *render.Input) { in.Members["web"][0].Name = "-web" }, "not a host name"},
		{"brace in a name", func(in *render.Input) { in.Members["web"][0].Name = "web}" }, "not a host name"},
		{"bad role name", func(in *render.Input) { in.Self.Role = "cache\nx" }, "self.role"},
		{"member of another role", func(in *render.Input) { in.Members["web"][0].Role = "app" }, `members[web][0].role: "app"`},
		{"no address", func(in *render.Input) { in.Members["web"][0].Address = netip.Addr{} }, "members[web][0].address: no address"},
		{"unspecified address", func(in *render.Input) { in.Members["web"][0].Address = netip.MustParseAddr("0.0.0.0") }, "not a unicast"},
		{"zoned address", func(in *render.Input) { in.Members["web"][0].Address = netip.MustParseAddr("fe80::1%eth0") }, "zoned"},
		{"two addresses for a name", func(in *render.Input) {
			in.Members["web"] = append(in.Members["web"], render.Node{Name: "web-01", Role: "web", Address: netip.MustParseAddr("10.9.9.9")})
		}, "listed twice"},
		{"self listed with another address", func(in *render.Input) { in.Members["lb"][0].Address = netip.MustParseAddr("10.9.9.9") }, "this node (self) has"},
		{"interface with a space", func(in *render.Input) { in.VIPs[0].Interface = "eth0 dev lo" }, "vips[0].interface"},
		{"interface too long", func(in *render.Input) { in.VIPs[0].Interface = "abcdefghijklmnop" }, "vips[0].interface"},
		{"prefix 0", func(in *render.Input) { in.VIPs[0].Prefix = 0 }, "vips[0].prefix: 0; accepted: 1 to 32"},
		{"prefix 33", func(in *render.Input) { in.VIPs[0].Prefix = 33 }, "vips[0].prefix"},
		{"IPv6 VIP on IPv4 node", func(in *render.Input) { in.VIPs[0].Address = netip.MustParseAddr("2001:db8::1") }, "family"},
		{"router id out of range", func(in *render.Input) { in.VIPs[0].RouterID = 256 }, "vips[0].router_id"},
		{"router ids collide", func(in *render.Input) {
			in.VIPs = append(in.VIPs, render.VIP{Address: netip.MustParseAddr("192.0.2.11"), Prefix: 24, Interface: "eth0", RouterID: 51})
		}, "vips[1].router_id: 51 is also"},
		{"newline in an option", func(in *render.Input) { in.Options = map[string]string{"runtime": "php-fpm\n}"} }, `options.runtime: "php-fpm\n}"; accepted: an option name and a value of lower-case letters, digits, '.' and '-'`},
		{"quote in a password", func(in *render.Input) { in.DB = render.DB{User: "app", Password: "pass'; DROP"} }, "db.user password"},
		{"short password", func(in *render.Input) { in.DB = render.DB{User: "app", Password: "short"} }, "8 to 256"},
		{"bad db user", func(in *render.Input) { in.DB = render.DB{User: "app'@'%", Password: "password1"} }, "db.user"},
		{"bad db name", func(in *render.Input) { in.DB = render.DB{Name: "x`; y", User: "a", Password: "password1"} }, "db.name"},
		{"same user twice", func(in *render.Input) {
			in.DB = render.DB{User: "a", Password: "password1", ReplicationUser: "a", ReplicationPassword: "password2"}
		}, "give two accounts"},
		{"plain http metrics", func(in *render.Input) { in.Monitoring = &render.Monitoring{MetricsURL: "http://m/write"} }, "monitoring.metrics_url"},
		{"credentials in the URL", func(in *render.Input) { in.Monitoring = &render.Monitoring{MetricsURL: "https://u:p@m/write"} }, "own fields"},
		{"newline in the URL", func(in *render.Input) {
			in.Monitoring = &render.Monitoring{MetricsURL: "https://m/w\nremote_write: []"}
		}, "monitoring.metrics_url"},
		{"basic auth and token", func(in *render.Input) {
			in.Monitoring = &render.Monitoring{MetricsURL: "https://m/w", MetricsUser: "u", MetricsPassword: "p", MetricsToken: "t"}
		}, "not both"},
		{"logs without a client certificate", func(in *render.Input) { in.Monitoring = &render.Monitoring{LogsURL: "https://l"} }, "monitoring.logs_cert"},
		{"CA that is not PEM", func(in *render.Input) { in.Monitoring = &render.Monitoring{CAPEM: []byte("hello")} }, "monitoring.ca"},
		{"TLS key not matching", func(in *render.Input) {
			other, _ := render.SelfSigned(rand.Reader, now, "x", netip.MustParseAddr("192.0.2.1"))
			in.TLS = &render.TLS{CertPEM: testPairOnce(t).CertPEM, KeyPEM: other.KeyPEM}
		}, "tls:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := base()
			if err := in.Validate(); err != nil {
				t.Fatalf("the base input is invalid: %v", err)
			}
			c.edit(&in)
			err := in.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate() = %v, want an error with %q", err, c.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("the error is not one line: %q", err)
			}
			if _, rerr := renderer(t).Render(context.Background(), in); rerr == nil {
				t.Error("Render accepted what Validate rejects")
			}
		})
	}
}

// TestValidateRoleNeeds: what a role needs of the input is data (vips:
// in its role file) or said by its templates (fail, memory, primary).
func TestValidateRoleNeeds(t *testing.T) {
	twoPrimaries := nodes("db", 3)
	twoPrimaries[0].Primary, twoPrimaries[2].Primary = true, true
	lb := goldenCases(t)["lb-alone-web0"]
	lb.VIPs = nil
	cases := []struct {
		in   render.Input
		want string
	}{
		{lb, "vips: the lb role holds the VIPs and needs at least one"},
		{render.Input{Self: nodes("app", 1)[0], DB: render.DB{User: "shop", Password: "app-password-1"}, Members: map[string][]render.Node{"db": twoPrimaries}}, "members[db]: 2 primaries (db-01, db-03); accepted: one"},
		{render.Input{Self: nodes("app", 1)[0]}, "db.user: the app role needs"},
		{render.Input{Self: nodes("db", 1)[0], MemoryBytes: 1 << 20}, "memory_bytes"},
		{render.Input{Self: nodes("db", 1)[0], MemoryBytes: 1 << 30, Options: map[string]string{"mode": "replica"}}, "a replica needs the replication account"},
		{render.Input{Self: render.Node{Name: "db", Role: "db", Address: netip.MustParseAddr("2001:db8::")}, MemoryBytes: 1 << 30}, "self.id"},
	}
	for _, c := range cases {
		if _, err := renderer(t).Render(context.Background(), c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Render(%s) = %v, want %q", c.in.Self.Role, err, c.want)
		}
	}
}

// TestIPv6 renders an IPv6 lb and web: addresses with ports in brackets.
func TestIPv6(t *testing.T) {
	self := render.Node{Name: "lb-a", Role: "lb", Address: netip.MustParseAddr("2001:db8::1")}
	peer := render.Node{Name: "lb-b", Role: "lb", Address: netip.MustParseAddr("2001:db8::2")}
	web := render.Node{Name: "web-a", Role: "web", Address: netip.MustParseAddr("2001:db8::10")}
	in := render.Input{Self: self, Members: map[string][]render.Node{"lb": {peer}, "web": {web}},
		VIPs: []render.VIP{{Address: netip.MustParseAddr("2001:db8::100"), Prefix: 64, Interface: "eth0"}}}
	c, err := renderer(t).Render(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	h := string(c.Services[0].Files[0].Data)
	k := string(file(t, c, keepalivedConf))
	for _, want := range []string{"peer lb-b [2001:db8::2]:10000", "server web-a [2001:db8::10]:80", "server web-a [2001:db8::10]:443"} {
		if !strings.Contains(h, want) {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
	for _, want := range []string{"unicast_src_ip 2001:db8::1", "        2001:db8::2\n", "2001:db8::100/64 dev eth0"} {
		if !strings.Contains(k, want) {
			t.Errorf("keepalived.conf lacks %q", want)
		}
	}
}
