// Package agent is imgforge-agent's core: it reads the node's settings
// (package config), finds its peers (package discovery), and on every
// change hands a Snapshot to a Renderer, which writes the role's
// configuration and reloads its services. It keeps the last good state
// when anything fails, and reports what it did as JSON and Prometheus
// metrics over a local HTTP endpoint.
//
// The role renderers live elsewhere (package agent/render); this package
// defines what they receive (Snapshot) and how they report back
// (Reporter).
package agent

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/discovery"
)

// DefaultListen is where the status endpoint listens: loopback only.
const DefaultListen = "127.0.0.1:9477"

// Snapshot is everything a renderer needs: the validated settings, the
// node itself, and the live members by role (this node included, each
// role's list sorted by name).
type Snapshot struct {
	Config  *config.Config
	Self    discovery.Member
	Members discovery.Set
	// Draining says the node is leaving service (the control endpoint's
	// drain): it advertises itself unhealthy, and a role holding VIPs
	// renders them at the lowest priority so that its peers take them.
	Draining bool
}

// Renderer turns a snapshot into the role's configuration. It must leave
// the last good configuration in place when it fails.
type Renderer interface {
	Render(ctx context.Context, s Snapshot) error
}

// Reporter is implemented by a Renderer that can say what it manages; the
// status endpoint shows it.
type Reporter interface {
	Report() Report
}

// Report is what a renderer manages now.
type Report struct {
	Files      []RenderedFile `json:"files"`
	LastReload time.Time      `json:"last_reload,omitzero"` // when it last reloaded a service
	// Waiting says what could not be rendered yet and why (such as no db
	// primary among the members); those files are left as they are.
	Waiting []string `json:"waiting,omitempty"`
}

// RenderedFile is one file a renderer wrote.
type RenderedFile struct {
	Path    string    `json:"path"`
	SHA256  string    `json:"sha256,omitempty"` // hex, of the content in place; empty for Sensitive files
	Service string    `json:"service,omitempty"`
	Changed time.Time `json:"changed,omitzero"` // when the content last changed
	// Sensitive files hold keys or passwords: their digest is not shown.
	Sensitive bool `json:"sensitive,omitempty"`
}

// RetryAfter is implemented by a Renderer's error that says when to try
// again (a renderer backing off after failed reloads); other errors are
// retried after Options.RetryInterval.
type RetryAfter interface {
	RetryAfter() time.Duration
}

// RendererFunc adapts a function to Renderer.
type RendererFunc func(ctx context.Context, s Snapshot) error

// Render calls f.
func (f RendererFunc) Render(ctx context.Context, s Snapshot) error { return f(ctx, s) }

// Renderers runs renderers in order; the first error stops the run. Its
// report joins theirs.
type Renderers []Renderer

// Render runs each renderer.
func (rs Renderers) Render(ctx context.Context, s Snapshot) error {
	for _, r := range rs {
		if err := r.Render(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// Report joins the reports of the renderers that give one.
func (rs Renderers) Report() Report {
	var out Report
	for _, r := range rs {
		if rep, ok := r.(Reporter); ok {
			x := rep.Report()
			out.Files = append(out.Files, x.Files...)
			out.Waiting = append(out.Waiting, x.Waiting...)
			if x.LastReload.After(out.LastReload) {
				out.LastReload = x.LastReload
			}
		}
	}
	return out
}

// Options configure an Agent. Load and Renderer are required.
type Options struct {
	// Load reads and validates the settings (config.Load in the daemon).
	Load func() (*config.Config, error)
	// Discover starts discovery; default OpenDiscovery.
	Discover func(ctx context.Context, c *config.Config, self discovery.Member, logf func(string, ...any)) (discovery.Discoverer, error)
	Renderer Renderer
	// Health checks the role's service; nil means always healthy.
	Health         func(ctx context.Context) bool
	HealthInterval time.Duration // default 2s
	// HealthFall is how many checks in a row must fail before a healthy
	// node advertises itself unhealthy (default 3, as haproxy's fall): one
	// slow answer on a loaded machine does not take it out of its peers'
	// configuration. A failing node is healthy again at its first passing
	// check; a drain takes effect at once.
	HealthFall    int
	RetryInterval time.Duration // after a failed render; default 10s
	Debounce      time.Duration // gathers changes that come together; default 200ms
	// Resync renders again even without a change, so that what depends on
	// time (a self-signed certificate near its end) is renewed; default 6h.
	Resync  time.Duration
	Now     func() time.Time
	Logf    func(format string, args ...any)
	Version string
	// Reports reads the role's reports for /status and /metrics (nil:
	// none).
	Reports *ExporterReports
}

// Agent runs discovery and rendering for one node.
type Agent struct {
	o      Options
	reload chan struct{}
	drain  chan struct{}

	mu    sync.Mutex
	st    state
	ready chan struct{}
}

// state is what Status reports; guarded by Agent.mu.
type state struct {
	cfg          *config.Config
	self         discovery.Member
	members      discovery.Set
	method       string
	started      time.Time
	lastRender   time.Time
	lastError    string
	lastErrorAt  time.Time
	renders      uint64
	renderErrors uint64
	configErrors uint64
	changes      uint64
	draining     bool
	rendered     discovery.Set // members of the last snapshot rendered without error
}

// New makes an agent.
func New(o Options) *Agent {
	if o.Discover == nil {
		o.Discover = OpenDiscovery
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = 2 * time.Second
	}
	if o.HealthFall <= 0 {
		o.HealthFall = 3
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = 10 * time.Second
	}
	if o.Debounce <= 0 {
		o.Debounce = 200 * time.Millisecond
	}
	if o.Resync <= 0 {
		o.Resync = 6 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return &Agent{o: o, reload: make(chan struct{}, 1), drain: make(chan struct{}, 1), ready: make(chan struct{})}
}

// Reload asks the running agent to read its settings again (SIGHUP).
// Invalid settings are logged and counted, and the agent keeps running
// with the ones it has.
func (a *Agent) Reload() {
	select {
	case a.reload <- struct{}{}:
	default:
	}
}

// SetDraining takes the node out of service (true) or puts it back
// (false): the running agent advertises itself unhealthy while it drains
// and renders again with Snapshot.Draining set.
func (a *Agent) SetDraining(d bool) {
	a.mu.Lock()
	a.st.draining = d
	a.mu.Unlock()
	select {
	case a.drain <- struct{}{}:
	default:
	}
}

// Draining says whether the node is draining.
func (a *Agent) Draining() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.draining
}

// Config is the running settings; nil before Ready.
func (a *Agent) Config() *config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st.cfg
}

// Ready is closed once the agent has valid settings and runs discovery.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// SelfMember is the member a configuration describes: its mode is the
// node's mode option, if its role has one.
func SelfMember(c *config.Config, healthy bool) (discovery.Member, error) {
	p, err := config.ParseNodeAddress(c.Node.Address)
	if err != nil {
		return discovery.Member{}, err
	}
	// The mode is the node's mode option, which CompleteFromRole filled
	// from the role's declared default when the user-data left it out.
	return discovery.Member{Name: c.Node.Name, Role: c.Role, Address: p.Addr(), Mode: c.Mode(), Healthy: healthy}, nil
}

// healthSetter is implemented by discovery backends that advertise health.
type healthSetter interface{ SetHealthy(bool) error }

// Run loads the settings, starts discovery and renders on every change
// until ctx ends. Invalid settings at start are its error, before
// anything is rendered.
func (a *Agent) Run(ctx context.Context) error {
	if a.o.Load == nil || a.o.Renderer == nil {
		return errors.New("agent: Load and Renderer are required")
	}
	cfg, err := a.o.Load()
	if err != nil {
		a.mu.Lock()
		a.st.configErrors++
		a.mu.Unlock()
		return err
	}
	healthy := a.checkHealth(ctx) && !a.Draining()
	self, err := SelfMember(cfg, healthy)
	if err != nil {
		return err
	}
	disc, err := a.o.Discover(ctx, cfg, self, a.o.Logf)
	if err != nil {
		return fmt.Errorf("starting %s discovery: %w", cfg.Discovery.Method, err)
	}
	defer func() {
		if err := disc.Close(); err != nil {
			a.o.Logf("stopping discovery: %v", err)
		}
	}()
	a.mu.Lock()
	a.st.cfg, a.st.self, a.st.method, a.st.started = cfg, self, cfg.Discovery.Method, a.o.Now()
	a.st.members = disc.Members().With(self)
	a.mu.Unlock()
	close(a.ready)
	a.o.Logf("running as %s (%s, %s) in cluster %s, discovery %s", self.Name, self.Role, self.Address, cfg.Cluster, cfg.Discovery.Method)

	var (
		last     *Snapshot // last snapshot rendered without error
		fails    int       // health checks failed in a row
		pending  = true    // a render is due
		debounce = time.NewTimer(0)
		retry    = time.NewTimer(time.Hour)
		health   = time.NewTicker(a.o.HealthInterval)
		resync   = time.NewTicker(a.o.Resync)
	)
	retry.Stop()
	defer debounce.Stop()
	defer health.Stop()
	defer resync.Stop()
	render := func() {
		pending = false
		snap := Snapshot{Config: cfg, Self: self, Members: disc.Members().With(self), Draining: a.Draining()}
		a.mu.Lock()
		a.st.members = snap.Members
		a.mu.Unlock()
		if last != nil && last.Config == snap.Config && last.Self == snap.Self && last.Draining == snap.Draining && last.Members.Equal(snap.Members) {
			return
		}
		if err := a.o.Renderer.Render(ctx, snap); err != nil {
			if ctx.Err() != nil {
				return
			}
			a.recordError(fmt.Sprintf("rendering: %v", err), true)
			after := a.o.RetryInterval
			var ra RetryAfter
			if errors.As(err, &ra) && ra.RetryAfter() > 0 {
				after = ra.RetryAfter()
			}
			retry.Reset(after)
			return
		}
		last = &snap
		a.mu.Lock()
		a.st.rendered = snap.Members
		a.st.renders++
		a.st.lastRender = a.o.Now()
		a.mu.Unlock()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-disc.Changes():
			a.mu.Lock()
			a.st.changes++
			a.mu.Unlock()
			if !pending {
				pending = true
				debounce.Reset(a.o.Debounce)
			}
		case <-debounce.C:
			render()
		case <-retry.C:
			last = nil
			render()
		case <-resync.C:
			last = nil
			render()
		case <-health.C:
			ok := a.checkHealth(ctx)
			if ok {
				fails = 0
			} else {
				fails++
			}
			h := !a.Draining() && (ok || (self.Healthy && fails < a.o.HealthFall))
			if h == self.Healthy {
				continue
			}
			self.Healthy = h
			a.mu.Lock()
			a.st.self = self
			a.mu.Unlock()
			if hs, ok := disc.(healthSetter); ok {
				if err := hs.SetHealthy(h); err != nil {
					a.o.Logf("advertising health %v: %v", h, err)
				}
			}
			render()
		case <-a.drain:
			// Advertise the new health now, not at the next probe.
			self.Healthy = a.checkHealth(ctx) && !a.Draining()
			a.mu.Lock()
			a.st.self = self
			a.mu.Unlock()
			if hs, ok := disc.(healthSetter); ok {
				if err := hs.SetHealthy(self.Healthy); err != nil {
					a.o.Logf("advertising health %v: %v", self.Healthy, err)
				}
			}
			render()
		case <-a.reload:
			next, err := a.o.Load()
			if err != nil {
				a.recordError(err.Error(), false)
				continue
			}
			nextSelf, err := SelfMember(next, self.Healthy)
			if err != nil {
				a.recordError(err.Error(), false)
				continue
			}
			if nextSelf != self || next.Cluster != cfg.Cluster || !reflect.DeepEqual(next.Discovery, cfg.Discovery) || !reflect.DeepEqual(next.Identity, cfg.Identity) {
				a.recordError("the new settings change the node, cluster, discovery or identity, which takes a restart of imgforge-agent; keeping the running settings", false)
				continue
			}
			a.o.Logf("settings reloaded")
			cfg = next
			a.mu.Lock()
			a.st.cfg = cfg
			a.mu.Unlock()
			render()
		}
	}
}

func (a *Agent) checkHealth(ctx context.Context) bool {
	if a.o.Health == nil {
		return true
	}
	return a.o.Health(ctx)
}

// recordError logs one line and keeps it for the status endpoint.
func (a *Agent) recordError(msg string, render bool) {
	a.o.Logf("%s", msg)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.st.lastError, a.st.lastErrorAt = msg, a.o.Now()
	if render {
		a.st.renderErrors++
	} else {
		a.st.configErrors++
	}
}
