package discovery

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Roles are the roles a gossip member may advertise.
var Roles = []string{"lb", "web", "app", "db"}

var memberNameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Meta is what a member advertises in its memberlist node metadata.
type Meta struct {
	Cluster string `json:"c"`
	Role    string `json:"r"`
	Address string `json:"a"`
	Mode    string `json:"m,omitempty"`
	Healthy bool   `json:"h"`
}

// ParseMeta decodes and checks a member's metadata: a known role, the
// cluster's name, a unicast address equal to the one it gossips from.
func ParseMeta(cluster, name string, from net.IP, data []byte) (Meta, netip.Addr, error) {
	var m Meta
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, netip.Addr{}, fmt.Errorf("member %q: metadata is not imgforge's: %w", name, err)
	}
	if !memberNameRe.MatchString(name) {
		return m, netip.Addr{}, fmt.Errorf("member %q: not a node name", name)
	}
	if m.Cluster != cluster {
		return m, netip.Addr{}, fmt.Errorf("member %q: of cluster %q, not %q", name, m.Cluster, cluster)
	}
	if !slices.Contains(Roles, m.Role) {
		return m, netip.Addr{}, fmt.Errorf("member %q: unknown role %q", name, m.Role)
	}
	if m.Mode != "" && (m.Role != "db" || (m.Mode != "primary" && m.Mode != "replica")) {
		return m, netip.Addr{}, fmt.Errorf("member %q: mode %q for role %s", name, m.Mode, m.Role)
	}
	a, err := netip.ParseAddr(m.Address)
	if err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
		return m, netip.Addr{}, fmt.Errorf("member %q: garbage address %q", name, m.Address)
	}
	a = a.Unmap()
	if f, ok := netip.AddrFromSlice(from); ok && f.Unmap() != a {
		return m, netip.Addr{}, fmt.Errorf("member %q: advertises %s but gossips from %s", name, a, f.Unmap())
	}
	return m, a, nil
}

// GossipOptions configure gossip discovery.
type GossipOptions struct {
	Cluster  string
	Self     Member // its Address is bound and advertised
	Port     int    // TCP and UDP; 0 picks a free port (tests)
	Key      []byte // 32 bytes: AES-256-GCM for every message
	Join     []string
	JoinWait time.Duration // between join attempts while alone; default 2s
	Logf     func(format string, args ...any)
	// Tune adjusts the memberlist configuration after imgforge's LAN
	// defaults (tests and benchmarks use it).
	Tune func(*memberlist.Config)
}

// LANConfig is memberlist's LAN configuration tuned so that members see
// joins within about a second and failures within a few: faster gossip
// and probes than memberlist's defaults, a shorter push/pull interval.
func LANConfig() *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	c.GossipInterval = 100 * time.Millisecond
	c.ProbeInterval = 500 * time.Millisecond
	c.ProbeTimeout = 250 * time.Millisecond
	c.SuspicionMult = 4
	c.PushPullInterval = 10 * time.Second
	c.TCPTimeout = 2 * time.Second
	c.DeadNodeReclaimTime = 10 * time.Second
	return c
}

// Gossip is discovery through an encrypted memberlist cluster.
type Gossip struct {
	notifier
	o       GossipOptions
	ml      *memberlist.Memberlist
	meta    atomic.Pointer[[]byte]
	mu      sync.Mutex
	healthy bool
	cancel  context.CancelFunc
	done    chan struct{}
	closed  atomic.Bool
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
	g := &Gossip{o: o, healthy: o.Self.Healthy, done: make(chan struct{})}
	if err := g.setMeta(o.Self.Healthy); err != nil {
		return nil, err
	}
	c := LANConfig()
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
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("gossip: starting on %s: %w", net.JoinHostPort(c.BindAddr, strconv.Itoa(o.Port)), err)
	}
	g.ml = ml
	ctx, g.cancel = context.WithCancel(ctx)
	go g.joinLoop(ctx)
	return g, nil
}

func (g *Gossip) setMeta(healthy bool) error {
	b, err := json.Marshal(Meta{Cluster: g.o.Cluster, Role: g.o.Self.Role, Address: g.o.Self.Address.String(), Mode: g.o.Self.Mode, Healthy: healthy})
	if err != nil {
		return err
	}
	if len(b) > memberlist.MetaMaxSize {
		return fmt.Errorf("gossip: metadata of %d bytes is over memberlist's %d", len(b), memberlist.MetaMaxSize)
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
	for _, n := range g.ml.Members() {
		m, a, err := ParseMeta(g.o.Cluster, n.Name, n.Addr, n.Meta)
		if err != nil {
			continue // rejected when it arrived; kept out here too
		}
		out = append(out, Member{Name: n.Name, Role: m.Role, Address: a, Mode: m.Mode, Healthy: m.Healthy})
	}
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

// NotifyAlive rejects a member whose metadata is not a valid imgforge
// member of this cluster: it never becomes a peer.
func (d *gossipDelegate) NotifyAlive(n *memberlist.Node) error {
	if _, _, err := ParseMeta(d.o.Cluster, n.Name, n.Addr, n.Meta); err != nil {
		d.o.Logf("gossip: rejecting %v", err)
		return err
	}
	return nil
}

// NotifyMerge refuses a push/pull from a peer that knows an invalid member.
func (d *gossipDelegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if _, _, err := ParseMeta(d.o.Cluster, n.Name, n.Addr, n.Meta); err != nil {
			d.o.Logf("gossip: refusing a merge: %v", err)
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
	if bytes.Contains(p, []byte("[WARN]")) || bytes.Contains(p, []byte("[ERR]")) {
		w("%s", line)
	}
	return len(p), nil
}
