package discovery

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/imgforge/imgforge/pkg/agent/identity"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

// testLog collects the members' warnings so tests can check rejections.
type testLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *testLog) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *testLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			return true
		}
	}
	return false
}

func startMember(t testing.TB, name, role, ip string, join []string, lg *testLog) *Gossip {
	t.Helper()
	g, err := NewGossip(t.Context(), GossipOptions{
		Cluster: "shop", Self: Member{Name: name, Role: role, Address: netip.MustParseAddr(ip), Healthy: true},
		Key: testKey, Join: join, JoinWait: 200 * time.Millisecond, Logf: lg.logf,
		Identity: clusterCA(t, "shop").node(t, role, name),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Kill() })
	return g
}

func memberNames(ms []Member) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return strings.Join(out, ",")
}

func TestGossipJoinHealthLeave(t *testing.T) {
	lg := &testLog{}
	lb := startMember(t, "lb-1", "lb", "127.0.1.1", nil, lg)
	seed := []string{lb.Addr().String()}
	web1 := startMember(t, "web-1", "web", "127.0.1.2", seed, lg)
	web2 := startMember(t, "web-2", "web", "127.0.1.3", seed, lg)
	waitChange(t, lb, "both web members", func(s Set) bool { return memberNames(s.Role("web")) == "web-1,web-2" })
	waitChange(t, web2, "lb-1 and web-1 seen by web-2", func(s Set) bool { return s.Len() == 3 })

	if err := web1.SetHealthy(false); err != nil {
		t.Fatal(err)
	}
	waitChange(t, lb, "web-1 unhealthy", func(s Set) bool { w := s.Role("web"); return len(w) == 2 && !w[0].Healthy && w[1].Healthy })

	if err := web1.Close(); err != nil {
		t.Fatal(err)
	}
	waitChange(t, lb, "web-1 gone after leaving", func(s Set) bool { return memberNames(s.Role("web")) == "web-2" })

	if err := web2.Kill(); err != nil {
		t.Fatal(err)
	}
	waitChange(t, lb, "web-2 gone after a crash", func(s Set) bool { return len(s.Role("web")) == 0 })
}

// signed is a member's metadata signed with id, as a node would send it.
func signed(t testing.TB, id *identity.Node, m Meta) []byte {
	t.Helper()
	b, err := EncodeMeta(id, m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// v1 makes b a version 1 envelope with the role code of web (2) before
// the flags, as the agents before issue 12 wrote it.
func v1(b []byte) []byte {
	out := []byte{1, b[1] + 1, 2}
	return append(out, b[2:]...)
}

// TestMetaRoleIsTheCertificates: the role of a member is the one its
// certificate names, whatever the signer says: a stolen app identity
// relabelled web is an app member.
func TestMetaRoleIsTheCertificates(t *testing.T) {
	shop := clusterCA(t, "shop")
	id := shop.node(t, "app", "app-7")
	cp := *id
	cp.Role = "web"
	b := signed(t, &cp, Meta{Role: "web", Address: netip.MustParseAddr("10.0.0.7"), Port: 7946, Healthy: true})
	m, _, err := NewMetaVerifier(identity.NewVerifier(shop.ca.Cert), nil).ParseMeta("app-7", nil, 0, b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Role != "app" {
		t.Fatalf("role %q; want app, the certificate's", m.Role)
	}
}

// renamed is id signing as another node, as a thief of its seed would.
func renamed(id *identity.Node, name string) *identity.Node {
	cp := *id
	cp.Name = name
	return &cp
}

func oldJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGossipRejectsForgedMembers: a member that holds the gossip key but
// cannot prove its name and role with a certificate from the cluster CA
// is never a peer; each refusal is logged once.
func TestGossipRejectsForgedMembers(t *testing.T) {
	lg := &testLog{}
	lb := startMember(t, "lb-1", "lb", "127.0.2.1", nil, lg)
	join := lb.Addr().String()
	shop := clusterCA(t, "shop")
	web := func(ip string, port int) Meta {
		return Meta{Role: "web", Address: netip.MustParseAddr(ip), Port: uint16(port), Healthy: true}
	}
	badSig := func(b []byte) []byte { b = bytes.Clone(b); b[len(b)-1] ^= 1; return b }
	const port = 17950

	tests := []struct {
		name, ip string
		meta     []byte
		key      []byte
		log      string // what the honest member logs, "" for a wrong key (memberlist drops it before)
	}{
		{"no-cert", "127.0.2.10", oldJSON(t, map[string]any{"c": "shop", "r": "web", "a": "127.0.2.10", "h": true}), testKey, `member "no-cert": metadata is not imgforge's signed metadata`},
		{"empty-cert", "127.0.2.11", append([]byte{2, 7, 1, port >> 8, port & 0xff, 127, 0, 2, 11, 0, 0}, make([]byte, 64)...), testKey, `member "empty-cert": certificate not from the cluster CA: no certificate`},
		{"other-ca", "127.0.2.12", signed(t, clusterCA(t, "other:shop").node(t, "web", "other-ca"), web("127.0.2.12", port)), testKey, `member "other-ca": certificate not from the cluster CA`},
		{"other-cluster", "127.0.2.13", signed(t, clusterCA(t, "shop2").node(t, "web", "other-cluster"), web("127.0.2.13", port)), testKey, `member "other-cluster": certificate not from the cluster CA`},
		// A stolen app identity, signing metadata of version 1, whose role
		// code claims web: the role is the certificate's since version 2
		// (TestMetaRoleIsTheCertificates), and version 1 is refused.
		{"other-role", "127.0.2.14", v1(signed(t, shop.node(t, "app", "other-role"), Meta{Role: "app", Address: netip.MustParseAddr("127.0.2.14"), Port: port, Healthy: true})), testKey, `member "other-role": metadata is not imgforge's signed metadata`},
		// A stolen web-9 identity, signing metadata for another name.
		{"other-name", "127.0.2.15", signed(t, renamed(shop.node(t, "web", "web-9"), "other-name"), web("127.0.2.15", port)), testKey, `member "other-name": certificate names another node or role`},
		{"bad-sig", "127.0.2.16", badSig(signed(t, shop.node(t, "web", "bad-sig"), web("127.0.2.16", port))), testKey, `member "bad-sig": bad signature`},
		{"other-addr", "127.0.2.17", signed(t, shop.node(t, "web", "other-addr"), web("127.0.2.99", port)), testKey, `it advertises 127.0.2.99 but gossips from 127.0.2.17`},
		{"wrong-key", "127.0.2.18", signed(t, shop.node(t, "web", "wrong-key"), web("127.0.2.18", port)), []byte("ffffffffffffffffffffffffffffffff"), "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := forged(t, tt.name, tt.ip, port, tt.meta, tt.key, join)
			if tt.log == "-" {
				if err == nil {
					t.Error("a member with the wrong key joined")
				}
			} else {
				deadline := time.Now().Add(10 * time.Second)
				for !lg.has(tt.log) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if !lg.has(tt.log) {
					t.Errorf("no rejection %q logged; log: %q (join: %v)", tt.log, lg.lines, err)
				}
			}
			for _, m := range lb.Members().All() {
				if m.Name == tt.name {
					t.Errorf("forged member %s is a peer: %+v", tt.name, m)
				}
			}
		})
	}
	// An honest member still joins after all that, and is verified.
	startMember(t, "web-1", "web", "127.0.2.2", []string{join}, lg)
	s := waitChange(t, lb, "web-1", func(s Set) bool { return len(s.Role("web")) == 1 })
	if s.Len() != 2 || !s.Role("web")[0].Verified {
		t.Errorf("members %+v", s)
	}
	// Each member and reason was logged once, however often it retried.
	lg.mu.Lock()
	defer lg.mu.Unlock()
	seen := map[string]int{}
	for _, l := range lg.lines {
		for _, tt := range tests {
			if strings.Contains(l, `member "`+tt.name+`"`) {
				seen[tt.name]++
			}
		}
		if strings.Contains(l, "PRIVATE KEY") {
			t.Errorf("a key was logged: %s", l)
		}
	}
	for name, n := range seen {
		if n > 2 { // once as a refused alive, at most once more as a refused merge
			t.Errorf("%s was logged %d times", name, n)
		}
	}
}

// forged starts a raw memberlist member with the given metadata and key,
// as an attacker or a broken node would, and has it join.
func forged(t *testing.T, name, ip string, port int, meta []byte, key []byte, join string) (*memberlist.Memberlist, error) {
	t.Helper()
	c := LANConfig()
	c.Name, c.BindAddr, c.BindPort, c.AdvertiseAddr, c.AdvertisePort = name, ip, port, ip, port
	c.SecretKey, c.Label = key, "imgforge/shop"
	c.Delegate = metaDelegate(meta)
	c.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ml.Shutdown() })
	_, err = ml.Join([]string{join})
	return ml, err
}

type metaDelegate []byte

func (d metaDelegate) NodeMeta(int) []byte                  { return d }
func (metaDelegate) NotifyMsg([]byte)                       {}
func (metaDelegate) GetBroadcasts(int, int) [][]byte        { return nil }
func (metaDelegate) LocalState(bool) []byte                 { return nil }
func (metaDelegate) MergeRemoteState(buf []byte, join bool) {}

// fixed is the time the fuzz corpus and the fixed identities are made and
// checked at: their certificates stay valid for the tests.
var fixed = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fixedCA is a CA of cluster shop made from a fixed seed, so the
// committed corpus verifies.
func fixedCA(t testing.TB) *testCA {
	t.Helper()
	r := rand.NewChaCha8([32]byte{'s', 'h', 'o', 'p'})
	certPEM, keyPEM, err := identity.NewCA(r, "shop", fixed)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca: ca, certPEM: certPEM}
}

func fixedNode(t testing.TB, ca *testCA, role, name string) *identity.Node {
	t.Helper()
	r := rand.NewChaCha8([32]byte{byte(len(name)), name[0], name[len(name)-1]})
	certPEM, keyPEM, err := ca.ca.Issue(r, role, name, fixed)
	if err != nil {
		t.Fatal(err)
	}
	n, err := identity.ParseNode(ca.certPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func fixedVerifier(ca *testCA) *MetaVerifier {
	return NewMetaVerifier(identity.NewVerifier(ca.ca.Cert), func() time.Time { return fixed })
}

func TestParseMeta(t *testing.T) {
	ca := fixedCA(t)
	v := fixedVerifier(ca)
	db := fixedNode(t, ca, "db", "db-1")
	good := Meta{Role: "db", Address: netip.MustParseAddr("10.0.0.41"), Port: 7946, Mode: "primary", Healthy: true}
	b := signed(t, db, good)
	if m, cert, err := v.ParseMeta("db-1", net.ParseIP("10.0.0.41"), 7946, b); err != nil || m != good || cert.Subject.CommonName != "db-1" {
		t.Errorf("%+v %v", m, err)
	}
	if _, _, err := v.ParseMeta("db-1", net.ParseIP("10.0.0.41"), 7947, b); err == nil {
		t.Error("another port accepted")
	}
	if _, _, err := v.ParseMeta("DB_1", nil, 0, b); err == nil {
		t.Error("bad name accepted")
	}
	later := NewMetaVerifier(identity.NewVerifier(ca.ca.Cert), func() time.Time { return fixed.Add(identity.NodeValidity + time.Hour) })
	if _, _, err := later.ParseMeta("db-1", nil, 0, b); err == nil || !strings.Contains(err.Error(), "not valid at") {
		t.Errorf("an expired certificate: %v", err)
	}
	for name, bad := range map[string]Meta{
		"mode for web":  {Role: "db", Address: netip.MustParseAddr("10.0.0.41"), Port: 1, Mode: "leader"},
		"multicast":     {Role: "db", Address: netip.MustParseAddr("224.0.0.1"), Port: 1},
		"no port":       {Role: "db", Address: netip.MustParseAddr("10.0.0.41")},
		"link-local v6": {Role: "db", Address: netip.MustParseAddr("fe80::1"), Port: 1},
	} {
		b, err := EncodeMeta(db, bad)
		if err != nil {
			continue
		}
		if _, _, err := v.ParseMeta("db-1", nil, 0, b); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	// Trailing or missing bytes.
	for _, bad := range [][]byte{append(bytes.Clone(b), 0), b[:len(b)-1], b[:3], nil} {
		if _, _, err := v.ParseMeta("db-1", nil, 0, bad); err == nil {
			t.Errorf("%d bytes accepted", len(bad))
		}
	}
}

// TestMetaFits: the largest legal metadata (63-character cluster and node
// names, an IPv6 address, a db mode) fits memberlist's limit.
func TestMetaFits(t *testing.T) {
	cluster := "c" + strings.Repeat("x", 62)
	name := strings.Repeat("n", 63)
	r := rand.NewChaCha8([32]byte{9})
	certPEM, keyPEM, err := identity.NewCA(r, cluster, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	max := 0
	// The longest role name is as legal as the four of the repository.
	for _, role := range []string{"lb", "web", "app", "db", "r" + strings.Repeat("x", imagemeta.MaxRoleName-1)} {
		nc, nk, err := ca.Issue(r, role, name, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		id, err := identity.ParseNode(certPEM, nc, nk)
		if err != nil {
			t.Fatal(err)
		}
		m := Meta{Role: role, Address: netip.MustParseAddr("fd00:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Port: 65535, Healthy: true}
		m.Mode = "replica"
		b, err := EncodeMeta(id, m)
		if err != nil {
			t.Fatal(err)
		}
		max = rmax(max, len(b))
		v := NewMetaVerifier(identity.NewVerifier(ca.Cert), nil)
		if got, _, err := v.ParseMeta(name, nil, 0, b); err != nil || got != m {
			t.Errorf("%+v, %v", got, err)
		}
	}
	t.Logf("the largest metadata is %d bytes of memberlist's %d", max, memberlist.MetaMaxSize)
	if max > memberlist.MetaMaxSize {
		t.Errorf("%d bytes, over %d", max, memberlist.MetaMaxSize)
	}
}

func rmax(a, b int) int {
	if a > b {
		return a
	}
	return b
}

var updateCorpus = flag.Bool("update", false, "rewrite testdata/fuzz/FuzzParseMeta")

// TestFuzzParseMetaCorpus writes (with -update) and checks the committed
// corpus: its valid entries still verify, the broken ones do not.
func TestFuzzParseMetaCorpus(t *testing.T) {
	ca := fixedCA(t)
	v := fixedVerifier(ca)
	db := signed(t, fixedNode(t, ca, "db", "db-1"), Meta{Role: "db", Address: netip.MustParseAddr("10.0.0.41"), Port: 7946, Mode: "primary", Healthy: true})
	web := signed(t, fixedNode(t, ca, "web", "web-1"), Meta{Role: "web", Address: netip.MustParseAddr("fd00::21"), Port: 7946})
	flip := func(b []byte, i int) []byte { b = bytes.Clone(b); b[i] ^= 0x20; return b }
	entries := []struct {
		file, name string
		data       []byte
		valid      bool
	}{
		{"valid-db", "db-1", db, true},
		{"valid-web-ipv6", "web-1", web, true},
		{"bad-signature", "db-1", flip(db, len(db)-5), false},
		{"bad-payload", "db-1", flip(db, 3), false},
		{"other-name", "db-2", db, false},
		{"truncated", "web-1", web[:len(web)-10], false},
		{"old-json", "db-1", []byte(`{"c":"shop","r":"db","a":"10.0.0.41","m":"primary","h":true}`), false},
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParseMeta")
	for _, e := range entries {
		p := filepath.Join(dir, e.file)
		text := "go test fuzz v1\nstring(" + strconv.Quote(e.name) + ")\n[]byte(" + strconv.Quote(string(e.data)) + ")\n"
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (run go test ./pkg/agent/discovery -run FuzzParseMetaCorpus -update)", err)
		}
		if string(got) != text {
			t.Errorf("%s differs from what the test makes (run with -update)", p)
		}
		if _, _, err := v.ParseMeta(e.name, nil, 0, e.data); (err == nil) != e.valid {
			t.Errorf("%s: valid %v, error %v", e.file, e.valid, err)
		}
	}
}

func FuzzParseMeta(f *testing.F) {
	ca := fixedCA(f)
	v := fixedVerifier(ca)
	f.Add("db-1", signed(f, fixedNode(f, ca, "db", "db-1"), Meta{Role: "db", Address: netip.MustParseAddr("10.0.0.41"), Port: 7946, Mode: "primary", Healthy: true}))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		m, cert, err := v.ParseMeta(name, nil, 0, data)
		if err != nil {
			return
		}
		if !m.Address.IsValid() || m.Port == 0 || cert.Subject.CommonName != name || cert.Subject.OrganizationalUnit[0] != m.Role {
			t.Fatalf("accepted %+v for %q", m, name)
		}
		// What verifies was signed by the CA's node: re-encoding is not
		// possible without its key, but the envelope's lengths add up.
		if len(data) > memberlist.MetaMaxSize {
			t.Fatalf("accepted %d bytes", len(data))
		}
	})
}
