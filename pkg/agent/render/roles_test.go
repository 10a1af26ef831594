package render_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/render"
)

// file is the data of the file at path in c.
func file(t *testing.T, c *render.Config, path string) []byte {
	t.Helper()
	for _, s := range c.Services {
		for _, f := range s.Files {
			if f.Path == path {
				return f.Data
			}
		}
	}
	t.Fatalf("%s is not rendered", path)
	return nil
}

const keepalivedConf = "/etc/keepalived/keepalived.conf"

// vrrp reads the instances of a keepalived.conf: VIP -> priority.
func vrrp(t *testing.T, conf []byte) map[string]int {
	t.Helper()
	re := regexp.MustCompile(`(?s)\n *priority (\d+)\n.*?virtual_ipaddress \{\s+(\S+)`)
	out := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(string(conf), -1) {
		p, _ := strconv.Atoi(m[1])
		out[m[2]] = p
	}
	return out
}

// TestActiveActive renders two VIPs on two lb nodes: each node is master
// of one, and the survivor of a failure holds both.
func TestActiveActive(t *testing.T) {
	lbs := nodes("lb", 2)
	vips := []render.VIP{
		{Address: netip.MustParseAddr("192.0.2.10"), Prefix: 24, Interface: "eth0"},
		{Address: netip.MustParseAddr("192.0.2.11"), Prefix: 24, Interface: "eth0"},
	}
	prio := map[string]map[string]int{}
	for _, self := range lbs {
		// Members in another order on each node: the result must not care.
		members := []render.Node{lbs[1], lbs[0]}
		c, err := renderer(t).Render(context.Background(), render.Input{Self: self, VIPs: vips, Members: map[string][]render.Node{"lb": members, "web": nodes("web", 1)}})
		if err != nil {
			t.Fatal(err)
		}
		prio[self.Name] = vrrp(t, file(t, c, keepalivedConf))
		if h := string(c.Services[0].Files[0].Data); !strings.Contains(h, "localpeer "+self.Name+"\n") || !strings.Contains(h, "peer "+self.Name+" "+self.Address.String()+":10000") {
			t.Errorf("%s: haproxy.cfg does not list itself as the local peer", self.Name)
		}
	}
	for _, v := range []string{"192.0.2.10/24", "192.0.2.11/24"} {
		a, b := prio["lb-01"][v], prio["lb-02"][v]
		if a == 0 || b == 0 || a == b {
			t.Fatalf("VIP %s: priorities %d and %d, want two distinct ones", v, a, b)
		}
	}
	if prio["lb-01"]["192.0.2.10/24"] <= prio["lb-02"]["192.0.2.10/24"] || prio["lb-02"]["192.0.2.11/24"] <= prio["lb-01"]["192.0.2.11/24"] {
		t.Errorf("each node should be master of one VIP: %v", prio)
	}

	// Three nodes, three VIPs: every node masters exactly one.
	lbs = nodes("lb", 3)
	vips = append(vips, render.VIP{Address: netip.MustParseAddr("192.0.2.12"), Prefix: 24, Interface: "eth0"})
	masters := map[string]string{}
	for _, self := range lbs {
		c, err := renderer(t).Render(context.Background(), render.Input{Self: self, VIPs: vips, Members: map[string][]render.Node{"lb": lbs, "web": nodes("web", 1)}})
		if err != nil {
			t.Fatal(err)
		}
		for v, p := range vrrp(t, file(t, c, keepalivedConf)) {
			if p == 250 {
				if masters[v] != "" {
					t.Errorf("VIP %s has two masters: %s and %s", v, masters[v], self.Name)
				}
				masters[v] = self.Name
			}
		}
	}
	if len(masters) != 3 || masters["192.0.2.10/24"] == masters["192.0.2.11/24"] {
		t.Errorf("masters %v, want one node per VIP", masters)
	}
}

func TestMemorySettings(t *testing.T) {
	cases := []struct {
		ram                         uint64
		pool, log, conns, tmp, open uint64
	}{
		{256 << 20, 128, 96, 50, 16, 400},
		{512 << 20, 256, 96, 51, 16, 400},
		{1 << 30, 512, 128, 102, 16, 400},
		{2 << 30, 1024, 256, 204, 32, 512},
		{4 << 30, 2176, 544, 409, 64, 1024},
		{16 << 30, 8960, 2240, 1638, 256, 4000},
		{256 << 30, 144128, 4096, 4000, 256, 4000},
	}
	for _, c := range cases {
		m := render.MemorySettings(c.ram)
		if m.BufferPoolMiB != c.pool || m.LogFileMiB != c.log || m.MaxConnections != c.conns || m.TmpTableMiB != c.tmp || m.TableOpenCache != c.open {
			t.Errorf("MemorySettings(%d MiB) = %+v", c.ram>>20, m)
		}
		if m.BufferPoolMiB<<20 > c.ram*60/100 && c.ram >= 1<<30 {
			t.Errorf("%d MiB: the pool takes %d MiB, over 60%%", c.ram>>20, m.BufferPoolMiB)
		}
		if m.BufferPoolMiB%128 != 0 {
			t.Errorf("%d MiB: pool %d MiB is not in 128 MiB chunks", c.ram>>20, m.BufferPoolMiB)
		}
	}
}

// TestServerID takes the node's id, or its address's low 32 bits.
func TestServerID(t *testing.T) {
	for _, c := range []struct {
		node render.Node
		want string
	}{
		{render.Node{Name: "db", Role: "db", Address: netip.MustParseAddr("10.0.4.7"), ID: 42}, "server_id = 42\n"},
		{render.Node{Name: "db", Role: "db", Address: netip.MustParseAddr("10.0.4.7")}, "server_id = 167773191\n"},
		{render.Node{Name: "db", Role: "db", Address: netip.MustParseAddr("2001:db8::1:2")}, "server_id = 65538\n"},
	} {
		c.node.Primary = true
		got, err := renderer(t).Render(context.Background(), render.Input{Self: c.node, MemoryBytes: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		if cnf := string(got.Services[0].Files[0].Data); !strings.Contains(cnf, c.want) {
			t.Errorf("%v: node.cnf lacks %q:\n%s", c.node, c.want, cnf)
		}
	}
}

// TestAppDBJSON checks db.json against what index.php and app.py read.
func TestAppDBJSON(t *testing.T) {
	dbs := nodes("db", 3)
	dbs[2].Primary = true
	c, err := renderer(t).Render(context.Background(), render.Input{Self: nodes("app", 1)[0], Members: map[string][]render.Node{"db": dbs},
		DB: render.DB{Name: "shop", User: "web_user", Password: "p@ss{w}ord;#1"}})
	if err != nil {
		t.Fatal(err)
	}
	f := c.Services[0].Files[0]
	type server struct {
		Host string
		Port int
	}
	var got struct {
		Host, Database, User, Password string
		Port                           int
		Replica                        *server
	}
	if err := json.Unmarshal(f.Data, &got); err != nil {
		t.Fatalf("db.json is not JSON: %v\n%s", err, f.Data)
	}
	if got.Host != "10.0.4.3" || got.Port != 3306 || got.Database != "shop" || got.User != "web_user" || got.Password != "p@ss{w}ord;#1" {
		t.Errorf("db.json = %+v", got)
	}
	// The first db member in mode replica takes the read-only queries.
	if got.Replica == nil || *got.Replica != (server{"10.0.4.1", 3306}) {
		t.Errorf("db.json's replica = %+v, want 10.0.4.1:3306", got.Replica)
	}
	c, err = renderer(t).Render(context.Background(), render.Input{Self: nodes("app", 1)[0], Members: map[string][]render.Node{"db": dbs[2:]},
		DB: render.DB{Name: "shop", User: "web_user", Password: "p@ss{w}ord;#1"}})
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Services[0].Files[0].Data; strings.Contains(string(d), "replica") {
		t.Errorf("db.json names a replica without one:\n%s", d)
	}
	if f.Path != "/etc/imgforge/db.json" || f.Mode != 0o640 || f.Group != "www-data" || !f.Sensitive {
		t.Errorf("db.json file %s %o %s", f.Path, f.Mode, f.Group)
	}
}

func webFiles(t *testing.T, r *testRenderer, in render.Input) (cert, key []byte) {
	t.Helper()
	c, err := r.Render(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range c.Services[0].Files {
		switch f.Path {
		case "/etc/imgforge/tls/tls.crt":
			cert = f.Data
		case "/etc/imgforge/tls/tls.key":
			if f.Mode != 0o600 || f.Owner != "root" || !f.Sensitive {
				t.Errorf("key file %o %s sensitive=%v, want 0600 root", f.Mode, f.Owner, f.Sensitive)
			}
			key = f.Data
		}
	}
	return cert, key
}

// TestSelfSigned makes a pair on first boot, keeps it while it fits, and
// makes another when it expires soon or names another host.
func TestSelfSigned(t *testing.T) {
	self := nodes("web", 1)[0]
	in := render.Input{Self: self}
	r := renderer(t)
	cert, key := webFiles(t, r, in)

	blk, _ := pem.Decode(cert)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", c.PublicKey)
	}
	if len(c.DNSNames) != 1 || c.DNSNames[0] != "web-01" || len(c.IPAddresses) != 1 || c.IPAddresses[0].String() != "10.0.2.1" {
		t.Errorf("SANs %v %v, want web-01 and 10.0.2.1", c.DNSNames, c.IPAddresses)
	}
	if !c.NotBefore.Equal(now.Add(-time.Hour)) || !c.NotAfter.Equal(now.Add(365*24*time.Hour)) {
		t.Errorf("validity %s to %s from the injected clock %s", c.NotBefore, c.NotAfter, now)
	}
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}

	// Kept across renders while it fits.
	r.Current = fstest.MapFS{
		"etc/imgforge/tls/tls.crt": {Data: cert},
		"etc/imgforge/tls/tls.key": {Data: key},
	}
	if c2, k2 := webFiles(t, r, in); string(c2) != string(cert) || string(k2) != string(key) {
		t.Error("the self-signed pair on the node was not kept")
	}
	// Made again close to expiry.
	later := *r
	later.Now = func() time.Time { return now.Add(340 * 24 * time.Hour) }
	if c2, _ := webFiles(t, &later, in); string(c2) == string(cert) {
		t.Error("a pair expiring within a month was kept")
	}
	// Made again when the node's name changed.
	renamed := in
	renamed.Self.Name = "web-99"
	if c2, _ := webFiles(t, r, renamed); string(c2) == string(cert) {
		t.Error("a pair for another host name was kept")
	}
	// The pair given at boot wins.
	given := in
	given.TLS = testPairOnce(t)
	if c2, k2 := webFiles(t, r, given); string(c2) != string(given.TLS.CertPEM) || string(k2) != string(given.TLS.KeyPEM) {
		t.Error("the pair given at boot was not used")
	}
	// Without randomness, no pair.
	noRand := *r
	noRand.Rand, noRand.Current = nil, nil
	if _, err := noRand.Render(context.Background(), in); err == nil {
		t.Error("rendered a self-signed pair without Rand")
	}
}

// TestSelfSignedSerial draws the serial from the injected reader.
func TestSelfSignedSerial(t *testing.T) {
	zeros := strings.NewReader(strings.Repeat("\x00", 4096))
	p, err := render.SelfSigned(zeros, now, "h", netip.MustParseAddr("192.0.2.1"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(p.CertPEM)
	c, _ := x509.ParseCertificate(blk.Bytes)
	if c.SerialNumber.Int64() != 1 {
		t.Errorf("serial %s from a reader of zeros, want 1", c.SerialNumber)
	}
	if _, err := render.SelfSigned(rand.Reader, now, "h", netip.MustParseAddr("192.0.2.1")); err != nil {
		t.Error(err)
	}
}

func TestMissingTemplate(t *testing.T) {
	r := renderer(t)
	r.Templates = fstest.MapFS{}
	_, err := r.Render(context.Background(), goldenCases(t)["lb-alone-web0"])
	if err == nil || !strings.Contains(err.Error(), "lb/haproxy.cfg.tmpl") {
		t.Errorf("err = %v, want one naming the template", err)
	}
}

// TestDrainingGivesUpVIPs renders a draining lb node: keepalived.conf
// stays as it is (a reload would drop the VIPs for a moment), the drain
// file keepalived tracks says 1, and each VIP's priority with the
// file's weight falls below every other lb node's, so that they take
// its VIPs.
func TestDrainingGivesUpVIPs(t *testing.T) {
	lbs := nodes("lb", 3)
	vips := []render.VIP{
		{Address: netip.MustParseAddr("192.0.2.10"), Prefix: 24, Interface: "eth0"},
		{Address: netip.MustParseAddr("192.0.2.11"), Prefix: 24, Interface: "eth0"},
		{Address: netip.MustParseAddr("192.0.2.12"), Prefix: 24, Interface: "eth0"},
	}
	lowest := map[string]int{}
	var conf []byte
	for i, self := range lbs {
		c, err := renderer(t).Render(context.Background(), render.Input{Self: self, VIPs: vips, Members: map[string][]render.Node{"lb": lbs, "web": nodes("web", 1)}})
		if err != nil {
			t.Fatal(err)
		}
		if d := string(file(t, c, "/etc/keepalived/drain")); d != "0\n" {
			t.Errorf("%s: drain file %q, want 0", self.Name, d)
		}
		if i == 0 {
			conf = file(t, c, keepalivedConf)
		}
		for v, p := range vrrp(t, file(t, c, keepalivedConf)) {
			if lowest[v] == 0 || p < lowest[v] {
				lowest[v] = p
			}
		}
	}
	c, err := renderer(t).Render(context.Background(), render.Input{Self: lbs[0], VIPs: vips, Members: map[string][]render.Node{"lb": lbs, "web": nodes("web", 1)}, Draining: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := file(t, c, keepalivedConf); string(got) != string(conf) {
		t.Errorf("draining changed keepalived.conf:\n%s", got)
	}
	if d := string(file(t, c, "/etc/keepalived/drain")); d != "1\n" {
		t.Errorf("draining: drain file %q, want 1", d)
	}
	re := regexp.MustCompile(`(?s)\n *priority (\d+)\n.*?virtual_ipaddress \{\s+(\S+).*?imgforge_drain weight (-?\d+)`)
	got := re.FindAllStringSubmatch(string(conf), -1)
	if len(got) != 3 {
		t.Fatalf("draining: %d VIPs with a drain weight, want 3", len(got))
	}
	for _, m := range got {
		p, _ := strconv.Atoi(m[1])
		w, _ := strconv.Atoi(m[3])
		if p+w < 1 || p+w >= lowest[m[2]] {
			t.Errorf("VIP %s: draining priority %d%+d, not from 1 to below the others' lowest %d", m[2], p, w, lowest[m[2]])
		}
	}
	for _, v := range vips {
		if !strings.Contains(string(conf), v.Address.String()+"/32 dev lo\n") {
			t.Errorf("VIP %s is not on lo", v.Address)
		}
	}
}

// TestWebNginx renders nginx.conf with each runtime and each choice of the
// https option (none given: its default, redirect): the dynamic routes
// go through the runtime's cache, which keeps only what the app marks
// cacheable and serves stale entries while the app fails; plain HTTP is
// redirected, but /health, and HTTPS carries HSTS, unless https=optional.
func TestWebNginx(t *testing.T) {
	// The user-data may choose it (the agent checks the value against
	// role.json before rendering); left out, it is redirect.
	o, ok := repoRoles(t)["web"].BootOption("https")
	if !ok || o.Default != "redirect" || !slices.Equal(o.Values, []string{"optional", "redirect"}) {
		t.Errorf("role web's boot option https: %+v (%v), want redirect (default) and optional", o, ok)
	}
	for _, c := range []struct {
		runtime, https string
		redirect       bool
	}{
		{"php-fpm", "", true},
		{"php-fpm", "redirect", true},
		{"php-fpm", "optional", false},
		{"uwsgi", "", true},
		{"uwsgi", "optional", false},
	} {
		t.Run(c.runtime+"-"+c.https, func(t *testing.T) {
			o := map[string]string{"runtime": c.runtime}
			if c.https != "" {
				o["https"] = c.https
			}
			in := render.Input{Self: nodes("web", 1)[0], Members: map[string][]render.Node{"app": nodes("app", 2)}, Options: o, TLS: testPairOnce(t)}
			// The directives, without the comments.
			conf := regexp.MustCompile(`(?m)^\s*#.*\n`).ReplaceAllString(webConf(t, in), "")
			// Either runtime (an option kept for old user-data) is spoken
			// to over FastCGI.
			cache := "fastcgi"
			want := []string{
				"listen 443 ssl http2 default_server;",
				"listen [::]:443 ssl http2 default_server;",
				"listen 80 default_server;",
				"listen 127.0.0.1:8080;",
				"gzip_types text/plain text/css",
				cache + "_cache_path /var/cache/nginx levels=1:2 keys_zone=app:",
				cache + "_cache app;",
				cache + "_cache_use_stale error timeout updating http_500 http_503;",
				"fastcgi_pass app;",
				"add_header X-Cache-Status $upstream_cache_status always;",
				`~^/static/ "public, max-age=31536000, immutable";`,
				"add_header Cache-Control $imgforge_cache_control;",
			}
			redirect := []string{
				"return 301 https://$host$request_uri;",
				`"http:/health" 0;`,
				`https "max-age=31536000";`,
				"add_header Strict-Transport-Security $imgforge_hsts always;",
			}
			if c.redirect {
				want = append(want, redirect...)
			}
			for _, w := range want {
				if !strings.Contains(conf, w) {
					t.Errorf("nginx.conf lacks %q", w)
				}
			}
			// The app decides what is cached: no default lifetime, and
			// no header of the app ignored.
			for _, no := range []string{"_cache_valid", "_ignore_headers", "proxy_cache", "uwsgi_"} {
				if strings.Contains(conf, no) {
					t.Errorf("nginx.conf has %q", no)
				}
			}
			if !c.redirect {
				for _, no := range redirect {
					if strings.Contains(conf, no) {
						t.Errorf("https=%s: nginx.conf has %q", c.https, no)
					}
				}
			}
			// No location sets a header of its own: it would drop the
			// server's (X-Imgforge-Web, X-Cache-Status, HSTS).
			if n := strings.Count(conf, "add_header"); n != 4 && c.redirect || n != 3 && !c.redirect {
				t.Errorf("%d add_header lines", n)
			}
		})
	}
}

// webConf renders in and returns its nginx.conf.
func webConf(t *testing.T, in render.Input) string {
	t.Helper()
	c, err := renderer(t).Render(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Services {
		for _, f := range s.Files {
			if f.Path == "/etc/nginx/nginx.conf" {
				return string(f.Data)
			}
		}
	}
	t.Fatal("no /etc/nginx/nginx.conf rendered")
	return ""
}
