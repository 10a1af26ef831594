package discovery

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/miekg/dns"

	"github.com/imgforge/imgforge/pkg/names"
)

// dnsAnswers are packed DNS answers like a resolver sends: the seeds of
// FuzzDNSAnswer, also committed as its corpus.
func dnsAnswers(t testing.TB) map[string][]byte {
	t.Helper()
	msg := func(rrs ...string) []byte {
		m := new(dns.Msg)
		m.SetQuestion("web.shop.internal.", dns.TypeSRV)
		m.Id, m.Response = 1, true
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	return map[string][]byte{
		"srv": msg("_http._tcp.web.shop.internal. 60 IN SRV 10 5 8080 web-1.shop.internal.",
			"_http._tcp.web.shop.internal. 60 IN SRV 10 5 8081 web-2.shop.internal."),
		"srv-odd-label": msg(`_http._tcp.web.shop.internal. 60 IN SRV 10 5 80 web\;1\010x.shop.internal.`,
			"_http._tcp.web.shop.internal. 60 IN SRV 0 0 0 ."),
		"a-aaaa": msg("web.shop.internal. 60 IN A 10.10.0.21", "web.shop.internal. 60 IN AAAA fd00::21",
			"web.shop.internal. 60 IN A 0.0.0.0", "web.shop.internal. 60 IN AAAA ff02::1"),
		"mapped": msg("web.shop.internal. 60 IN AAAA ::ffff:10.10.0.22", "web.shop.internal. 60 IN TXT \"x\""),
	}
}

// TestDNSAnswers: what a resolver answers becomes members only when it
// names a node and a unicast address.
func TestDNSAnswers(t *testing.T) {
	parse := func(b []byte) *dns.Msg {
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := dnsAnswers(t)
	if got := SRVTargets(parse(a["srv"]).Answer); len(got) != 2 || got[0].Name != "web-1" || got[0].Port != 8080 || got[1].Target != "web-2.shop.internal." {
		t.Errorf("srv: %+v", got)
	}
	if got := SRVTargets(parse(a["srv-odd-label"]).Answer); len(got) != 0 {
		t.Errorf("odd labels gave members: %+v", got)
	}
	if got := AnswerAddrs(parse(a["a-aaaa"]).Answer); len(got) != 2 || got[0].String() != "10.10.0.21" || got[1].String() != "fd00::21" {
		t.Errorf("addresses: %v", got)
	}
	if got := AnswerAddrs(parse(a["mapped"]).Answer); len(got) != 1 || got[0].String() != "10.10.0.22" {
		t.Errorf("mapped: %v", got)
	}
}

// TestFuzzDNSAnswerCorpus writes (with -update) and checks the committed
// corpus of FuzzDNSAnswer.
func TestFuzzDNSAnswerCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDNSAnswer")
	for name, b := range dnsAnswers(t) {
		p := filepath.Join(dir, name)
		text := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := os.ReadFile(p); err != nil || string(got) != text {
			t.Errorf("%s: differs from what the test makes, %v (run go test ./pkg/agent/discovery -run Corpus -update)", p, err)
		}
	}
}

// FuzzDNSAnswer: any DNS message a resolver may send gives members with
// node names and unicast addresses only, and never panics.
func FuzzDNSAnswer(f *testing.F) {
	for _, b := range dnsAnswers(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if err := m.Unpack(data); err != nil {
			return
		}
		for _, tg := range SRVTargets(m.Answer) {
			if !names.Node(tg.Name) {
				t.Fatalf("member name %q from target %q", tg.Name, tg.Target)
			}
		}
		for _, a := range AnswerAddrs(m.Answer) {
			if !a.IsValid() || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
				t.Fatalf("address %v", a)
			}
		}
	})
}
