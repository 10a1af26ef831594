package discovery

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestSet(t *testing.T) {
	s := NewSet([]Member{
		{Name: "web-2", Role: "web", Address: addr("10.0.0.22")},
		{Name: "lb-1", Role: "lb", Address: addr("10.0.0.11")},
		{Name: "web-1", Role: "web", Address: addr("10.0.0.21")},
	})
	if got := s.Role("web"); len(got) != 2 || got[0].Name != "web-1" || got[1].Name != "web-2" {
		t.Errorf("web = %+v", got)
	}
	if s.Len() != 3 || len(s.Role("db")) != 0 {
		t.Errorf("len %d", s.Len())
	}
	w := s.With(Member{Name: "web-1", Role: "web", Address: addr("10.0.0.21"), Healthy: true})
	if w.Equal(s) || !w.Role("web")[0].Healthy || s.Role("web")[0].Healthy {
		t.Errorf("With changed the original or did not replace: %+v / %+v", w, s)
	}
	if !NewSet(s.All()).Equal(s) {
		t.Error("NewSet(All) differs")
	}
}

func TestStatic(t *testing.T) {
	s := NewStatic([]Member{{Name: "db-1", Role: "db", Address: addr("10.0.0.41"), Mode: "primary"}})
	if m := s.Members().Role("db"); len(m) != 1 || !m[0].Healthy || m[0].Mode != "primary" {
		t.Errorf("db = %+v", m)
	}
	select {
	case <-s.Changes():
		t.Error("a static list changed")
	default:
	}
}

// zone is a tiny authoritative DNS server on loopback whose records the
// test changes.
type zone struct {
	mu  sync.Mutex
	rrs map[string][]string // "name type" -> RR text
}

func (z *zone) set(key string, rrs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.rrs[key] = rrs
}

func (z *zone) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	q := r.Question[0]
	z.mu.Lock()
	texts, ok := z.rrs[strings.ToLower(q.Name)+" "+dns.TypeToString[q.Qtype]]
	known := false
	for k := range z.rrs {
		if strings.HasPrefix(k, strings.ToLower(q.Name)+" ") {
			known = true
		}
	}
	z.mu.Unlock()
	for _, s := range texts {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	if !ok && !known {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

func startDNS(t *testing.T, z *zone) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: z, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func waitChange(t *testing.T, d Discoverer, what string, ok func(Set) bool) Set {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		s := d.Members()
		if ok(s) {
			return s
		}
		select {
		case <-d.Changes():
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %s; members %+v", what, s)
		}
	}
}

func TestDNS(t *testing.T) {
	z := &zone{rrs: map[string][]string{}}
	z.set("web.shop.test. A", "web.shop.test. 5 IN A 10.0.0.21", "web.shop.test. 5 IN A 10.0.0.22")
	z.set("web.shop.test. AAAA", "web.shop.test. 5 IN AAAA fd00::21")
	z.set("_mysql._tcp.db.shop.test. SRV", "_mysql._tcp.db.shop.test. 5 IN SRV 0 0 3306 db-1.shop.test.")
	z.set("db-1.shop.test. A", "db-1.shop.test. 5 IN A 10.0.0.41")
	resolver := startDNS(t, z)

	var logs []string
	var logMu sync.Mutex
	d, err := NewDNS(t.Context(), DNSOptions{
		Resolver: resolver, Interval: 50 * time.Millisecond,
		Records: []Record{{Role: "web", Name: "web.shop.test"}, {Role: "db", SRV: "_mysql._tcp.db.shop.test", Mode: "primary"}, {Role: "app", Name: "app.shop.test"}},
		Logf:    func(f string, a ...any) { logMu.Lock(); logs = append(logs, f); logMu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	s := d.Members()
	if got := s.Role("web"); len(got) != 3 || got[0].Address != addr("10.0.0.21") || got[2].Address != addr("fd00::21") {
		t.Errorf("web members %+v", got)
	}
	if got := s.Role("db"); len(got) != 1 || got[0] != (Member{Name: "db-1", Role: "db", Address: addr("10.0.0.41"), Port: 3306, Mode: "primary", Healthy: true}) {
		t.Errorf("db members %+v", got)
	}
	if len(s.Role("app")) != 0 {
		t.Errorf("app (NXDOMAIN) members %+v", s.Role("app"))
	}

	z.set("web.shop.test. A", "web.shop.test. 5 IN A 10.0.0.21")
	z.set("app.shop.test. A", "app.shop.test. 5 IN A 10.0.0.31")
	waitChange(t, d, "web-2 gone and app-1 found", func(s Set) bool { return len(s.Role("web")) == 2 && len(s.Role("app")) == 1 })

	// A failing server keeps the last members rather than dropping them.
	z.set("web.shop.test. A", "web.shop.test. 5 IN A 10.0.0.21")
	dead := &DNS{o: DNSOptions{Resolver: "127.0.0.1:1", Timeout: 200 * time.Millisecond, Records: []Record{{Role: "web", Name: "web.shop.test"}}, Logf: t.Logf},
		client: &dns.Client{Timeout: 200 * time.Millisecond}, last: map[int][]Member{0: {{Name: "10.0.0.9", Role: "web", Address: addr("10.0.0.9")}}}, set: Set{}}
	dead.poll(t.Context())
	if got := dead.Members().Role("web"); len(got) != 1 || got[0].Name != "10.0.0.9" {
		t.Errorf("after a failed lookup: %+v", got)
	}
}

func TestResolverFromFile(t *testing.T) {
	p := t.TempDir() + "/resolv.conf"
	if err := writeFile(p, "search example\nnameserver 10.0.0.1\nnameserver 10.0.0.2\n"); err != nil {
		t.Fatal(err)
	}
	got, err := ResolverFromFile(p)
	if err != nil || got != "10.0.0.1:53" {
		t.Errorf("got %q, %v", got, err)
	}
}
