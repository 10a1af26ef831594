package rollout

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/discovery"
	"github.com/imgforge/imgforge/pkg/agent/identity"
	"github.com/imgforge/imgforge/pkg/agent/update"
)

// The test cluster: in-process nodes, each a real agent (agent.Agent)
// with a real control endpoint (agent.Control over mutual TLS on
// loopback, certificates from a real cluster CA), sharing an in-memory
// discovery bus that carries health as gossip does. An update only
// records the source; the "reboot" stops the node's agent and endpoint
// and starts them again on the new version, or on the old one for a
// source that fails its boot (a rollback).

// bus is shared discovery: every node sees every running node.
type bus struct {
	mu      sync.Mutex
	members map[string]discovery.Member
	subs    map[*busDisc]bool
}

type busDisc struct {
	b    *bus
	name string
	ch   chan struct{}
}

func (b *bus) join(m discovery.Member) *busDisc {
	b.mu.Lock()
	d := &busDisc{b: b, name: m.Name, ch: make(chan struct{}, 1)}
	b.members[m.Name] = m
	b.subs[d] = true
	b.mu.Unlock()
	b.notify()
	return d
}

func (b *bus) notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for d := range b.subs {
		select {
		case d.ch <- struct{}{}:
		default:
		}
	}
}

func (d *busDisc) Members() discovery.Set {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	var ms []discovery.Member
	for _, m := range d.b.members {
		ms = append(ms, m)
	}
	return discovery.NewSet(ms)
}
func (d *busDisc) Changes() <-chan struct{} { return d.ch }
func (d *busDisc) Close() error {
	d.b.mu.Lock()
	delete(d.b.members, d.name)
	delete(d.b.subs, d)
	d.b.mu.Unlock()
	d.b.notify()
	return nil
}
func (d *busDisc) SetHealthy(h bool) error {
	d.b.mu.Lock()
	m := d.b.members[d.name]
	m.Healthy = h
	d.b.members[d.name] = m
	d.b.mu.Unlock()
	d.b.notify()
	return nil
}

// roleDiscovers is what each test role's role.json discovers.
var roleDiscovers = map[string][]string{"lb": {"lb", "web"}, "web": {"app"}, "app": {"db"}, "db": nil}

type testCluster struct {
	t     *testing.T
	ca    *identity.CA
	caPEM []byte
	bus   *bus
	nodes map[string]*testNode
	// versions of the sources; a source in bad fails its boot.
	versions map[string]string
	bad      map[string]bool

	mu      sync.Mutex
	out     map[string]map[string]bool // role -> nodes out of service (drained until their agent is up again)
	maxOut  map[string]int
	drains  []string
	onBoot  func(n *testNode) // called while a node reboots
	downFor time.Duration
	// Each lb node holds a VIP until vipMove after its drain; updates
	// that reached a node still holding one.
	vipMove        time.Duration
	drainedAt      map[string]time.Time
	updatedHolding []string
	// writtenOut are nodes whose slot was written while out of service
	// (not staged before their drain).
	writtenOut []string
	// events: "stage NAME", "drain NAME" and "up NAME" (back after its
	// reboot), in order.
	events []string
}

type testNode struct {
	c       *testCluster
	name    string
	role    string
	n       int
	addr    string
	version string
	pending string   // the version written by the update, booted next
	staged  string   // the version a staging update wrote
	tries   []string // each update request's tries/trial (not staging ones)
	stop    func()
}

func newTestCluster(t *testing.T, layout map[string]int) *testCluster {
	certPEM, keyPEM, err := identity.NewCA(rand.Reader, "shop", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, ca: ca, caPEM: certPEM, bus: &bus{members: map[string]discovery.Member{}, subs: map[*busDisc]bool{}},
		nodes: map[string]*testNode{}, versions: map[string]string{"v2": "222222222222", "v3": "333333333333"},
		bad: map[string]bool{"v3": true}, out: map[string]map[string]bool{}, maxOut: map[string]int{}, downFor: 50 * time.Millisecond,
		vipMove: 100 * time.Millisecond, drainedAt: map[string]time.Time{}}
	i := 0
	for _, role := range []string{"lb", "web", "app", "db"} {
		for j := 1; j <= layout[role]; j++ {
			i++
			n := &testNode{c: c, name: fmt.Sprintf("%s-%d", role, j), role: role, n: i, version: "111111111111"}
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			n.addr = l.Addr().String()
			c.nodes[n.name] = n
			n.boot(l)
		}
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			c.mu.Lock()
			stop := n.stop
			c.mu.Unlock()
			if stop != nil {
				stop()
			}
		}
	})
	return c
}

// boot starts the node's agent and control endpoint on l.
func (n *testNode) boot(l net.Listener) {
	t := n.c.t
	certPEM, keyPEM, err := n.c.ca.Issue(rand.Reader, n.role, n.name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	id, err := identity.ParseNode(n.c.caPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Cluster: "shop", Role: n.role, Node: config.Node{Name: n.name, Address: fmt.Sprintf("10.0.0.%d/24", n.n)}, Discovery: config.Discovery{Method: "test"}}
	a := agent.New(agent.Options{
		Load: func() (*config.Config, error) { return cfg, nil },
		Discover: func(ctx context.Context, _ *config.Config, self discovery.Member, _ func(string, ...any)) (discovery.Discoverer, error) {
			return n.c.bus.join(self), nil
		},
		Renderer:       agent.RendererFunc(func(context.Context, agent.Snapshot) error { return nil }),
		Debounce:       5 * time.Millisecond,
		HealthInterval: 10 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = a.Run(ctx); done <- struct{}{} }()
	ctl, err := agent.NewControl(agent.ControlOptions{
		Identity: id, Agent: a, Discovers: roleDiscovers[n.role],
		Image: func() (agent.Image, error) {
			n.c.mu.Lock()
			defer n.c.mu.Unlock()
			return agent.Image{Role: n.role, Version: n.version, Slot: "a"}, nil
		},
		HeldVIPs: n.heldVIPs,
		Update: func(_ context.Context, req agent.UpdateRequest) (agent.UpdateResponse, error) {
			source := req.Source
			held := n.heldVIPs()
			n.c.mu.Lock()
			if !req.Stage {
				n.tries = append(n.tries, fmt.Sprintf("%d/%s", req.Tries, req.Trial))
			}
			if len(held) > 0 && !req.Stage {
				n.c.updatedHolding = append(n.c.updatedHolding, n.name)
			}
			n.c.mu.Unlock()
			v, ok := n.c.versions[source]
			if !ok {
				return agent.UpdateResponse{}, fmt.Errorf("no image at %s", source)
			}
			n.c.mu.Lock()
			defer n.c.mu.Unlock()
			if v == n.version {
				return agent.UpdateResponse{}, update.ErrActive
			}
			if req.Stage {
				n.c.events = append(n.c.events, "stage "+n.name)
				n.staged = v
				return agent.UpdateResponse{Slot: "b", Role: n.role, Version: v, Staged: true}, nil
			}
			reused := n.staged == v
			if !reused {
				n.c.writtenOut = append(n.c.writtenOut, n.name)
			}
			n.pending, n.staged = v, ""
			return agent.UpdateResponse{Slot: "b", Role: n.role, Version: v, Reused: reused}, nil
		},
		Reboot:      func() error { go n.reboot(); return nil },
		RebootDelay: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = agent.ServeControl(ctx, l, ctl); done <- struct{}{} }()
	n.c.mu.Lock()
	n.stop = func() { cancel(); <-done; <-done }
	n.c.mu.Unlock()
	<-a.Ready()
}

// heldVIPs: an lb node holds its VIP until vipMove after its drain (its
// peers take it over), and again once it has rebooted.
func (n *testNode) heldVIPs() []string {
	n.c.mu.Lock()
	defer n.c.mu.Unlock()
	at, drained := n.c.drainedAt[n.name]
	if n.role != "lb" || (drained && time.Since(at) >= n.c.vipMove) {
		return nil
	}
	return []string{fmt.Sprintf("10.0.0.%d", 100+n.n)}
}

// reboot stops the node and boots its pending version (the old one when
// that fails its boot), on the same address.
func (n *testNode) reboot() {
	c := n.c
	c.mu.Lock()
	stop := n.stop
	n.stop = nil
	c.mu.Unlock()
	stop()
	if c.onBoot != nil {
		c.onBoot(n)
	}
	time.Sleep(c.downFor)
	c.mu.Lock()
	failed := false
	for src, v := range c.versions {
		if v == n.pending && c.bad[src] {
			failed = true
		}
	}
	if !failed && n.pending != "" {
		n.version = n.pending
	}
	n.pending = ""
	delete(c.drainedAt, n.name)
	c.mu.Unlock()
	var l net.Listener
	var err error
	for range 100 {
		if l, err = net.Listen("tcp", n.addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		c.t.Errorf("%s: listening again: %v", n.name, err)
		return
	}
	n.boot(l)
	c.mu.Lock()
	delete(c.out[n.role], n.name)
	c.events = append(c.events, "up "+n.name)
	c.mu.Unlock()
}

// countingClient records drains: how many nodes of the role were out of
// service at once.
type countingClient struct {
	*agent.ControlClient
	c    *testCluster
	node *testNode
}

func (cc countingClient) Drain(ctx context.Context) (agent.ControlStatus, error) {
	c := cc.c
	c.mu.Lock()
	if c.out[cc.node.role] == nil {
		c.out[cc.node.role] = map[string]bool{}
	}
	c.out[cc.node.role][cc.node.name] = true
	c.maxOut[cc.node.role] = max(c.maxOut[cc.node.role], len(c.out[cc.node.role]))
	c.drains = append(c.drains, cc.node.name)
	c.events = append(c.events, "drain "+cc.node.name)
	c.drainedAt[cc.node.name] = time.Now()
	c.mu.Unlock()
	return cc.ControlClient.Drain(ctx)
}

func (cc countingClient) Undrain(ctx context.Context) (agent.ControlStatus, error) {
	st, err := cc.ControlClient.Undrain(ctx)
	if err == nil {
		cc.c.mu.Lock()
		delete(cc.c.out[cc.node.role], cc.node.name)
		cc.c.mu.Unlock()
	}
	return st, err
}

// options are rollout options for the cluster, dialling with an
// operator certificate (or client, when given).
func (c *testCluster) options(state string, client *tls.Certificate, images ...Image) Options {
	op := client
	if op == nil {
		cert, err := c.ca.IssueOperator(rand.Reader, "test", time.Now(), time.Hour)
		if err != nil {
			c.t.Fatal(err)
		}
		op = &cert
	}
	var nodes []Node
	for _, role := range []string{"lb", "web", "app", "db"} {
		for j := 1; ; j++ {
			n, ok := c.nodes[fmt.Sprintf("%s-%d", role, j)]
			if !ok {
				break
			}
			nodes = append(nodes, Node{Name: n.name, Role: n.role, Addr: n.addr})
		}
	}
	return Options{
		Nodes: nodes, Images: images, StatePath: state,
		Dial: func(n Node) Client {
			return countingClient{ControlClient: agent.NewControlClient(n.Addr, n.Name, c.ca.Cert, *op), c: c, node: c.nodes[n.Name]}
		},
		Timeout: 10 * time.Second, DrainTimeout: 5 * time.Second, DrainGrace: time.Millisecond, Poll: 10 * time.Millisecond,
		Logf: c.t.Logf,
	}
}

func (c *testCluster) versionOf(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name].version
}

func (c *testCluster) check(t *testing.T, want map[string]string) {
	t.Helper()
	var bad []string
	for name, v := range want {
		if got := c.versionOf(name); got != v {
			bad = append(bad, fmt.Sprintf("%s on %s, want %s", name, got, v))
		}
	}
	if len(bad) > 0 {
		t.Errorf("versions: %s", strings.Join(bad, "; "))
	}
}

func (c *testCluster) nodeCert(n *testNode) (tls.Certificate, error) {
	certPEM, keyPEM, err := c.ca.Issue(rand.Reader, n.role, n.name, time.Now())
	if err != nil {
		return tls.Certificate{}, err
	}
	id, err := identity.ParseNode(c.caPEM, certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	return id.TLSCertificate(), nil
}

func (n *testNode) status(t *testing.T, c *testCluster) (agent.ControlStatus, error) {
	op, err := c.ca.IssueOperator(rand.Reader, "test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return agent.NewControlClient(n.addr, n.name, c.ca.Cert, op).Status(t.Context())
}
