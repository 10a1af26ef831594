package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/imgforge/imgforge/pkg/agent/identity"
)

// GossipOptions configure gossip discovery.
type GossipOptions struct {
	Cluster string
	Self    Member // its Address is bound and advertised
	Port    int    // TCP and UDP; 0 picks a free port (tests)
	Key     []byte // 32 bytes: AES-256-GCM for every message
	// Identity is this node's certificate and key; the members sign their
	// metadata with theirs and take only members whose certificates their
	// CA issued for the name and role they claim.
	Identity *identity.Node
	// Now is the clock certificates are checked at; default time.Now.
	Now      func() time.Time
	Join     []string
	JoinWait time.Duration // between join attempts while alone; default 2s
	Logf     func(format string, args ...any)
	// Profile is the memberlist tuning: ProfileLAN (also "") or
	// ProfileLarge.
	Profile string
	// Tune adjusts the memberlist configuration after imgforge's LAN
	// defaults (tests and benchmarks use it).
	Tune func(*memberlist.Config)
}

// The gossip profiles (imgforge.discovery.gossip.profile): lan, the
// default, detects failures within seconds in clusters of up to a few
// hundred members; large trades slower failure detection for members that
// stay members when they are short of CPU, and less traffic, in clusters of
// hundreds to thousands. docs/performance.md ("Gossip at scale") has the
// measurements behind them.
const (
	ProfileLAN   = "lan"
	ProfileLarge = "large"
)

// Profiles lists the accepted profiles.
var Profiles = []string{ProfileLAN, ProfileLarge}

// GossipConfig returns the memberlist configuration of a profile; "" is
// lan.
func GossipConfig(profile string) (*memberlist.Config, error) {
	switch profile {
	case "", ProfileLAN:
		return LANConfig(), nil
	case ProfileLarge:
		return LargeConfig(), nil
	}
	return nil, fmt.Errorf("unknown gossip profile %q; accepted: %s", profile, strings.Join(Profiles, ", "))
}

// LANConfig is memberlist's LAN configuration tuned so that members see
// joins within about a second and failures within a few: faster gossip
// than memberlist's defaults and a shorter push/pull interval. Probes keep
// memberlist's timings (every second, 500 ms to answer): with 250 ms, the
// six VMs of the cluster test on 2 cores each refuted a suspicion of
// themselves every 10 to 15 s, every one gossiped to all. It
// does not compress: the messages are small and mostly signatures and
// certificates, and compressing them (LZW, with a fresh 64 KiB table per
// message) was a third of the CPU of a busy cluster. Receivers decompress
// whatever arrives compressed, so members of either setting mix.
func LANConfig() *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	c.GossipInterval = 100 * time.Millisecond
	c.ProbeInterval = time.Second
	c.ProbeTimeout = 500 * time.Millisecond
	c.SuspicionMult = 4
	c.PushPullInterval = 10 * time.Second
	c.TCPTimeout = 2 * time.Second
	c.DeadNodeReclaimTime = 10 * time.Second
	c.EnableCompression = false
	return c
}

// LargeConfig is the large profile: LANConfig with probes every 2 s that
// allow a member 1.5 s to answer (lan: 500 ms, which members short of CPU
// miss, and are declared dead, refute it, and flood the cluster with the
// news), twice lan's suspicion, gossip every 200 ms to 4 members, and a
// full state sync every 30 s (memberlist lengthens both suspicion and sync
// with the size of the cluster).
func LargeConfig() *memberlist.Config {
	c := LANConfig()
	c.ProbeInterval = 2 * time.Second
	c.ProbeTimeout = 1500 * time.Millisecond
	c.SuspicionMult = 8
	c.GossipInterval = 200 * time.Millisecond
	c.GossipNodes = 4
	c.PushPullInterval = 30 * time.Second
	return c
}

// Gossip is discovery through an encrypted memberlist cluster.
type Gossip struct {
	notifier
	o       GossipOptions
	ml      *memberlist.Memberlist
	verify  *MetaVerifier
	checked metaCache
	refused refusals
	// starting is set while memberlist.Create runs: it takes the local
	// node's own metadata before its port is known.
	starting atomic.Bool
	meta     atomic.Pointer[[]byte]
	mu       sync.Mutex
	healthy  bool
	cancel   context.CancelFunc
	done     chan struct{}
	closed   atomic.Bool
}

var _ Discoverer = (*Gossip)(nil)

// NewGossip starts a member, then joins the others in the background:
// while it knows no other member it tries the join addresses every
// JoinWait, so nodes may boot in any order.
func NewGossip(ctx context.Context, o GossipOptions) (*Gossip, error) {
	if len(o.Key) != 32 {
		return nil, fmt.Errorf("gossip: the key is %d bytes; 32 are needed", len(o.Key))
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.JoinWait <= 0 {
		o.JoinWait = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	id := o.Identity
	if id == nil {
		return nil, errors.New("gossip: the node has no identity (imgforge.identity: its certificate and key from the cluster CA)")
	}
	if id.Cluster != o.Cluster || id.Name != o.Self.Name || id.Role != o.Self.Role {
		return nil, fmt.Errorf("gossip: this node is %s (%s) of cluster %s, but its certificate names %s", o.Self.Name, o.Self.Role, o.Cluster, id.Claims)
	}
	g := &Gossip{o: o, healthy: o.Self.Healthy, done: make(chan struct{})}
	ca := identity.NewVerifier(id.CA)
	g.verify = NewMetaVerifier(ca, o.Now)
	if _, _, err := ca.Verify(id.Cert.Raw, o.Now()); err != nil {
		o.Logf("gossip: WARNING: this node's own certificate does not verify now, so the other members will refuse it: %v", err)
	}
	if err := g.setMeta(o.Self.Healthy); err != nil {
		return nil, err
	}
	c, err := GossipConfig(o.Profile)
	if err != nil {
		return nil, fmt.Errorf("gossip: %w", err)
	}
	c.Name = o.Self.Name
	c.BindAddr = o.Self.Address.String()
	c.BindPort = o.Port
	c.AdvertiseAddr = o.Self.Address.String()
	c.AdvertisePort = o.Port
	c.SecretKey = slices.Clone(o.Key)
	c.Label = "imgforge/" + o.Cluster
	c.Delegate = (*gossipDelegate)(g)
	c.Events = (*gossipDelegate)(g)
	c.Alive = (*gossipDelegate)(g)
	c.Merge = (*gossipDelegate)(g)
	c.Conflict = (*gossipDelegate)(g)
	c.Logger = log.New(logWriter(o.Logf), "", 0)
	if o.Tune != nil {
		o.Tune(c)
	}
	g.starting.Store(true)
	ml, err := memberlist.Create(c)
	g.starting.Store(false)
	if err != nil {
		return nil, fmt.Errorf("gossip: starting on %s: %w", net.JoinHostPort(c.BindAddr, strconv.Itoa(o.Port)), err)
	}
	g.ml = ml
	if o.Port == 0 {
		// The port was picked when memberlist started: sign it now.
		if err := g.setMeta(o.Self.Healthy); err != nil {
			_ = ml.Shutdown()
			return nil, err
		}
		if err := ml.UpdateNode(0); err != nil {
			_ = ml.Shutdown()
			return nil, fmt.Errorf("gossip: %w", err)
		}
	}
	ctx, g.cancel = context.WithCancel(ctx)
	go g.joinLoop(ctx)
	return g, nil
}

func (g *Gossip) setMeta(healthy bool) error {
	port := g.o.Port
	if g.ml != nil {
		port = int(g.ml.LocalNode().Port)
	}
	b, err := EncodeMeta(g.o.Identity, Meta{Role: g.o.Self.Role, Address: g.o.Self.Address, Port: uint16(port), Mode: g.o.Self.Mode, Healthy: healthy})
	if err != nil {
		return fmt.Errorf("gossip: %w", err)
	}
	g.meta.Store(&b)
	return nil
}

func (g *Gossip) joinLoop(ctx context.Context) {
	defer close(g.done)
	if len(g.o.Join) == 0 {
		return
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if g.ml.NumMembers() <= 1 {
			if n, err := g.ml.Join(g.o.Join); err != nil && n == 0 {
				g.o.Logf("gossip: joining %v: %s; trying again in %s", g.o.Join, strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " "), g.o.JoinWait)
			}
		}
		t.Reset(g.o.JoinWait)
	}
}

// Addr is where the member listens.
func (g *Gossip) Addr() netip.AddrPort {
	n := g.ml.LocalNode()
	a, _ := netip.AddrFromSlice(n.Addr)
	return netip.AddrPortFrom(a.Unmap(), n.Port)
}

// SetHealthy changes the health this member advertises.
func (g *Gossip) SetHealthy(h bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if h == g.healthy {
		return nil
	}
	if err := g.setMeta(h); err != nil {
		return err
	}
	g.healthy = h
	return g.ml.UpdateNode(2 * time.Second)
}

// Members returns the live members, this one included.
func (g *Gossip) Members() Set {
	var out []Member
	nodes := g.ml.Members()
	for _, n := range nodes {
		m, err := g.check(n)
		if err != nil {
			continue // refused when it arrived; kept out here too
		}
		out = append(out, Member{Name: n.Name, Role: m.Role, Address: m.Address, Mode: m.Mode, Healthy: m.Healthy, Verified: true})
	}
	g.checked.prune(nodes)
	return NewSet(out)
}

// Close leaves the cluster (the others drop this member at once) and
// stops.
func (g *Gossip) Close() error {
	if g.closed.Swap(true) {
		return nil
	}
	g.cancel()
	<-g.done
	err := g.ml.Leave(2 * time.Second)
	if serr := g.ml.Shutdown(); err == nil {
		err = serr
	}
	return err
}

// Kill stops the member without leaving, as a crash or power loss would;
// the others find out by probing.
func (g *Gossip) Kill() error {
	if g.closed.Swap(true) {
		return nil
	}
	g.cancel()
	<-g.done
	return g.ml.Shutdown()
}

// gossipDelegate holds memberlist's callbacks.
type gossipDelegate Gossip

func (d *gossipDelegate) NodeMeta(limit int) []byte {
	b := *d.meta.Load()
	if len(b) > limit {
		return nil
	}
	return b
}
func (d *gossipDelegate) NotifyMsg([]byte)                           {}
func (d *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *gossipDelegate) LocalState(join bool) []byte                { return nil }
func (d *gossipDelegate) MergeRemoteState(buf []byte, join bool)     {}

func (d *gossipDelegate) NotifyJoin(*memberlist.Node)   { (*Gossip)(d).notify() }
func (d *gossipDelegate) NotifyLeave(*memberlist.Node)  { (*Gossip)(d).notify() }
func (d *gossipDelegate) NotifyUpdate(*memberlist.Node) { (*Gossip)(d).notify() }

// NotifyAlive refuses a member whose signed metadata does not verify: it
// never becomes a peer.
func (d *gossipDelegate) NotifyAlive(n *memberlist.Node) error {
	if d.starting.Load() && n.Name == d.o.Self.Name {
		return nil // this node, while memberlist starts
	}
	if _, err := (*Gossip)(d).check(n); err != nil {
		(*Gossip)(d).refuse(err, "refusing")
		return err
	}
	return nil
}

// NotifyMerge refuses a push/pull from a peer that knows an invalid member.
func (d *gossipDelegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if _, err := (*Gossip)(d).check(n); err != nil {
			(*Gossip)(d).refuse(err, "refusing a merge with")
			return err
		}
	}
	return nil
}

func (d *gossipDelegate) NotifyConflict(existing, other *memberlist.Node) {
	d.o.Logf("gossip: two members are named %q: %s and %s", existing.Name, existing.Address(), other.Address())
}

// logWriter passes memberlist's warnings and errors to logf and drops its
// debug and info lines.
type logWriter func(format string, args ...any)

func (w logWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	// The delegate logs the members it refuses, once per member and reason.
	if bytes.Contains(p, []byte("ignoring alive message for")) || bytes.Contains(p, []byte("push/pull merge: member \"")) {
		return len(p), nil
	}
	if bytes.Contains(p, []byte("[WARN]")) || bytes.Contains(p, []byte("[ERR]")) {
		w("%s", line)
	}
	return len(p), nil
}

// check verifies a member's metadata, remembering what verified so that
// the same bytes are not verified again until its certificate ends.
func (g *Gossip) check(n *memberlist.Node) (Meta, error) {
	key := checkKey(n)
	now := g.o.Now()
	if m, ok := g.checked.get(key, now); ok {
		return m, nil
	}
	m, cert, err := g.verify.ParseMeta(n.Name, n.Addr, n.Port, n.Meta)
	if err != nil {
		return Meta{}, err
	}
	g.checked.put(key, m, cert.NotAfter)
	return m, nil
}

func checkKey(n *memberlist.Node) string {
	return fmt.Sprintf("%s\x00%s\x00%d\x00%s", n.Name, n.Addr, n.Port, n.Meta)
}

// refuse logs a refused member once per member and reason every
// refuseEvery; the metadata itself (a certificate, never a key) is not
// logged.
func (g *Gossip) refuse(err error, what string) {
	var me *MetaError
	key := err.Error()
	if errors.As(err, &me) {
		key = me.Member + "\x00" + me.Reason
	}
	if g.refused.first(key, g.o.Now()) {
		g.o.Logf("gossip: %s %v", what, err)
	}
}

const refuseEvery = 10 * time.Minute

// refusals remembers when each member and reason was last logged.
type refusals struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (r *refusals) first(key string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil || len(r.last) > 1024 {
		r.last = map[string]time.Time{}
	}
	if t, ok := r.last[key]; ok && now.Sub(t) < refuseEvery {
		return false
	}
	r.last[key] = now
	return true
}

// metaCache holds metadata that verified, until its certificate ends.
type metaCache struct {
	mu sync.Mutex
	m  map[string]cachedMeta
}

type cachedMeta struct {
	meta  Meta
	until time.Time
}

func (c *metaCache) get(key string, now time.Time) (Meta, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.until) {
		return Meta{}, false
	}
	return e.meta, true
}

func (c *metaCache) put(key string, m Meta, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 4096 {
		c.m = map[string]cachedMeta{}
	}
	c.m[key] = cachedMeta{meta: m, until: until}
}

// prune keeps the entries of the current members only.
func (c *metaCache) prune(nodes []*memberlist.Node) {
	keep := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		keep[checkKey(n)] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if !keep[k] {
			delete(c.m, k)
		}
	}
}
