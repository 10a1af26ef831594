package config

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/netip"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func read(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseValid(t *testing.T) {
	c, _, err := Parse("user-data", []byte(read(t, "web.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Cluster: "shop", Role: "web",
		Node: Node{Name: "web-1", ID: 21, Address: "10.10.0.21/24"},
		VIPs: []VIP{{Address: "10.10.0.100", Prefix: 24, Interface: "eth0"}},
		Discovery: Discovery{Method: "gossip", Gossip: &Gossip{Port: 7946, Join: []string{"10.10.0.11", "10.10.0.12:7946"},
			Key: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}},
		TLS: &TLS{SelfSigned: true},
		Monitoring: &Monitoring{MetricsURL: "https://monitor.example:9090/api/v1/write", LogsURL: "https://monitor.example:19532/upload",
			LogsCert: read(t, "journal-client.crt"), LogsKey: read(t, "journal-client.key"),
			Username: "shop", Password: "s3cret-pass"},
		Identity: &Identity{CA: read(t, "identity/ca.crt"), Cert: read(t, "identity/web-1.crt"), Key: read(t, "identity/web-1.key")},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	for _, f := range []string{"db.yaml", "app-dns.yaml"} {
		if _, _, err := Parse(f, []byte(read(t, f))); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestWebAppRuntime: a web node may name the app tier's runtime, which
// its nginx speaks to; secrets stay out of the JSON the agent prints.
func TestWebAppRuntime(t *testing.T) {
	doc := strings.Replace(read(t, "web.yaml"), "role: web", "role: web\n  app: {runtime: uwsgi}", 1)
	c, _, err := Parse("user-data", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Options["runtime"] != "uwsgi" {
		t.Fatalf("options = %v, want runtime uwsgi", c.Options)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "PRIVATE KEY") || strings.Contains(string(b), "BEGIN CERTIFICATE") {
		t.Errorf("the JSON shows the logs client pair or the identity: %s", b)
	}
	if !strings.Contains(string(b), `"identity":{"subject":"CN=web-1,OU=web","issuer":"O=shop","not_after":"2030-12-31T00:00:00Z"}`) {
		t.Errorf("the JSON does not show the identity's certificate: %s", b)
	}
}

func TestParseErrors(t *testing.T) {
	web := read(t, "web.yaml")
	db := read(t, "db.yaml")
	dns := read(t, "app-dns.yaml")
	indent := func(pem string) string {
		return "      " + strings.ReplaceAll(strings.TrimSpace(pem), "\n", "\n      ") + "\n"
	}
	certBlock := "    logs_cert: |\n" + indent(read(t, "journal-client.crt"))
	keyBlock := "    logs_key: |\n" + indent(read(t, "journal-client.key"))
	serverCert, serverKey := selfSignedPEM(t) // ExtKeyUsage serverAuth only
	idCA := "    ca: |\n" + indent(read(t, "identity/ca.crt"))
	idCert := "    cert: |\n" + indent(read(t, "identity/web-1.crt"))
	idKey := "    key: |\n" + indent(read(t, "identity/web-1.key"))
	idBlock := "  identity:\n" + idCA + idCert + idKey
	tests := []struct {
		name, doc, old, new, want string
	}{
		{"unknown field", web, "  role: web", "  role: web\n  rol: web", `user-data:8:3: field "imgforge.rol": unknown field in imgforge; accepted: cluster, database, discovery, identity, monitoring, node, options, role, tls, vips`},
		{"not a role name", web, "role: web", "role: Cache", `field "imgforge.role": "Cache" is not a role name; accepted: a role name`},
		{"cluster", web, "cluster: shop", "cluster: Shop", `field "imgforge.cluster": "Shop" is not a cluster name`},
		{"option name", web, "role: web", "role: web\n  options: {Run_time: uwsgi}", `user-data:8:23: field "imgforge.options.Run_time": "Run_time" is not an option name`},
		{"option value", web, "role: web", "role: web\n  options: {runtime: 'PHP FPM'}", `user-data:8:22: field "imgforge.options.runtime": "PHP FPM" is not an option value; accepted: lower-case letters`},
		{"legacy option value", dns, "runtime: uwsgi", "runtime: UWSGI", `user-data:5:18: field "imgforge.app.runtime": "UWSGI" is not an option value`},
		{"mode option", db, "mode: replica}", "mode: standby}", `user-data:5:14: field "imgforge.db.mode": "standby" is not a member mode; accepted: primary, replica`},
		{"option twice", dns, "role: app", "role: app\n  options: {runtime: uwsgi}", `field "imgforge.app.runtime": is also set as imgforge.options.runtime; accepted: one of them`},
		{"legacy not a mapping", dns, "app: {runtime: uwsgi}", "app: uwsgi", `field "imgforge.app": is not a mapping; accepted: option names and values`},
		{"node name", web, "    name: web-1", "    name: Web_1", `field "imgforge.node.name": "Web_1" is not a node name`},
		{"node address", web, "address: 10.10.0.21/24", "address: 10.10.0.21", `field "imgforge.node.address": "10.10.0.21" is not an address with a prefix length`},
		{"node id", web, "id: 21", "id: -1", `field "imgforge.node.id": expected a whole number from 0 to 4294967295 (the value is not shown)`},
		{"vip outside subnet", web, "address: 10.10.0.100,", "address: 10.20.0.100,", `user-data:13:17: field "imgforge.vips[0].address": 10.20.0.100 is outside the node's subnet 10.10.0.0/24; accepted: an address in 10.10.0.0/24`},
		{"vip is node", web, "address: 10.10.0.100,", "address: 10.10.0.21,", `is the node's own address`},
		{"vip garbage", web, "address: 10.10.0.100,", "address: banana,", `field "imgforge.vips[0].address": "banana" is not an IP address`},
		{"vip prefix", web, "prefix: 24", "prefix: 33", `field "imgforge.vips[0].prefix": 33 is out of range; accepted: 1 to 32`},
		{"vip interface", web, "interface: eth0", "interface: eth0/1", `field "imgforge.vips[0].interface": "eth0/1" is not an interface name`},
		{"vip twice", web, "    - {address: 10.10.0.100, prefix: 24, interface: eth0}", "    - {address: 10.10.0.100, prefix: 24, interface: eth0}\n    - {address: 10.10.0.100, prefix: 24, interface: eth0}", `field "imgforge.vips[1].address": 10.10.0.100 is listed twice`},
		{"method", web, "method: gossip", "method: consul", `field "imgforge.discovery.method": unknown discovery method "consul"; accepted: static, dns, gossip`},
		{"method block missing", web, "method: gossip", "method: static", `field "imgforge.discovery.gossip": is set but the method is static`},
		{"missing key", web, "      key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", "", `field "imgforge.discovery.gossip.key": is missing; accepted: the base64 of 32 random bytes`},
		{"short key", web, "key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd", `decodes to 30 bytes`},
		{"key not base64", web, "key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "key: '!!!'", `is not base64`},
		{"join garbage", web, "join: [10.10.0.11,", "join: [10.10.0.300,", `field "imgforge.discovery.gossip.join[0]": "10.10.0.300" is not an address`},
		{"gossip port", web, "port: 7946", "port: 70000", `field "imgforge.discovery.gossip.port": 70000 is out of range`},
		{"gossip profile", web, "port: 7946", "port: 7946\n      profile: huge", `field "imgforge.discovery.gossip.profile": unknown gossip profile "huge"; accepted: lan, large`},
		{"static role", db, "role: app, address", "role: ca_che, address", `field "imgforge.discovery.static.members[1].role": "ca_che" is not a role name; accepted: a role name`},
		{"static address", db, "address: 10.10.0.31}", "address: 10.10.0.31/24}", `field "imgforge.discovery.static.members[1].address": "10.10.0.31/24" is not an IP address`},
		{"static dup address", db, "address: 10.10.0.31}", "address: 10.10.0.41}", `field "imgforge.discovery.static.members[1].address": 10.10.0.41 is listed twice`},
		{"static mode", db, "address: 10.10.0.31}", "address: 10.10.0.31, mode: leader}", `field "imgforge.discovery.static.members[1].mode": "leader" is not a member mode; accepted: primary, replica`},
		{"dns both", dns, "srv: _http", "name: x, srv: _http", `give exactly one of name`},
		{"dns name", dns, "name: db-primary.shop.internal", "name: 'db primary'", `"db primary" is not a DNS name`},
		{"dns interval", dns, "interval: 10s", "interval: 10", `field "imgforge.discovery.dns.interval": "10" is not accepted; accepted: a duration from 1s to 1h`},
		{"dns resolver", dns, "resolver: 10.10.0.1:53", "resolver: dns.example", `field "imgforge.discovery.dns.resolver"`},
		{"dns records", dns, "      records:\n        - {role: db, name: db-primary.shop.internal, mode: primary}\n        - {role: web, srv: _http._tcp.web.shop.internal}\n", "", `field "imgforge.discovery.dns.records": is empty`},
		{"short password", dns, "password: app-password-1", "password: short", `field "imgforge.database.password": is not accepted (5 characters); accepted: 8 to 128 printable ASCII`},
		{"quote in password", dns, "password: app-password-1", `password: "app'password"`, `field "imgforge.database.password"`},
		{"db user", dns, "user: shop", "user: 'shop-app'", `field "imgforge.database.user": is not a database user name (the value is not shown)`},
		{"repl missing", db, "    replication_password: repl-password-1\n", "", `field "imgforge.database.replication_password"`},
		{"tls half", web, "tls: self-signed", "tls: {cert: x}", `field "imgforge.tls": needs both cert and key (PEM), or the value self-signed`},
		{"tls garbage", web, "tls: self-signed", "tls: {cert: x, key: y}", `field "imgforge.tls.cert": the certificate and key do not make a pair`},
		{"tls other word", web, "tls: self-signed", "tls: selfsigned", `field "imgforge.tls": expected a mapping`},
		{"monitoring http", web, "metrics_url: https://", "metrics_url: http://", `field "imgforge.monitoring.metrics_url": is not accepted (the value is not shown: it may hold credentials); accepted: an https:// URL`},
		{"traces http", web, "metrics_url: https://", "traces_url: http://t.example/v1/traces\n    metrics_url: https://", `field "imgforge.monitoring.traces_url": is not accepted (the value is not shown: it may hold credentials); accepted: an https:// URL`},
		{"monitoring both auth", web, "password: s3cret-pass", "password: s3cret-pass\n    bearer_token: t", `field "imgforge.monitoring.bearer_token": give either a bearer token or username and password`},
		{"monitoring no password", web, "    password: s3cret-pass\n", "", `field "imgforge.monitoring.password": is missing`},
		{"monitoring dollar", web, "password: s3cret-pass", "password: s3cret$pass", `field "imgforge.monitoring.password": is not accepted (11 characters); accepted: 1 to 256 printable ASCII characters without spaces, quotes, backslash, '$' or backtick`},
		{"logs without cert", web, certBlock + keyBlock, "", `field "imgforge.monitoring.logs_cert": is missing; systemd-journal-upload authenticates to logs_url with a client certificate`},
		{"logs cert without key", web, keyBlock, "", `field "imgforge.monitoring.logs_key": is missing; logs_cert needs its key`},
		{"logs key without cert", web, certBlock, "", `field "imgforge.monitoring.logs_cert": is missing; logs_key needs its certificate`},
		{"logs cert without url", web, "    logs_url: https://monitor.example:19532/upload\n", "", `field "imgforge.monitoring.logs_cert": is set but logs_url is not`},
		{"logs cert garbage", web, certBlock, "    logs_cert: nope\n", `field "imgforge.monitoring.logs_cert": the certificate and key do not make a pair`},
		{"logs cert other key", web, keyBlock, "    logs_key: |\n" + indent(serverKey), `field "imgforge.monitoring.logs_cert": the certificate and key do not make a pair`},
		{"logs cert server only", web, certBlock + keyBlock, "    logs_cert: |\n" + indent(serverCert) + "    logs_key: |\n" + indent(serverKey), `field "imgforge.monitoring.logs_cert": the certificate's extended key usage does not allow TLS client authentication`},
		{"monitoring ca", web, "password: s3cret-pass", "password: s3cret-pass\n    ca: nope", `field "imgforge.monitoring.ca": is not a PEM certificate bundle`},
		{"identity missing", web, idBlock, "", `field "imgforge.identity": is missing; gossip members prove their name and role with a certificate from the cluster CA`},
		{"identity ca missing", web, idCA, "", `field "imgforge.identity.ca": is missing`},
		{"identity other ca", web, idCA, "    ca: |\n" + indent(read(t, "identity/other-ca.crt")), `field "imgforge.identity.cert": the certificate is not from the cluster CA`},
		{"identity ca garbage", web, idCA, "    ca: nope\n", `field "imgforge.identity.ca": is not one PEM CERTIFICATE block`},
		{"identity not a ca", web, idCA, "    ca: |\n" + indent(read(t, "identity/db-1.crt")), `field "imgforge.identity.ca": the certificate is not a CA certificate`},
		{"identity other role", web, idCert + idKey, "    cert: |\n" + indent(read(t, "identity/db-1.crt")) + "    key: |\n" + indent(read(t, "identity/db-1.key")), `field "imgforge.identity.cert": is for role db, not web`},
		{"identity other node", web, "    name: web-1", "    name: web-2", `field "imgforge.identity.cert": is for node web-1, not web-2`},
		{"identity other cluster", web, "cluster: shop", "cluster: shop2", `field "imgforge.identity.ca": is the CA of cluster "shop", not "shop2"`},
		{"identity other key", web, idKey, "    key: |\n" + indent(read(t, "identity/db-1.key")), `field "imgforge.identity.key": is not the key of the certificate`},
		{"identity key garbage", web, idKey, "    key: not-a-key-SECRETVALUE\n", `field "imgforge.identity.key": is not one PEM PRIVATE KEY block`},
		{"not a mapping", "#cloud-config\n- a\n", "", "", `no imgforge: section: the cloud-config is not a mapping`},
		{"no section", "#cloud-config\nhostname: x\n", "", "", `no imgforge: section in the cloud-config`},
		{"syntax", web, "  role: web", "  role: [web", `user-data:6: invalid YAML`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := tt.doc
			if tt.old != "" || tt.new != "" {
				if !strings.Contains(doc, tt.old) {
					t.Fatalf("test document has no %q", tt.old)
				}
				doc = strings.Replace(doc, tt.old, tt.new, 1)
			}
			want := tt.want
			_, _, err := Parse("user-data", []byte(doc))
			if err == nil {
				t.Fatalf("no error; want %q", want)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, want)
			}
			if strings.Contains(err.Error(), "SECRETVALUE") || strings.Contains(err.Error(), "PRIVATE KEY-") {
				t.Errorf("the error shows a key: %v", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if !strings.HasPrefix(err.Error(), "user-data") {
				t.Errorf("error does not name the file: %v", err)
			}
		})
	}
}

func selfSignedPEM(t *testing.T) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "web.example"},
		NotBefore: time.Unix(1700000000, 0), NotAfter: time.Unix(1900000000, 0), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

func TestTLSAndCARoundTrip(t *testing.T) {
	cert, key := selfSignedPEM(t)
	c, src, err := Parse("user-data", []byte(read(t, "web.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	c.TLS = &TLS{Cert: cert, Key: key}
	c.Monitoring.CA = cert
	if err := c.validate(src); err != nil {
		t.Fatal(err)
	}
	section, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, _, err := Parse("marshalled", append([]byte("#cloud-config\n"), section...))
	if err != nil {
		t.Fatalf("%v\n%s", err, section)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip changed the config:\n%+v\n%+v", back, c)
	}
	_, otherKey := selfSignedPEM(t)
	c.TLS.Key = otherKey
	if err := c.validate(src); err == nil || !strings.Contains(err.Error(), "do not make a pair") {
		t.Errorf("mismatched key: %v", err)
	}
}

func TestMarshalRoundTripSamples(t *testing.T) {
	for _, f := range []string{"web.yaml", "db.yaml", "app-dns.yaml"} {
		c, _, err := Parse(f, []byte(read(t, f)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		back, _, err := Parse(f, append([]byte("#cloud-config\n"), b...))
		// Marshal writes options: where the sample used an earlier spelling.
		c.optionFields = nil
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Errorf("%s: round trip: %v\n%s", f, err, b)
		}
	}
}

func TestCloudConfigs(t *testing.T) {
	web := read(t, "web.yaml")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(web))
	zw.Close()
	mimeDoc := "Content-Type: multipart/mixed; boundary=\"XYZ\"\nMIME-Version: 1.0\n\n" +
		"--XYZ\nContent-Type: text/x-shellscript\nContent-Disposition: attachment; filename=\"hello.sh\"\n\n#!/bin/sh\necho hi\n" +
		"--XYZ\nContent-Type: text/cloud-config\nContent-Disposition: attachment; filename=\"users.cfg\"\n\n#cloud-config\nssh_pwauth: false\n" +
		"--XYZ\nContent-Type: text/cloud-config\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"imgforge.cfg\"\n\n" +
		wrap(base64.StdEncoding.EncodeToString([]byte(web))) + "\n--XYZ--\n"
	tests := []struct {
		name  string
		data  []byte
		parts int
	}{
		{"plain", []byte(web), 1},
		{"crlf header", []byte(strings.Replace(web, "#cloud-config\n", "#cloud-config\r\n", 1)), 1},
		{"gzip", gz.Bytes(), 1},
		{"mime", []byte(mimeDoc), 2},
		{"script", []byte("#!/bin/sh\necho hi\n"), 0},
		{"empty", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := CloudConfigs(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if len(parts) != tt.parts {
				t.Fatalf("%d parts, want %d: %+v", len(parts), tt.parts, parts)
			}
		})
	}
}

func wrap(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\n")
		s = s[76:]
	}
	b.WriteString(s)
	return b.String()
}

func fakeHost(files map[string]string, addrs ...string) Host {
	return Host{
		ReadFile: func(p string) ([]byte, error) {
			if s, ok := files[p]; ok {
				return []byte(s), nil
			}
			return nil, fmt.Errorf("open %s: %w", p, fs.ErrNotExist)
		},
		Addresses: func() ([]netip.Prefix, error) {
			var out []netip.Prefix
			for _, a := range addrs {
				out = append(out, netip.MustParsePrefix(a))
			}
			return out, nil
		},
	}
}

func TestLoad(t *testing.T) {
	inst := read(t, "instance-data.json")
	mimeDoc := "Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/cloud-config\n\n" + read(t, "app-dns.yaml") + "\n--B--\n"
	t.Run("identity from cloud-init", func(t *testing.T) {
		c, err := Load(DefaultPaths, fakeHost(map[string]string{UserDataPath: mimeDoc, InstanceDataPath: inst}, "10.10.0.31/24", "fd00::31/64"))
		if err != nil {
			t.Fatal(err)
		}
		want := Node{Name: "app-1", ID: 10<<24 | 10<<16 | 31, Address: "10.10.0.31/24", InstanceID: "shop-app-1"}
		if c.Node != want {
			t.Errorf("node %+v, want %+v", c.Node, want)
		}
	})
	t.Run("vip outside detected subnet", func(t *testing.T) {
		ud := strings.Replace(read(t, "web.yaml"), "    address: 10.10.0.21/24\n", "", 1)
		_, err := Load(DefaultPaths, fakeHost(map[string]string{UserDataPath: ud, InstanceDataPath: inst}, "192.168.1.5/24"))
		if err == nil || !strings.Contains(err.Error(), `field "imgforge.vips[0].address": 10.10.0.100 is outside the node's subnet 192.168.1.0/24`) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("no section", func(t *testing.T) {
		_, err := Load(DefaultPaths, fakeHost(map[string]string{UserDataPath: "#cloud-config\n{}\n", InstanceDataPath: inst}))
		if !errors.Is(err, ErrNoSection) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("two sections", func(t *testing.T) {
		two := "Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/cloud-config\n\n" + read(t, "app-dns.yaml") +
			"\n--B\nContent-Type: text/cloud-config\n\n" + read(t, "db.yaml") + "\n--B--\n"
		_, err := Load(DefaultPaths, fakeHost(map[string]string{UserDataPath: two, InstanceDataPath: inst}, "10.10.0.31/24"))
		if err == nil || !strings.Contains(err.Error(), "a second imgforge: section") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("no user-data", func(t *testing.T) {
		_, err := Load(DefaultPaths, fakeHost(map[string]string{InstanceDataPath: inst}))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("bad hostname", func(t *testing.T) {
		_, err := Load(DefaultPaths, fakeHost(map[string]string{UserDataPath: read(t, "app-dns.yaml"),
			InstanceDataPath: `{"v1": {"instance_id": "i-1", "local_hostname": "bad_host"}}`}, "10.10.0.31/24"))
		if err == nil || !strings.Contains(err.Error(), `cloud-init's local-hostname "bad_host" is not a node name`) {
			t.Errorf("got %v", err)
		}
	})
}

func TestParseInstanceData(t *testing.T) {
	for _, tt := range []struct{ in, err string }{
		{`{"v1": {"instance-id": "a", "local-hostname": "b"}}`, ""},
		{`{"v2": {}}`, "no v1 section"},
		{`{"v1": {"local_hostname": "b"}}`, "no v1.instance_id"},
		{`nope`, "not JSON"},
	} {
		_, err := ParseInstanceData([]byte(tt.in))
		if (err == nil) != (tt.err == "") || err != nil && !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%s: %v, want %q", tt.in, err, tt.err)
		}
	}
}

// TestErrorsNeverShowSecrets: user-data holds secrets, and errors land in
// the journal and in /status last_error, so no error quotes a value of
// user-data: a secret written where another kind of value belongs, a
// URL with credentials, a malformed MIME line.
func TestErrorsNeverShowSecrets(t *testing.T) {
	const secret = "Sup3rS3cret"
	base := "#cloud-config\nimgforge:\n  cluster: shop\n  role: app\n"
	gossip := "  discovery:\n    method: gossip\n    gossip:\n      key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
	tests := []struct{ name, userData, want string }{
		{"database as a string", base + "  database: shop:" + secret + "\n", `field "imgforge.database": expected a mapping with fields password, replication_password, replication_user, user, got a string`},
		{"monitoring as a string", base + gossip + "  monitoring: " + secret + "\n", `field "imgforge.monitoring": expected a mapping`},
		{"gossip as a string", base + "  discovery:\n    method: gossip\n    gossip: " + secret + "\n", `field "imgforge.discovery.gossip": expected a mapping`},
		{"key in a list", base + "  discovery:\n    method: gossip\n    gossip:\n      key: [" + secret + "]\n", `field "imgforge.discovery.gossip.key": expected a string, got a list`},
		{"tls as a string", "#cloud-config\nimgforge:\n  cluster: shop\n  role: web\n  tls: " + secret + "\n", `field "imgforge.tls": expected a mapping`},
		{"secret in a number", base + "  node:\n    id: " + secret + "\n", `field "imgforge.node.id": expected a whole number, got a string (the value is not shown)`},
		{"secret in the port", base + "  discovery:\n    method: gossip\n    gossip:\n      port: " + secret + "\n", `field "imgforge.discovery.gossip.port": expected a whole number, got a string`},
		{"password as the user", base + gossip + "  database: {user: '" + secret + "!', password: app-password-1}\n", `field "imgforge.database.user": is not a database user name (the value is not shown)`},
		{"same user twice", "#cloud-config\nimgforge:\n  cluster: shop\n  role: db\n" + gossip + "  database: {user: " + secret + ", password: app-password-1, replication_user: " + secret + ", replication_password: repl-password-1}\n", `field "imgforge.database.replication_user": is also the app user`},
		{"url with credentials", base + gossip + "  database: {user: shop, password: app-password-1}\n  monitoring:\n    metrics_url: https://shop:" + secret + "@metrics.example/api/v1/write\n", `field "imgforge.monitoring.metrics_url": is not accepted (the value is not shown`},
		{"url bad port", base + gossip + "  database: {user: shop, password: app-password-1}\n  monitoring:\n    metrics_url: https://metrics.example:" + secret + "/\n", `field "imgforge.monitoring.metrics_url"`},
		{"malformed MIME header", "Content-Type: multipart/mixed; boundary=B\n\n--B\n" + secret + "\n\n#cloud-config\n--B--\n", "reading MIME part 1: a malformed MIME header line (not shown)"},
		{"malformed MIME message", "Content-Type: multipart/mixed\n" + secret + "\n\nx\n", "reading the MIME message: a malformed MIME header line (not shown)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(Paths{UserData: "user-data", InstanceData: "instance-data.json"}, Host{
				ReadFile: func(p string) ([]byte, error) {
					if p == "user-data" {
						return []byte(tt.userData), nil
					}
					return os.ReadFile("testdata/instance-data.json")
				},
				Addresses: func() ([]netip.Prefix, error) { return []netip.Prefix{netip.MustParsePrefix("10.10.0.21/24")}, nil },
			})
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error shows the secret: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, tt.want)
			}
		})
	}
}

// gzipParts is user-data of n MIME parts, each a gzip-compressed
// cloud-config of size bytes (mostly zeros: a few KiB compressed).
func gzipParts(n, size int) []byte {
	var z bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
	zw.Write([]byte("#cloud-config\n"))
	zw.Write(make([]byte, size-len("#cloud-config\n")))
	zw.Close()
	var b bytes.Buffer
	b.WriteString("Content-Type: multipart/mixed; boundary=B\n\n")
	for range n {
		b.WriteString("--B\nContent-Type: application/octet-stream\n\n")
		b.Write(z.Bytes())
		b.WriteString("\n")
	}
	b.WriteString("--B--\n")
	return b.Bytes()
}

// TestUserDataTotalLimits: what user-data decodes to is limited in all,
// across MIME parts and nesting, not per part.
func TestUserDataTotalLimits(t *testing.T) {
	nested := "Content-Type: multipart/mixed; boundary=OUT\n\n--OUT\nContent-Type: multipart/mixed; boundary=B\n\n" +
		strings.TrimPrefix(string(gzipParts(3, 400<<10)), "Content-Type: multipart/mixed; boundary=B\n\n") + "\n--OUT--\n"
	many := "Content-Type: multipart/mixed; boundary=B\n\n" + strings.Repeat("--B\nContent-Type: text/plain\n\nx\n", maxParts+1) + "--B--\n"
	tests := []struct {
		name  string
		data  []byte
		parts int
		want  string
	}{
		{"under the limits", gzipParts(2, 400<<10), 2, ""},
		{"parts sum over the limit", gzipParts(3, 400<<10), 0, "user-data decodes (gzip, base64) to more than 1048576 bytes in all, the limit on the total across every MIME part"},
		{"the attack: 400 parts of 1 MiB", gzipParts(400, 1<<20-100), 0, "more than 1048576 bytes in all"},
		{"nested parts sum over the limit", []byte(nested), 0, "more than 1048576 bytes in all"},
		{"too many parts", []byte(many), 0, "user-data has more than 100 MIME parts in all, the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parts, err := CloudConfigs(tt.data)
			if tt.want == "" {
				if err != nil || len(parts) != tt.parts {
					t.Fatalf("%d parts, %v", len(parts), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v\nwant one containing %q", err, tt.want)
			}
		})
	}
}

// TestUserDataMemory measures what reading the 445 KB user-data of 400
// gzip parts allocates: before the total limit it was about 400 MiB.
func TestUserDataMemory(t *testing.T) {
	data := gzipParts(400, 1<<20-100)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := CloudConfigs(data)
	runtime.ReadMemStats(&after)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("user-data of %d bytes in 400 gzip parts: %v, %.1f MiB allocated", len(data), err, float64(alloc)/(1<<20))
	if alloc > 16<<20 {
		t.Errorf("reading it allocated %.1f MiB; want at most 16 MiB", float64(alloc)/(1<<20))
	}
}
