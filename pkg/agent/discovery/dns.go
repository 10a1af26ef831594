package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/imgforge/imgforge/pkg/names"
)

// Record names the members of one role in DNS: Name for A and AAAA
// records (a member per address, named by it), or SRV for an SRV record
// (a member per target, named by the target's first label, with the
// record's port).
type Record struct {
	Role string
	Name string
	SRV  string
	Mode string // db: primary or replica
}

// DNSOptions configure DNS discovery.
type DNSOptions struct {
	Resolver string        // host:port of the DNS server to ask
	Interval time.Duration // between polls
	Timeout  time.Duration // of one query; default 2s
	Records  []Record
	Logf     func(format string, args ...any)
}

// DNS polls DNS records for members.
type DNS struct {
	notifier
	o      DNSOptions
	client *dns.Client
	mu     sync.Mutex
	set    Set
	last   map[int][]Member // per record, kept when a lookup fails
	cancel context.CancelFunc
	done   chan struct{}
}

var _ Discoverer = (*DNS)(nil)

// ResolverFromFile returns the first name server of a resolv.conf file as
// host:port.
func ResolverFromFile(path string) (string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	if len(cc.Servers) == 0 {
		return "", fmt.Errorf("%s names no name server", path)
	}
	return net.JoinHostPort(cc.Servers[0], cc.Port), nil
}

// NewDNS looks the records up once, then polls them every Interval until
// ctx ends or Close is called.
func NewDNS(ctx context.Context, o DNSOptions) (*DNS, error) {
	if o.Resolver == "" {
		return nil, errors.New("dns discovery: no resolver")
	}
	if _, _, err := net.SplitHostPort(o.Resolver); err != nil {
		o.Resolver = net.JoinHostPort(o.Resolver, "53")
	}
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	d := &DNS{o: o, client: &dns.Client{Timeout: o.Timeout}, last: map[int][]Member{}, set: Set{}, done: make(chan struct{})}
	ctx, d.cancel = context.WithCancel(ctx)
	d.poll(ctx)
	go d.run(ctx)
	return d, nil
}

func (d *DNS) run(ctx context.Context) {
	defer close(d.done)
	t := time.NewTicker(d.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.poll(ctx)
		}
	}
}

// Members returns the members of the last poll.
func (d *DNS) Members() Set {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.set
}

// Close stops polling.
func (d *DNS) Close() error {
	d.cancel()
	<-d.done
	return nil
}

func (d *DNS) poll(ctx context.Context) {
	var all []Member
	for i, r := range d.o.Records {
		ms, err := d.lookup(ctx, r)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d.o.Logf("dns discovery: %v; keeping the %d members found before", err, len(d.last[i]))
			ms = d.last[i]
		}
		d.last[i] = ms
		all = append(all, ms...)
	}
	set := NewSet(dedupe(all))
	d.mu.Lock()
	changed := !set.Equal(d.set)
	if changed {
		d.set = set
	}
	d.mu.Unlock()
	if changed {
		d.notify()
	}
}

func dedupe(ms []Member) []Member {
	seen := map[string]bool{}
	var out []Member
	for _, m := range ms {
		k := m.Role + "/" + m.Name
		if !seen[k] {
			seen[k] = true
			out = append(out, m)
		}
	}
	return out
}

func (d *DNS) lookup(ctx context.Context, r Record) ([]Member, error) {
	if r.SRV != "" {
		rrs, err := d.query(ctx, r.SRV, dns.TypeSRV)
		if err != nil {
			return nil, err
		}
		var out []Member
		for _, t := range SRVTargets(rrs) {
			addrs, err := d.addresses(ctx, t.Target)
			if err != nil {
				return nil, err
			}
			if len(addrs) == 0 {
				continue
			}
			out = append(out, Member{Name: t.Name, Role: r.Role, Address: addrs[0], Port: t.Port, Mode: r.Mode, Healthy: true})
		}
		return out, nil
	}
	addrs, err := d.addresses(ctx, r.Name)
	if err != nil {
		return nil, err
	}
	out := make([]Member, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, Member{Name: a.String(), Role: r.Role, Address: a, Mode: r.Mode, Healthy: true})
	}
	return out, nil
}

// SRVTarget is a target of an SRV answer: the member is named by its
// first label.
type SRVTarget struct {
	Target string // the host name to resolve
	Name   string // its first label, lower-case: the member's name
	Port   uint16
}

// SRVTargets reads the SRV records of a DNS answer: targets whose first
// label is a node name (lower-cased), with a port; "." (no service) and
// anything else are left out, so a resolver's answer never names a
// member with characters a node name may not have.
func SRVTargets(rrs []dns.RR) []SRVTarget {
	var out []SRVTarget
	for _, rr := range rrs {
		srv, ok := rr.(*dns.SRV)
		if !ok || srv.Target == "." {
			continue
		}
		label, _, _ := strings.Cut(strings.TrimSuffix(srv.Target, "."), ".")
		name := strings.ToLower(label)
		if !names.Node(name) {
			continue
		}
		out = append(out, SRVTarget{Target: srv.Target, Name: name, Port: srv.Port})
	}
	return out
}

// AnswerAddrs reads the A and AAAA records of a DNS answer: unicast
// addresses, IPv4 unmapped; others are left out.
func AnswerAddrs(rrs []dns.RR) []netip.Addr {
	var out []netip.Addr
	for _, rr := range rrs {
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		default:
			continue
		}
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		a = a.Unmap()
		if a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
			continue
		}
		out = append(out, a)
	}
	return out
}

// addresses returns the A then AAAA addresses of name.
func (d *DNS) addresses(ctx context.Context, name string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := d.query(ctx, name, t)
		if err != nil {
			return nil, err
		}
		out = append(out, AnswerAddrs(rrs)...)
	}
	return out, nil
}

// query asks for one record type; NXDOMAIN and NODATA are empty answers.
func (d *DNS) query(ctx context.Context, name string, t uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), t)
	m.RecursionDesired = true
	in, _, err := d.client.ExchangeContext(ctx, m, d.o.Resolver)
	if err != nil {
		return nil, fmt.Errorf("looking up %s %s at %s: %w", dns.TypeToString[t], name, d.o.Resolver, err)
	}
	if in.Truncated {
		tcp := &dns.Client{Net: "tcp", Timeout: d.o.Timeout}
		if in, _, err = tcp.ExchangeContext(ctx, m, d.o.Resolver); err != nil {
			return nil, fmt.Errorf("looking up %s %s over TCP at %s: %w", dns.TypeToString[t], name, d.o.Resolver, err)
		}
	}
	switch in.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		return in.Answer, nil
	default:
		return nil, fmt.Errorf("looking up %s %s at %s: %s", dns.TypeToString[t], name, d.o.Resolver, dns.RcodeToString[in.Rcode])
	}
}
