package seed

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/identity"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func testRand(seed byte) *rand.ChaCha8 { return rand.NewChaCha8([32]byte{seed}) }

func readCluster(t *testing.T) (string, []byte) {
	t.Helper()
	b, err := os.ReadFile("testdata/cluster.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return "testdata/cluster.yaml", b
}

func TestGenerateGolden(t *testing.T) {
	c, err := LoadCluster("testdata/cluster.yaml", testRoles(t))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime, Now: func() time.Time { return testTime }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 6 {
		t.Fatalf("%d nodes", len(res))
	}
	golden := "testdata/golden"
	for _, n := range res {
		for _, f := range []string{MetaDataFile, UserDataFile, NetworkConfigFile} {
			got, err := os.ReadFile(filepath.Join(out, n.Name, f))
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(golden, n.Name, f)
			if *update {
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/seed -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s/%s differs from %s:\n%s", n.Name, f, p, got)
			}
		}
		// What a node reads back validates, as the agent will see it.
		ud, _ := os.ReadFile(filepath.Join(out, n.Name, UserDataFile))
		cfg, src, err := config.Parse(n.Name+"/user-data", ud)
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Complete(src, config.InstanceData{InstanceID: "x", LocalHostname: n.Name}, nil); err != nil {
			t.Errorf("%s: %v", n.Name, err)
		}
		if strings.Contains(string(ud), "passwd") || strings.Contains(string(ud), "chpasswd") || strings.Contains(string(ud), "plain_text_passwd") {
			t.Errorf("%s: user-data sets a login password", n.Name)
		}
		for f, want := range map[string]os.FileMode{UserDataFile: 0o600, "seed.iso": 0o600, MetaDataFile: 0o644} {
			fi, err := os.Stat(filepath.Join(out, n.Name, f))
			if err != nil || fi.Mode().Perm() != want {
				t.Errorf("%s/%s: mode %v, %v; want %v", n.Name, f, fi.Mode().Perm(), err, want)
			}
		}
	}
	if res[0].MAC != "52:54:00:0a:00:0b" || res[1].MAC != DeriveMAC("shop", "lb-2") {
		t.Errorf("MACs %s %s", res[0].MAC, res[1].MAC)
	}
	fi, err := os.Stat(filepath.Join(out, SecretsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secrets: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(out, NodesFile)); err != nil {
		t.Error(err)
	}
}

func TestGenerateRerunIsStable(t *testing.T) {
	c, err := LoadCluster("testdata/cluster.yaml", testRoles(t))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	first := snapshotDir(t, out)
	// Other randomness on the second run: the secrets are read back, not made again.
	if _, err := Generate(c, Options{Out: out, Rand: testRand(2), ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	second := snapshotDir(t, out)
	for p, b := range first {
		if !bytes.Equal(second[p], b) {
			t.Errorf("%s changed on a re-run", p)
		}
	}
	// Another output folder: other secrets, so another gossip key.
	other := t.TempDir()
	if _, err := Generate(c, Options{Out: other, Rand: testRand(2), ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(out, SecretsFile))
	b, _ := os.ReadFile(filepath.Join(other, SecretsFile))
	if bytes.Equal(a, b) {
		t.Error("two clusters got the same secrets")
	}
	// Secrets of another cluster are not reused.
	c.Cluster = "other"
	if _, err := Generate(c, Options{Out: out, Rand: testRand(3), ModTime: testTime}); err == nil || !strings.Contains(err.Error(), `holds the secrets of cluster "shop"`) {
		t.Errorf("got %v", err)
	}
}

func snapshotDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		out[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestClusterErrors(t *testing.T) {
	file, base := readCluster(t)
	tests := []struct{ name, old, new, want string }{
		{"vip outside subnet", "address: 10.10.0.100", "address: 10.20.0.100", `testdata/cluster.yaml:9:14: field "vips[0].address": 10.20.0.100 is outside the subnet 10.10.0.0/24; accepted: an address in 10.10.0.0/24`},
		{"vip is a node", "address: 10.10.0.100", "address: 10.10.0.21", `field "vips[0].address": 10.10.0.21 is node web-1's address`},
		{"vip is the gateway", "address: 10.10.0.100", "address: 10.10.0.1", `testdata/cluster.yaml:9:14: field "vips[0].address": 10.10.0.1 is the gateway address of 10.10.0.0/24; accepted: an address in 10.10.0.0/24 that no node, gateway or broadcast has`},
		{"vip is the network", "address: 10.10.0.100", "address: 10.10.0.0", `testdata/cluster.yaml:9:14: field "vips[0].address": 10.10.0.0 is the network address of 10.10.0.0/24`},
		{"vip is the broadcast", "address: 10.10.0.100", "address: 10.10.0.255", `testdata/cluster.yaml:9:14: field "vips[0].address": 10.10.0.255 is the broadcast address of 10.10.0.0/24`},
		{"duplicate address", "address: 10.10.0.22}", "address: 10.10.0.21}", `testdata/cluster.yaml:27:39: field "nodes[3].address": 10.10.0.21 is a duplicate node address (also web-1's)`},
		{"duplicate name", "name: web-2,", "name: web-1,", `field "nodes[3].name": "web-1" is a duplicate node name`},
		{"unknown role", "role: app,", "role: cache,", `testdata/cluster.yaml:28:25: field "nodes[4].role": unknown role "cache"; accepted: app, db, lb, web`},
		{"empty key", "    join: [lb-1, lb-2]", "    join: [lb-1, lb-2]\n    key: \"\"", `field "discovery.gossip.key": is empty; accepted: the base64 of 32 random bytes, or leave the field out and imgforge seed makes one`},
		{"bad key", "    join: [lb-1, lb-2]", "    join: [lb-1, lb-2]\n    key: c2hvcnQ=", `field "discovery.gossip.key": decodes to 5 bytes`},
		{"profile", "    join: [lb-1, lb-2]", "    join: [lb-1, lb-2]\n    profile: wan", `field "discovery.gossip.profile": unknown gossip profile "wan"; accepted: lan, large`},
		{"join unreachable", "join: [lb-1, lb-2]", "join: [lb-1, 10.10.0.99]", `field "discovery.gossip.join[1]": 10.10.0.99 is unreachable: no node has that address; accepted: a node's name or address (lb-1, lb-2, web-1, web-2, app-1, db-1)`},
		{"join garbage", "join: [lb-1, lb-2]", "join: [lb-1, lb-3]", `field "discovery.gossip.join[1]": "lb-3" is not an address`},
		{"address outside", "address: 10.10.0.41", "address: 10.10.1.41", `field "nodes[5].address": 10.10.1.41 is outside the subnet`},
		{"gateway address", "address: 10.10.0.41", "address: 10.10.0.1", `is the network, broadcast or gateway address`},
		{"gateway outside", "gateway: 10.10.0.1", "gateway: 10.10.1.1", `field "network.gateway": "10.10.1.1" is not an address in 10.10.0.0/24`},
		{"subnet", "subnet: 10.10.0.0/24", "subnet: 10.10.0.5/24", `field "network.subnet": "10.10.0.5/24" is not a network`},
		{"mac", `mac: "52:54:00:0a:00:0b"`, `mac: "53:54:00:0a:00:0b"`, `field "nodes[0].mac": "53:54:00:0a:00:0b" is not a unicast MAC address`},
		{"option", "options: {runtime: php-fpm}", "options: {runtime: cgi}", `field "nodes[4].options.runtime": "cgi" is not accepted; accepted: php-fpm, uwsgi`},
		{"option on lb", "{name: lb-2, role: lb, address: 10.10.0.12}", "{name: lb-2, role: lb, address: 10.10.0.12, options: {mode: primary}}", `field "nodes[1].options.mode": unknown option for role lb; accepted: none for role lb`},
		{"no vip", "vips:\n  - address: 10.10.0.100\n", "", `field "vips": the lb nodes hold the cluster's VIPs (vips: true in their role file) and need at least one`},
		{"unknown field", "cluster: shop", "cluster: shop\nclustr: shop", `testdata/cluster.yaml:4:1: field "clustr": unknown field here; accepted: cluster, database, discovery, monitoring, network, nodes, ssh_authorized_keys, tls, vips`},
		{"two primaries", "id: 1}", "id: 1}\n  - {name: db-2, role: db, address: 10.10.0.42}", `field "nodes[6].options.mode": a second db primary`},
		{"logs without cert", "  logs_cert_file: journal-client.crt   # a test pair, relative to this file\n  logs_key_file: journal-client.key\n", "", `field "monitoring.logs_cert_file": is missing; systemd-journal-upload authenticates to logs_url with a client certificate`},
		{"logs cert without key", "  logs_key_file: journal-client.key\n", "", `field "monitoring.logs_key_file": is missing; logs_cert_file needs its key`},
		{"logs key without cert", "  logs_cert_file: journal-client.crt   # a test pair, relative to this file\n", "", `field "monitoring.logs_cert_file": is missing; logs_key_file needs its certificate`},
		{"logs cert without url", "  logs_url: https://monitor.shop.internal:19532/upload\n", "", `field "monitoring.logs_cert_file": is set but logs_url is not`},
		{"method", "method: gossip", "method: etcd", `field "discovery.method": unknown discovery method "etcd"; accepted: static, dns, gossip`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := string(base)
			if !strings.Contains(s, tt.old) {
				t.Fatalf("no %q in the sample", tt.old)
			}
			_, err := ParseCluster(file, []byte(strings.Replace(s, tt.old, tt.new, 1)), testRoles(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got  %v\nwant %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), file) {
				t.Errorf("not a one-line error naming the file: %q", err)
			}
		})
	}
}

// TestMixedAppRuntimes: app nodes of both runtimes in one cluster (the
// web nodes speak FastCGI to either); each app node's user-data carries
// its own runtime, and the web nodes' the default, whatever the app
// nodes run.
func TestMixedAppRuntimes(t *testing.T) {
	file, base := readCluster(t)
	s := strings.Replace(string(base), "options: {runtime: php-fpm}}", "options: {runtime: php-fpm}}\n  - {name: app-2, role: app, address: 10.10.0.32, options: {runtime: uwsgi}}", 1)
	c, err := ParseCluster(file, []byte(s), testRoles(t))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	for node, want := range map[string]string{"app-1": "php-fpm", "app-2": "uwsgi", "web-1": "php-fpm"} {
		ud, err := os.ReadFile(filepath.Join(out, node, UserDataFile))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _, err := config.Parse(node+"/user-data", ud)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Options["runtime"] != want {
			t.Errorf("%s: runtime option %q, want %q", node, cfg.Options["runtime"], want)
		}
	}
}

// TestReplicaNode: a db node in mode replica (as TestCluster's db-2) gets
// its mode, its server id, the replication account and the application's
// account, whose password is secrets.yaml's database_password, as on the
// primary and the app nodes (the e2e test logs in to the primary with
// it).
func TestReplicaNode(t *testing.T) {
	file, base := readCluster(t)
	s := strings.Replace(string(base), "  - {name: db-1, role: db, address: 10.10.0.41, id: 1}\n",
		"  - {name: db-1, role: db, address: 10.10.0.41, id: 1}\n  - {name: db-2, role: db, address: 10.10.0.42, id: 2, options: {mode: replica}}\n", 1)
	c, err := ParseCluster(file, []byte(s), testRoles(t))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, SecretsFile))
	if err != nil {
		t.Fatal(err)
	}
	var sec Secrets
	if err := yaml.Unmarshal(b, &sec); err != nil || sec.DatabasePassword == "" {
		t.Fatalf("%s: no database_password (%v)", SecretsFile, err)
	}
	for _, tc := range []struct {
		node, mode string
		id         uint32
	}{{"db-1", "primary", 1}, {"db-2", "replica", 2}, {"app-1", "", 0}} {
		ud, err := os.ReadFile(filepath.Join(out, tc.node, UserDataFile))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _, err := config.Parse(tc.node+"/user-data", ud)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Database == nil || cfg.Database.User != DefaultDBUser || cfg.Database.Password != sec.DatabasePassword {
			t.Errorf("%s: not the application's account %s with secrets.yaml's database_password", tc.node, DefaultDBUser)
		}
		if tc.mode == "" {
			continue
		}
		if cfg.Options["mode"] != tc.mode || cfg.Node.ID != tc.id {
			t.Errorf("%s: mode %q, id %d; want %q, %d", tc.node, cfg.Options["mode"], cfg.Node.ID, tc.mode, tc.id)
		}
		if cfg.Database.ReplicationUser != DefaultReplUser || cfg.Database.ReplicationPassword != sec.ReplicationPassword {
			t.Errorf("%s: not the replication account %s with secrets.yaml's replication_password", tc.node, DefaultReplUser)
		}
	}
}

// TestClusterFileSize: a cluster file over 1 MiB is refused before it is
// parsed.
func TestClusterFileSize(t *testing.T) {
	_, base := readCluster(t)
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	big := append(bytes.Clone(base), []byte("# "+strings.Repeat("x", MaxClusterFile)+"\n")...)
	if err := os.WriteFile(p, big, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadCluster(p, testRoles(t))
	if err == nil || !strings.Contains(err.Error(), p+": the cluster file is larger than 1048576 bytes (1 MiB); accepted: a cluster file of at most 1 MiB") {
		t.Errorf("got %v", err)
	}
}

// TestGenerateAllOrNothing: when the Nth node fails, nothing is left
// behind: not secrets.yaml, not the earlier nodes' seeds; and a failed
// re-run leaves the earlier run's files as they were.
func TestGenerateAllOrNothing(t *testing.T) {
	c, err := LoadCluster("testdata/cluster.yaml", testRoles(t))
	if err != nil {
		t.Fatal(err)
	}
	failAt := func(n int) {
		calls := 0
		writeISO = func(path string, s Seed, mod time.Time) error {
			if calls++; calls == n {
				return errors.New("disk full")
			}
			return WriteISO(path, s, mod)
		}
	}
	t.Cleanup(func() { writeISO = WriteISO })
	parent := t.TempDir()
	out := filepath.Join(parent, "seeds")
	failAt(3)
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err == nil || !strings.Contains(err.Error(), "node web-1: disk full") {
		t.Fatalf("got %v", err)
	}
	if left, _ := os.ReadDir(parent); len(left) != 0 {
		t.Errorf("a failed run left %v behind", left)
	}
	// A good run, then a failing one: the good run's files stay as they were.
	writeISO = WriteISO
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	before := snapshotDir(t, out)
	c.Nodes[2].Role = "app" // web-1 becomes an app node: a new certificate, new seeds
	c.Nodes[2].Options = map[string]string{"runtime": "php-fpm"}
	failAt(5)
	if _, err := Generate(c, Options{Out: out, Rand: testRand(2), ModTime: testTime}); err == nil {
		t.Fatal("no error")
	}
	after := snapshotDir(t, out)
	if len(after) != len(before) {
		t.Errorf("%d files before, %d after", len(before), len(after))
	}
	for p, b := range before {
		if !bytes.Equal(after[p], b) {
			t.Errorf("%s changed in a failed run", p)
		}
	}
	if left, _ := os.ReadDir(parent); len(left) != 1 {
		t.Errorf("a failed run left %v behind", left)
	}
	// Something in the way of a later node: nothing moves.
	writeISO = WriteISO
	if err := os.RemoveAll(filepath.Join(out, "db-1")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "db-1"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{MetaDataFile, UserDataFile, NetworkConfigFile, "seed.iso"} {
		delete(before, filepath.Join(out, "db-1", f))
	}
	if _, err := Generate(c, Options{Out: out, Rand: testRand(2), ModTime: testTime}); err == nil || !strings.Contains(err.Error(), "db-1 is in the way") {
		t.Fatalf("got %v", err)
	}
	after = snapshotDir(t, out)
	for p, b := range before {
		if !bytes.Equal(after[p], b) {
			t.Errorf("%s changed in a failed run", p)
		}
	}
}

// TestSecretsFileRefused: a secrets.yaml that others may read, or that is
// a symbolic link, is refused with what to do; nothing is written.
func TestSecretsFileRefused(t *testing.T) {
	c, err := LoadCluster("testdata/cluster.yaml", testRoles(t))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(out, SecretsFile)
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err == nil || !strings.Contains(err.Error(), "may be read or written by others (mode 0644)") || !strings.Contains(err.Error(), "chmod 600 "+p) {
		t.Errorf("world-readable: got %v", err)
	}
	elsewhere := filepath.Join(t.TempDir(), "secrets.yaml")
	if err := os.Rename(p, elsewhere); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(elsewhere, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, p); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err == nil || !strings.Contains(err.Error(), "is a symbolic link") || !strings.Contains(err.Error(), "replace the link with a copy of the file") {
		t.Errorf("symbolic link: got %v", err)
	}
	if fi, err := os.Lstat(p); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v %v", fi, err)
	}
}

// TestGenerateIdentities: each node's user-data carries a certificate
// from the cluster CA for its name and role; a re-run keeps them; a node
// whose role changed gets a new one.
func TestGenerateIdentities(t *testing.T) {
	c, err := LoadCluster("testdata/cluster.yaml", testRoles(t))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	load := func(name string) *config.Config {
		ud, err := os.ReadFile(filepath.Join(out, name, UserDataFile))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _, err := config.Parse("user-data", ud)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	var ca string
	for _, n := range c.Nodes {
		cfg := load(n.Name)
		id, err := cfg.ParseIdentity()
		if err != nil || id == nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if id.Name != n.Name || id.Role != n.Role || id.Cluster != "shop" {
			t.Errorf("%s: certificate for %s", n.Name, id.Claims)
		}
		if ca != "" && cfg.Identity.CA != ca {
			t.Errorf("%s: another CA", n.Name)
		}
		ca = cfg.Identity.CA
		if _, _, err := identity.NewVerifier(id.CA).Verify(id.Cert.Raw, time.Now()); err != nil {
			t.Errorf("%s: %v", n.Name, err)
		}
	}
	// As the agent loads it on a booted node: the user-data file as
	// cloud-init stores it, byte for byte, and cloud-init's instance data.
	ud, err := os.ReadFile(filepath.Join(out, "db-1", UserDataFile))
	if err != nil {
		t.Fatal(err)
	}
	host := config.Host{
		ReadFile: func(p string) ([]byte, error) {
			switch p {
			case config.UserDataPath:
				return ud, nil
			case config.InstanceDataPath:
				return []byte(`{"v1": {"instance_id": "shop-db-1-x", "local_hostname": "db-1"}}`), nil
			}
			return nil, os.ErrNotExist
		},
		Addresses: func() ([]netip.Prefix, error) { return nil, nil },
	}
	cfg, err := config.Load(config.DefaultPaths, host)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := cfg.ParseIdentity(); err != nil || id.Name != "db-1" || id.Role != "db" {
		t.Errorf("db-1 as loaded on the node: %+v, %v", id, err)
	}

	web1 := load("web-1").Identity.Cert
	c.Nodes[3].Role = "app" // web-2
	c.Nodes[3].Options = map[string]string{"runtime": "php-fpm"}
	if _, err := Generate(c, Options{Out: out, Rand: testRand(2), ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	if load("web-1").Identity.Cert != web1 || load("web-1").Identity.CA != ca {
		t.Error("a re-run issued web-1 another certificate or made another CA")
	}
	if id, _ := load("web-2").ParseIdentity(); id == nil || id.Role != "app" {
		t.Errorf("web-2 became an app node but its certificate says %+v", id)
	}
	sec, err := os.ReadFile(filepath.Join(out, SecretsFile))
	if err != nil || !strings.Contains(string(sec), "ca:\n  cert: |") || strings.Count(string(sec), "BEGIN PRIVATE KEY") != 7 {
		t.Errorf("secrets.yaml does not keep the CA and the six nodes' keys: %v\n%s", err, sec)
	}
}

// TestGenerateLogsPair: the logs client pair is read from files relative
// to the cluster file and checked to be a pair before any seed is written.
func TestGenerateLogsPair(t *testing.T) {
	dir := t.TempDir()
	_, base := readCluster(t)
	for _, f := range []string{"journal-client.crt", "journal-client.key"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A key of another pair.
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	other := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	file := filepath.Join(dir, "cluster.yaml")
	c, err := ParseCluster(file, base, testRoles(t))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "journal-client.crt"); c.Monitoring.LogsCertFile != want {
		t.Errorf("logs_cert_file = %s, want %s (relative to the cluster file)", c.Monitoring.LogsCertFile, want)
	}
	out := filepath.Join(dir, "out")
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	ud, err := os.ReadFile(filepath.Join(out, "web-1", UserDataFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Parse("web-1/user-data", ud)
	if err != nil {
		t.Fatal(err)
	}
	crt, _ := os.ReadFile(filepath.Join(dir, "journal-client.crt"))
	if cfg.Monitoring == nil || cfg.Monitoring.LogsCert != string(crt) || cfg.Monitoring.LogsKey == "" {
		t.Errorf("web-1's monitoring does not carry the logs pair: %+v", cfg.Monitoring)
	}
	if cfg.Options["runtime"] != "php-fpm" {
		t.Errorf("web-1's runtime option = %v, want php-fpm (the default)", cfg.Options)
	}

	if err := os.Remove(filepath.Join(dir, "journal-client.key")); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err == nil || !strings.Contains(err.Error(), "reading monitoring.logs_key_file") {
		t.Errorf("missing key file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "journal-client.key"), other, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err == nil || !strings.Contains(err.Error(), "do not make a pair") {
		t.Errorf("mismatched key: %v", err)
	}
}

func TestDeriveMAC(t *testing.T) {
	a := DeriveMAC("shop", "web-1")
	if a != DeriveMAC("shop", "web-1") || a == DeriveMAC("shop", "web-2") || a == DeriveMAC("shop2", "web-1") {
		t.Error("not stable or not distinct")
	}
	if !strings.HasPrefix(a, "02:") || len(a) != 17 {
		t.Errorf("%s is not a locally administered unicast MAC", a)
	}
}

func TestSingle(t *testing.T) {
	c, err := SingleCluster(Single{Role: "lb", Address: "10.0.2.15/24", Gateway: "10.0.2.2", VIPs: []string{"10.0.2.100"}}, testRoles(t))
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Name != "lb-1" || res[0].MAC != DeriveMAC("imgforge", "lb-1") {
		t.Errorf("%+v", res[0])
	}
	nc, _ := os.ReadFile(filepath.Join(out, "lb-1", NetworkConfigFile))
	if !strings.Contains(string(nc), `macaddress: "`+res[0].MAC+`"`) || !strings.Contains(string(nc), "- 10.0.2.15/24") {
		t.Errorf("network-config:\n%s", nc)
	}
	// DHCP when no address is given.
	c, err = SingleCluster(Single{Role: "web", Name: "w"}, testRoles(t))
	if err != nil {
		t.Fatal(err)
	}
	c.Cluster = "other"
	if _, err := Generate(c, Options{Out: out, Rand: testRand(1), ModTime: testTime}); err == nil {
		t.Error("a second cluster name in one folder was accepted")
	}
	dhcp := t.TempDir()
	if _, err := Generate(c, Options{Out: dhcp, Rand: testRand(1), ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	if nc, _ := os.ReadFile(filepath.Join(dhcp, "w", NetworkConfigFile)); !strings.Contains(string(nc), "dhcp4: true") {
		t.Errorf("network-config without an address:\n%s", nc)
	}
	for _, tt := range []struct {
		s    Single
		want string
	}{
		{Single{Role: "cache"}, `field "nodes[0].role": unknown role "cache"; accepted: app, db, lb, web`},
		{Single{Role: "lb", Address: "10.0.2.15/24", VIPs: []string{"10.9.9.9"}}, `10.9.9.9 is outside the subnet 10.0.2.0/24`},
		{Single{Role: "web", Address: "10.0.2.15"}, `field "nodes[0].address": "10.0.2.15": accepted: an address with its prefix length`},
		{Single{Role: "web", Name: "Web"}, `field "nodes[0].name": "Web" is not a node name`},
	} {
		if _, err := SingleCluster(tt.s, testRoles(t)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: got %v, want %q", tt.s, err, tt.want)
		}
	}
}

// TestGossipProfile: discovery.gossip.profile reaches every node's agent
// configuration; left out, the nodes get none (the agent's default, lan).
func TestGossipProfile(t *testing.T) {
	file, base := readCluster(t)
	for _, profile := range []string{"", "large"} {
		s := string(base)
		if profile != "" {
			s = strings.Replace(s, "    join: [lb-1, lb-2]", "    join: [lb-1, lb-2]\n    profile: "+profile, 1)
		}
		c, err := ParseCluster(file, []byte(s), testRoles(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range c.Nodes {
			cfg, err := nodeConfig(c, n, Secrets{GossipKey: strings.Repeat("A", 43) + "="}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Discovery.Gossip.Profile; got != profile {
				t.Errorf("profile %q: node %s's gossip profile is %q", profile, n.Name, got)
			}
		}
	}
}
