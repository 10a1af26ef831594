package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/discovery"
	"github.com/imgforge/imgforge/pkg/agent/render"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// Where the role renderer reads on a node.
const (
	// TemplatesDir holds ROLE/ and common/ templates (roles/*.yaml and
	// images/default.yaml put them there).
	TemplatesDir = "/usr/share/imgforge/templates"
	// MemInfoPath gives the machine's RAM (the templates' memory function).
	MemInfoPath = "/proc/meminfo"
)

// Backoff after a failed render or apply of the same input.
const (
	DefaultMinBackoff = 10 * time.Second
	DefaultMaxBackoff = 5 * time.Minute
)

// RoleRenderer is the Renderer of the node's role: it turns a Snapshot
// into a render.Input, renders the role's and the monitoring's files with
// package render and applies them (checked, atomically, reloading only
// what changed). It reports the files it manages, without the digests of
// sensitive ones.
//
// A failed render or apply is not tried again with the same input before
// a backoff, from MinBackoff doubling up to MaxBackoff, so a service that
// fails to reload is not restarted every few seconds; its error says when
// (RetryAfter), and a different input is tried at once.
type RoleRenderer struct {
	// Role is the image's role.json: which roles are discovered, whether
	// the role holds the VIPs, and (through Renderer.Role) what is
	// rendered.
	Role     *imagemeta.RoleInfo
	Renderer *render.Renderer
	Applier  *render.Applier
	// ReadFile reads MemInfoPath (os.ReadFile on a node): the machine's
	// RAM, for the templates' memory function.
	ReadFile   func(name string) ([]byte, error)
	Now        func() time.Time
	MinBackoff time.Duration
	MaxBackoff time.Duration

	mu         sync.Mutex
	files      map[string]RenderedFile
	order      []string
	lastReload time.Time
	waiting    []string
	failed     *render.Input // the input of the last failure
	failures   int
	retryAt    time.Time
	lastErr    error
	// vipPeers are the members of a VIP-holding role seen since the
	// agent started (keepPeers).
	vipPeers map[string]render.Node
}

var (
	_ Renderer = (*RoleRenderer)(nil)
	_ Reporter = (*RoleRenderer)(nil)
)

// NewRoleRenderer returns the renderer a node runs: the role ri (the
// image's role.json; nil: none), templates from templates (TemplatesDir),
// files written under root ("/"), checkers and systemctl run for real.
func NewRoleRenderer(root, templates string, ri *imagemeta.RoleInfo) *RoleRenderer {
	return &RoleRenderer{
		Role:     ri,
		Renderer: &render.Renderer{Templates: os.DirFS(templates), Current: os.DirFS(root), Rand: rand.Reader, Now: time.Now, Role: ri},
		Applier:  &render.Applier{Root: root, Runner: render.ExecRunner{}},
		ReadFile: os.ReadFile,
		Now:      time.Now,
	}
}

// backoffError is a failure the agent retries after the backoff.
type backoffError struct {
	err   error
	after time.Duration
}

func (e *backoffError) Error() string             { return e.err.Error() }
func (e *backoffError) Unwrap() error             { return e.err }
func (e *backoffError) RetryAfter() time.Duration { return e.after }

// Render renders and applies the role's configuration for s.
func (r *RoleRenderer) Render(ctx context.Context, s Snapshot) error {
	in, err := r.input(s)
	if err != nil {
		return err
	}
	now := r.now()
	r.mu.Lock()
	if r.failed != nil && reflect.DeepEqual(*r.failed, in) && now.Before(r.retryAt) {
		err := &backoffError{err: fmt.Errorf("%w (failed %d times with these settings and members; next try in %s)", r.lastErr, r.failures, r.retryAt.Sub(now).Round(time.Second)), after: r.retryAt.Sub(now)}
		r.mu.Unlock()
		return err
	}
	r.mu.Unlock()

	err = r.apply(ctx, in, now)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.failed, r.failures, r.lastErr = nil, 0, nil
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	if r.failed == nil || !reflect.DeepEqual(*r.failed, in) {
		r.failures = 0
	}
	r.failures++
	r.failed, r.lastErr = &in, err
	after := r.backoff(r.failures)
	r.retryAt = now.Add(after)
	return &backoffError{err: err, after: after}
}

func (r *RoleRenderer) apply(ctx context.Context, in render.Input, now time.Time) error {
	c, err := r.Renderer.Render(ctx, in)
	if err != nil {
		return err
	}
	rep, err := r.Applier.Apply(ctx, c)
	if rep != nil {
		r.record(c, rep, now)
	}
	return err
}

// backoff is MinBackoff doubled for each failure after the first, at most
// MaxBackoff.
func (r *RoleRenderer) backoff(failures int) time.Duration {
	lo, hi := r.MinBackoff, r.MaxBackoff
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi < lo {
		hi = max(lo, DefaultMaxBackoff)
	}
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

func (r *RoleRenderer) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// record keeps the report of an Apply: every file of the rendered
// services, when each last changed, when a service was last reloaded.
func (r *RoleRenderer) record(c *render.Config, rep *render.Report, now time.Time) {
	then := map[string]bool{}
	for _, s := range c.Services {
		then[s.Name] = len(s.Then) > 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	files := map[string]RenderedFile{}
	var order []string
	for _, s := range rep.Services {
		for _, f := range s.Files {
			rf := RenderedFile{Path: f.Path, SHA256: f.SHA256, Service: s.Name, Sensitive: f.Sensitive, Changed: r.files[f.Path].Changed}
			if f.Sensitive {
				rf.SHA256 = ""
			}
			if f.Changed {
				rf.Changed = now
			}
			if _, dup := files[f.Path]; !dup {
				order = append(order, f.Path)
			}
			files[f.Path] = rf
		}
		if s.Changed && then[s.Name] {
			r.lastReload = now
		}
	}
	r.files, r.order, r.waiting = files, order, append([]string(nil), rep.Waiting...)
}

// Report gives the files of the last Apply.
func (r *RoleRenderer) Report() Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := Report{LastReload: r.lastReload, Waiting: append([]string(nil), r.waiting...)}
	for _, p := range r.order {
		out.Files = append(out.Files, r.files[p])
	}
	return out
}

// input builds the renderer's input from a snapshot.
func (r *RoleRenderer) input(s Snapshot) (render.Input, error) {
	if r.Role == nil {
		return render.Input{}, fmt.Errorf("rendering: no role.json (%s): the image says what its role renders", imagemeta.RolePath)
	}
	read := r.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	b, err := read(MemInfoPath)
	if err != nil {
		return render.Input{}, fmt.Errorf("reading the machine's memory: %w", err)
	}
	mem, err := MemTotal(b)
	if err != nil {
		return render.Input{}, fmt.Errorf("%s: %w", MemInfoPath, err)
	}
	in, err := RenderInput(s, mem, r.Role)
	if err != nil || !r.Role.VIPs {
		return in, err
	}
	in.Members[r.Role.Role] = r.keepPeers(in.Members[r.Role.Role])
	return in, nil
}

// keepPeers adds to the members of a VIP-holding role those seen since
// the agent started and gone since: a peer that reboots (in a rolling
// update, or a crash) stays among the VRRP peers and the haproxy peers.
// Dropping it would change keepalived.conf, and keepalived reloaded with
// other peers starts each VIP over from the backup state: the VIP would
// leave the node that holds it for about three seconds. keepalived
// advertises to an address that answers nothing at no cost; a peer gone
// for good leaves the list when the agent restarts (the node's next
// boot). A peer seen again under a new address takes it.
func (r *RoleRenderer) keepPeers(live []render.Node) []render.Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.vipPeers == nil {
		r.vipPeers = map[string]render.Node{}
	}
	out := slices.Clone(live)
	for _, n := range live {
		r.vipPeers[n.Name] = n
	}
	for name, n := range r.vipPeers {
		if !slices.ContainsFunc(live, func(m render.Node) bool { return m.Name == name }) {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b render.Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// RenderInput turns a snapshot into what package render renders from,
// for the role ri (the image's role.json), which says what the node
// needs:
//
//   - Self is the node, with its configured id; it is primary unless its
//     mode is replica.
//   - Members: the node's own role and each role of ri.Discover. With
//     ri.VIPs every member of the node's own role (the VIP holders check
//     each other), otherwise the healthy ones. With gossip discovery, only
//     members whose role gossip verified (Member.Verified: a certificate
//     from the cluster CA for that role and name) are rendered. Each
//     member keeps the port discovery gave (an SRV record's) and is
//     primary unless its mode is replica.
//   - Options: the image's options (ri.Options), with the settings'
//     (imgforge.options, checked against ri) over them.
//   - VIPs when ri.VIPs; the TLS pair given (nil: self-signed), database
//     credentials, monitoring endpoints and credentials, and memBytes as
//     the RAM.
func RenderInput(s Snapshot, memBytes uint64, ri *imagemeta.RoleInfo) (render.Input, error) {
	c := s.Config
	if c == nil {
		return render.Input{}, fmt.Errorf("rendering: no settings")
	}
	if ri == nil {
		return render.Input{}, fmt.Errorf("rendering: no role.json")
	}
	self := dataNode(s.Self)
	self.ID = c.Node.ID
	in := render.Input{Self: self, Members: map[string][]render.Node{}, Options: map[string]string{}, MemoryBytes: memBytes, Draining: s.Draining}
	needVerified := c.Discovery.Method == config.MethodGossip
	roles := append([]string{ri.Role}, ri.Discover...)
	for i, role := range roles {
		if slices.Contains(roles[:i], role) {
			continue
		}
		peers := role == ri.Role && ri.VIPs
		for _, m := range s.Members.Role(role) {
			switch {
			case m.Name == s.Self.Name:
				if m.Role == s.Self.Role {
					in.Members[role] = append(in.Members[role], self)
				}
			case m.Role != role || (needVerified && !m.Verified):
				continue
			case peers || m.Healthy:
				in.Members[role] = append(in.Members[role], dataNode(m))
			}
		}
	}
	for k, v := range ri.Options {
		in.Options[k] = v
	}
	for k, v := range c.Options {
		in.Options[k] = v
	}
	if ri.VIPs {
		for i, v := range c.VIPs {
			a, err := netip.ParseAddr(v.Address)
			if err != nil {
				return render.Input{}, fmt.Errorf("imgforge.vips[%d].address: %w", i, err)
			}
			in.VIPs = append(in.VIPs, render.VIP{Address: a.Unmap(), Prefix: v.Prefix, Interface: v.Interface})
		}
	}
	commonInput(&in, c)
	return in, nil
}

// commonInput fills what every role may render: the TLS pair given,
// database credentials and monitoring endpoints.
func commonInput(in *render.Input, c *config.Config) {
	if c.TLS != nil && !c.TLS.SelfSigned {
		in.TLS = &render.TLS{CertPEM: []byte(c.TLS.Cert), KeyPEM: []byte(c.TLS.Key)}
	}
	if d := c.Database; d != nil {
		in.DB = render.DB{User: d.User, Password: d.Password, ReplicationUser: d.ReplicationUser, ReplicationPassword: d.ReplicationPassword}
	}
	if m := c.Monitoring; m != nil {
		in.Monitoring = &render.Monitoring{
			MetricsURL: m.MetricsURL, MetricsUser: m.Username, MetricsPassword: m.Password, MetricsToken: m.BearerToken,
			LogsURL: m.LogsURL, TracesURL: m.TracesURL,
		}
		if m.LogsCert != "" {
			in.Monitoring.LogsCert = &render.TLS{CertPEM: []byte(m.LogsCert), KeyPEM: []byte(m.LogsKey)}
		}
		if m.CA != "" {
			in.Monitoring.CAPEM = []byte(m.CA)
		}
	}
}

// dataNode is a member as a role.json's render sees it: primary unless
// its mode is replica, with the port discovery gave.
func dataNode(m discovery.Member) render.Node {
	return render.Node{Name: m.Name, Role: m.Role, Address: m.Address.Unmap(), Primary: m.Mode != config.ModeReplica, Port: m.Port}
}

// MemTotal reads the machine's RAM in bytes from the text of /proc/meminfo.
func MemTotal(meminfo []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(meminfo))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			kb, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil || kb == 0 || kb > 1<<44 {
				return 0, fmt.Errorf("MemTotal %q is not a size in kB", f[1])
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no MemTotal line in kB")
}
