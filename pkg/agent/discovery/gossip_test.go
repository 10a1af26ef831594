package discovery

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
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
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Kill() })
	return g
}

func names(ms []Member) string {
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
	waitChange(t, lb, "both web members", func(s Set) bool { return names(s.Role("web")) == "web-1,web-2" })
	waitChange(t, web2, "lb-1 and web-1 seen by web-2", func(s Set) bool { return s.Len() == 3 })

	if err := web1.SetHealthy(false); err != nil {
		t.Fatal(err)
	}
	waitChange(t, lb, "web-1 unhealthy", func(s Set) bool { w := s.Role("web"); return len(w) == 2 && !w[0].Healthy && w[1].Healthy })

	if err := web1.Close(); err != nil {
		t.Fatal(err)
	}
	waitChange(t, lb, "web-1 gone after leaving", func(s Set) bool { return names(s.Role("web")) == "web-2" })

	if err := web2.Kill(); err != nil {
		t.Fatal(err)
	}
	waitChange(t, lb, "web-2 gone after a crash", func(s Set) bool { return len(s.Role("web")) == 0 })
}

// forged starts a raw memberlist member with the given metadata and key,
// as an attacker or a broken node would, and has it join.
func forged(t *testing.T, name, ip string, meta []byte, key []byte, join string) (*memberlist.Memberlist, error) {
	t.Helper()
	c := LANConfig()
	c.Name, c.BindAddr, c.BindPort, c.AdvertiseAddr = name, ip, 0, ip
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

func meta(t *testing.T, m Meta) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGossipRejectsForgedMembers(t *testing.T) {
	lg := &testLog{}
	lb := startMember(t, "lb-1", "lb", "127.0.2.1", nil, lg)
	join := lb.Addr().String()

	tests := []struct {
		name, ip string
		meta     []byte
		key      []byte
		log      string // what the honest member logs, "" for a wrong key (memberlist drops it before)
	}{
		{"garbage-addr", "127.0.2.10", meta(t, Meta{Cluster: "shop", Role: "web", Address: "10.0.0.999", Healthy: true}), testKey, `member "garbage-addr": garbage address "10.0.0.999"`},
		{"unknown-role", "127.0.2.11", meta(t, Meta{Cluster: "shop", Role: "cache", Address: "127.0.2.11", Healthy: true}), testKey, `member "unknown-role": unknown role "cache"`},
		{"other-addr", "127.0.2.12", meta(t, Meta{Cluster: "shop", Role: "web", Address: "127.0.2.99", Healthy: true}), testKey, `advertises 127.0.2.99 but gossips from 127.0.2.12`},
		{"not-json", "127.0.2.13", []byte("\x00\xffbinary"), testKey, `member "not-json": metadata is not imgforge's`},
		{"other-cluster", "127.0.2.14", meta(t, Meta{Cluster: "shop2", Role: "web", Address: "127.0.2.14", Healthy: true}), testKey, `of cluster "shop2"`},
		{"wrong-key", "127.0.2.15", meta(t, Meta{Cluster: "shop", Role: "web", Address: "127.0.2.15", Healthy: true}), []byte("ffffffffffffffffffffffffffffffff"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := forged(t, tt.name, tt.ip, tt.meta, tt.key, join)
			if tt.log == "" {
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
	// An honest member still joins after all that.
	startMember(t, "web-1", "web", "127.0.2.2", []string{join}, lg)
	s := waitChange(t, lb, "web-1", func(s Set) bool { return len(s.Role("web")) == 1 })
	if s.Len() != 2 {
		t.Errorf("members %+v", s)
	}
}

func TestParseMeta(t *testing.T) {
	good := `{"c":"shop","r":"db","a":"10.0.0.41","m":"primary","h":true}`
	if m, a, err := ParseMeta("shop", "db-1", nil, []byte(good)); err != nil || a != netip.MustParseAddr("10.0.0.41") || m.Mode != "primary" {
		t.Errorf("%+v %v %v", m, a, err)
	}
	for _, bad := range []string{
		`{"c":"shop","r":"web","a":"10.0.0.41","m":"primary","h":true}`,
		`{"c":"shop","r":"db","a":"10.0.0.41","m":"leader","h":true}`,
		`{"c":"shop","r":"db","a":"224.0.0.1","h":true}`,
		`{"c":"shop","r":"db","a":"fe80::1%eth0","h":true}`,
		`{"c":"shop","r":"db","a":"10.0.0.41","h":true,"x":1}`,
		``,
	} {
		if _, _, err := ParseMeta("shop", "db-1", nil, []byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if _, _, err := ParseMeta("shop", "DB_1", nil, []byte(good)); err == nil {
		t.Error("bad name accepted")
	}
}

func FuzzParseMeta(f *testing.F) {
	f.Add("db-1", []byte(`{"c":"shop","r":"db","a":"10.0.0.41","m":"primary","h":true}`))
	f.Add("web-1", []byte(`{"c":"shop","r":"web","a":"fd00::21","h":false}`))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		m, a, err := ParseMeta("shop", name, nil, data)
		if err != nil {
			return
		}
		if !a.IsValid() || m.Cluster != "shop" {
			t.Fatalf("accepted %+v %v", m, a)
		}
	})
}
