// Package discovery tells a node which peers of its cluster are alive, by
// role, and when that changes.
//
// One small interface, Discoverer, has three backends: Static (a fixed
// list from boot data), DNS (A/AAAA and SRV records, polled) and Gossip
// (an encrypted hashicorp/memberlist cluster whose members advertise their
// role, address and health in node metadata, signed with their node keys
// and checked against the cluster CA: see meta.go). Only gossip verifies
// who a member is; static members are the seed's word, DNS members the
// resolver's. The package knows nothing about rendering: package agent
// turns a Set into configuration.
package discovery

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
)

// Member is one node of the cluster as discovery sees it.
type Member struct {
	Name    string     `json:"name"`
	Role    string     `json:"role"`
	Address netip.Addr `json:"address"`
	Port    uint16     `json:"port,omitempty"` // from an SRV record; 0: the role's usual port
	Mode    string     `json:"mode,omitempty"` // db: primary or replica
	Healthy bool       `json:"healthy"`
	// Verified: gossip checked the member's certificate from the cluster
	// CA, which names its role and name. Static and DNS members are
	// taken on the word of the seed and of the resolver.
	Verified bool `json:"verified,omitempty"`
}

// Set is the live members by role; each list is sorted by name (then
// address), so two equal sets render the same text.
type Set map[string][]Member

// NewSet groups members by role and sorts them.
func NewSet(ms []Member) Set {
	s := Set{}
	for _, m := range ms {
		s[m.Role] = append(s[m.Role], m)
	}
	for _, l := range s {
		slices.SortFunc(l, func(a, b Member) int {
			return cmp.Or(cmp.Compare(a.Name, b.Name), a.Address.Compare(b.Address), cmp.Compare(a.Port, b.Port))
		})
	}
	return s
}

// Role returns the members of role r.
func (s Set) Role(r string) []Member { return s[r] }

// All returns every member, by role then name.
func (s Set) All() []Member {
	var out []Member
	roles := make([]string, 0, len(s))
	for r := range s {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	for _, r := range roles {
		out = append(out, s[r]...)
	}
	return out
}

// Len is the number of members.
func (s Set) Len() int {
	n := 0
	for _, l := range s {
		n += len(l)
	}
	return n
}

// With returns a copy of s with m added, replacing a member of the same
// name (the agent adds itself with its current health this way).
func (s Set) With(m Member) Set {
	var all []Member
	for _, x := range s.All() {
		if x.Name != m.Name {
			all = append(all, x)
		}
	}
	return NewSet(append(all, m))
}

// Equal reports whether two sets hold the same members.
func (s Set) Equal(o Set) bool {
	return slices.Equal(s.All(), o.All())
}

// Discoverer is a running discovery backend.
type Discoverer interface {
	// Members returns the live members known now.
	Members() Set
	// Changes receives a value after the members changed; changes that
	// come faster than they are read are coalesced into one.
	Changes() <-chan struct{}
	// Close stops discovery (a gossip member leaves the cluster first).
	Close() error
}

// notifier is the coalescing change channel every backend uses.
type notifier struct {
	once sync.Once
	ch   chan struct{}
}

func (n *notifier) init() { n.once.Do(func() { n.ch = make(chan struct{}, 1) }) }

func (n *notifier) Changes() <-chan struct{} { n.init(); return n.ch }

func (n *notifier) notify() {
	n.init()
	select {
	case n.ch <- struct{}{}:
	default:
	}
}

// Static is a fixed list of members: it never changes.
type Static struct {
	notifier
	set Set
}

var _ Discoverer = (*Static)(nil)

// NewStatic returns the members as a Discoverer; they are taken as healthy
// (the services' own checks, such as HAProxy's, decide beyond that).
func NewStatic(ms []Member) *Static {
	cp := slices.Clone(ms)
	for i := range cp {
		cp[i].Healthy = true
	}
	return &Static{set: NewSet(cp)}
}

// Members returns the list.
func (s *Static) Members() Set { return s.set }

// Close does nothing.
func (s *Static) Close() error { return nil }
