package rollout

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/update"
)

// Node is a node of the cluster.
type Node struct {
	Name string
	Role string
	// Addr is its control endpoint, HOST:PORT.
	Addr string
	// Mode is its member mode (the cluster file's options.mode): a role's
	// replicas are updated before its other nodes, so that its primary
	// goes last and its replicas never run an older image than it.
	Mode string
}

// Image is the new image of one role.
type Image struct {
	Role   string
	Source string // what the node's agent updates from: a served set's URL or an OCI reference
}

// Client is one node's control endpoint (agent.ControlClient).
type Client interface {
	Status(ctx context.Context) (agent.ControlStatus, error)
	Drain(ctx context.Context) (agent.ControlStatus, error)
	Undrain(ctx context.Context) (agent.ControlStatus, error)
	Update(ctx context.Context, req agent.UpdateRequest) (agent.UpdateResponse, error)
}

// DefaultGuarded are the roles a rollout updates only when told
// (Options.Include), and after all others: their nodes hold the data.
var DefaultGuarded = []string{"db"}

// Options say what to roll out.
type Options struct {
	// Nodes are all the cluster's nodes (those of other roles are the
	// peers asked whether they render an updated node again).
	Nodes []Node
	// Images are the roles to update, in this order (guarded roles last).
	Images []Image
	// MaxUnavailable nodes of a role are out of service at most; default 1.
	MaxUnavailable int
	// Guarded roles are updated only when in Include, and last; default
	// DefaultGuarded.
	Guarded []string
	Include []string
	// Force offers again an image that rolled back on a node.
	Force bool
	// Tries and Trial are each updated node's boot tries of its new slot
	// and how long each may take to get healthy (0: the agent's
	// defaults, 3 tries of 10 minutes). Timeout must cover them all.
	Tries int
	Trial time.Duration
	// StatePath is the state file (StatePath of the cluster file).
	StatePath string
	// Dial gives a node's control endpoint.
	Dial func(Node) Client
	// Timeout is how long a node may take to come back after its update
	// (its reboot, and its fallback to the old slot when the new one
	// fails its tries); default 20 minutes.
	Timeout time.Duration
	// DrainTimeout is how long to wait for peers to drop a draining node
	// from their configuration; default 1 minute. DrainGrace is the time
	// then given to the requests it still serves; default 5 seconds.
	DrainTimeout time.Duration
	DrainGrace   time.Duration
	// Poll is the time between two status requests; default 2 seconds.
	Poll time.Duration
	// StageAhead is how many nodes beyond those whose turn has come may
	// write their inactive slot already, while the earlier ones drain and
	// reboot (in the order the nodes are updated); default 1, negative
	// for none: each node writes its slot when its turn comes.
	StageAhead int
	Logf       func(format string, args ...any)
}

// ErrRolledBack is wrapped by the error of a node that came back on its
// old version.
var ErrRolledBack = errors.New("rolled back")

// NodeError says which node stopped the rollout and why.
type NodeError struct {
	Node string
	Err  error
}

func (e *NodeError) Error() string { return fmt.Sprintf("node %s: %v", e.Node, e.Err) }
func (e *NodeError) Unwrap() error { return e.Err }

// Result is what a rollout did.
type Result struct {
	Updated []string `json:"updated"` // nodes updated by this run, in the order they came back
	Skipped []string `json:"skipped"` // nodes already on their image
}

type run struct {
	o      Options
	mu     sync.Mutex
	state  *State
	peers  map[string]Client
	staged map[string]chan staged // by node: its slot's write, ahead of its turn
	turns  chan struct{}          // a node's turn has come (turn)
}

// staged is what writing a node's inactive slot ahead of its turn gave:
// why the node needs no update (skip), or why the write failed (err).
type staged struct {
	skip string
	err  error
}

// Run rolls out o.Images. It returns a *NodeError for the first node that
// failed (its update refused, or not back within Timeout, or back on its
// old version: errors.Is(err, ErrRolledBack)).
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.MaxUnavailable <= 0 {
		o.MaxUnavailable = 1
	}
	if o.Guarded == nil {
		o.Guarded = DefaultGuarded
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Timeout, 20*time.Minute)
	def(&o.DrainTimeout, time.Minute)
	def(&o.DrainGrace, 5*time.Second)
	def(&o.Poll, 2*time.Second)
	if o.StageAhead == 0 {
		o.StageAhead = 1
	}
	o.StageAhead = max(o.StageAhead, 0)
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Dial == nil || o.StatePath == "" {
		return nil, errors.New("rollout: Dial and StatePath are required")
	}
	images, err := order(o)
	if err != nil {
		return nil, err
	}
	unlock, err := lock(o.StatePath)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := ReadState(o.StatePath)
	if err != nil {
		return nil, err
	}
	for _, im := range images {
		for i, rb := range st.RolledBack {
			if rb.Role != im.Role || rb.Source != im.Source {
				continue
			}
			if !o.Force {
				return nil, fmt.Errorf("image %s of role %s rolled back on node %s (version %s came back as %s); it is not offered again unless --force is given", im.Source, im.Role, rb.Node, rb.Version, rb.Back)
			}
			st.RolledBack = slices.Delete(st.RolledBack, i, i+1)
			break
		}
	}
	r := &run{o: o, state: st, peers: map[string]Client{}, staged: map[string]chan staged{}, turns: make(chan struct{}, len(o.Nodes))}
	for _, n := range o.Nodes {
		r.peers[n.Name] = o.Dial(n)
	}
	if err := r.save(); err != nil {
		return nil, err
	}
	stageCtx, stopStaging := context.WithCancel(ctx)
	wait := r.startStaging(stageCtx, images)
	defer func() { stopStaging(); wait() }()
	res := &Result{}
	for _, im := range images {
		if err := r.role(ctx, im, res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// order checks the images and puts guarded roles last.
func order(o Options) ([]Image, error) {
	roles := map[string]bool{}
	for _, n := range o.Nodes {
		roles[n.Role] = true
	}
	var out, last []Image
	seen := map[string]bool{}
	for _, im := range o.Images {
		switch {
		case !roles[im.Role]:
			return nil, fmt.Errorf("--image %s=...: the cluster has no node of role %s", im.Role, im.Role)
		case seen[im.Role]:
			return nil, fmt.Errorf("--image %s=...: given twice", im.Role)
		case strings.TrimSpace(im.Source) == "":
			return nil, fmt.Errorf("--image %s=: no source; accepted: ROLE=URL of a set served by imgforge serve, or ROLE=OCI reference", im.Role)
		}
		seen[im.Role] = true
		if slices.Contains(o.Guarded, im.Role) {
			if !slices.Contains(o.Include, im.Role) {
				return nil, fmt.Errorf("--image %s=...: the nodes of role %s hold the data and are updated only with --include %s", im.Role, im.Role, im.Role)
			}
			last = append(last, im)
			continue
		}
		out = append(out, im)
	}
	for _, inc := range o.Include {
		if !seen[inc] {
			return nil, fmt.Errorf("--include %s: no --image %s=SOURCE given", inc, inc)
		}
	}
	return append(out, last...), nil
}

func (r *run) save() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state.Write(r.o.StatePath)
}

func (r *run) update(f func(s *State)) error {
	r.mu.Lock()
	f(r.state)
	r.mu.Unlock()
	return r.save()
}

// role updates the nodes of one role, at most MaxUnavailable at a time;
// nodes the state holds out of service go first and count.
func (r *run) role(ctx context.Context, im Image, res *Result) error {
	var resume, fresh []Node
	for _, n := range r.o.Nodes {
		if n.Role != im.Role {
			continue
		}
		ns, out := r.state.Nodes[n.Name]
		switch {
		case out:
			if ns.Source != im.Source {
				return fmt.Errorf("node %s is out of service from an earlier rollout to %s; rerun that rollout (or undrain the node) first", n.Name, ns.Source)
			}
			resume = append(resume, n)
		case r.state.Done[n.Name] == im.Source:
			res.Skipped = append(res.Skipped, n.Name)
		default:
			fresh = append(fresh, n)
		}
	}
	slices.SortStableFunc(fresh, func(a, b Node) int {
		return cmp.Compare(modeRank(a.Mode), modeRank(b.Mode))
	})
	r.o.Logf("role %s: %d nodes to update to %s (%d resumed), at most %d at a time", im.Role, len(resume)+len(fresh), im.Source, len(resume), r.o.MaxUnavailable)
	var (
		wg      sync.WaitGroup
		queue   = fresh
		done    = make(chan error, len(resume)+len(fresh))
		out     = len(resume) // nodes out of service now
		running = 0
		first   error
	)
	// Resumed nodes are out already: they start at once (each is waited
	// for), and no fresh node starts while out >= MaxUnavailable.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := func(n Node, resumed bool) {
		running++
		if !resumed {
			out++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			done <- r.node(ctx, n, im, res)
		}()
	}
	for _, n := range resume {
		start(n, true)
	}
	for running > 0 || (len(queue) > 0 && first == nil) {
		for first == nil && len(queue) > 0 && out < r.o.MaxUnavailable {
			start(queue[0], false)
			queue = queue[1:]
		}
		if running == 0 {
			break
		}
		err := <-done
		running--
		out--
		if err != nil && first == nil {
			first = err
		}
		if ctx.Err() != nil && first == nil {
			first = ctx.Err()
		}
	}
	wg.Wait()
	return first
}

// modeRank orders a role's nodes for an update: replicas first.
func modeRank(mode string) int {
	if mode == "replica" {
		return 0
	}
	return 1
}

// node drains, updates and waits for one node; a node resumed from the
// state continues where it was.
func (r *run) node(ctx context.Context, n Node, im Image, res *Result) error {
	c := r.peers[n.Name]
	fail := func(err error) error { return &NodeError{Node: n.Name, Err: err} }
	r.mu.Lock()
	ns, resumed := r.state.Nodes[n.Name]
	known := r.state.Versions[im.Source]
	r.mu.Unlock()
	if resumed && ns.Phase == PhaseDrained {
		// The killed run may have sent the update already: a node that
		// answers on another version has rebooted into it.
		st, err := r.statusWithin(ctx, c)
		if err != nil {
			return fail(fmt.Errorf("asking its status: %w", err))
		}
		if st.Image.Version != ns.OldVersion && !st.Draining {
			ns.Phase, ns.NewVersion = PhaseUpdated, st.Image.Version
			if err := r.update(func(s *State) { s.Nodes[n.Name] = ns; s.Versions[im.Source] = st.Image.Version }); err != nil {
				return err
			}
		}
	}
	if !resumed {
		r.turn()
	}
	if !resumed || ns.Phase == PhaseDrained {
		st, err := c.Status(ctx)
		if err != nil {
			return fail(fmt.Errorf("asking its status: %w", err))
		}
		if st.Role != n.Role || st.Node != n.Name {
			return fail(fmt.Errorf("its agent says it is %s of role %s", st.Node, st.Role))
		}
		if !resumed && known != "" && st.Image.Version == known {
			return r.skip(n, im, res, "runs "+known+" already")
		}
		if !resumed {
			// The slot is written while the node still serves (ahead of
			// its turn: startStaging): out of service, it only gets its
			// boot entry and reboots.
			sg := r.stagedSlot(ctx, n, im)
			switch {
			case sg.err != nil:
				return fail(sg.err)
			case sg.skip != "":
				return r.skip(n, im, res, sg.skip)
			}
			ns = NodeState{Role: n.Role, Source: im.Source, Phase: PhaseDrained, OldVersion: st.Image.Version}
			// Recorded before the drain: a run killed now still counts
			// the node as out of service.
			if err := r.update(func(s *State) { s.Nodes[n.Name] = ns }); err != nil {
				return err
			}
		}
		r.o.Logf("%s: draining (version %s)", n.Name, ns.OldVersion)
		if _, err := c.Drain(ctx); err != nil {
			return fail(fmt.Errorf("draining: %w", err))
		}
		r.waitDropped(ctx, n)
		r.o.Logf("%s: updating from %s", n.Name, im.Source)
		req := agent.UpdateRequest{Source: im.Source, Tries: r.o.Tries}
		if r.o.Trial > 0 {
			req.Trial = r.o.Trial.String()
		}
		up, err := c.Update(ctx, req)
		if err != nil {
			// The node still runs its image: put it back in service.
			if _, uerr := c.Undrain(context.WithoutCancel(ctx)); uerr == nil {
				_ = r.update(func(s *State) { delete(s.Nodes, n.Name) })
			}
			if isActive(err) {
				// The node runs this image already (the agent compares
				// root hashes): nothing to do.
				return r.skip(n, im, res, "runs the image of "+im.Source+" already")
			}
			return fail(fmt.Errorf("updating: %w", err))
		}
		ns.Phase, ns.NewVersion = PhaseUpdated, up.Version
		if err := r.update(func(s *State) { s.Nodes[n.Name] = ns; s.Versions[im.Source] = up.Version }); err != nil {
			return err
		}
		if up.Reused {
			r.o.Logf("%s: %s in slot %s boots next, rebooting", n.Name, up.Version, up.Slot)
		} else {
			r.o.Logf("%s: wrote %s into slot %s, rebooting", n.Name, up.Version, up.Slot)
		}
	}
	err := r.waitBack(ctx, n, ns)
	var rb *rolledBack
	switch {
	case errors.As(err, &rb):
		_ = r.update(func(s *State) {
			delete(s.Nodes, n.Name)
			s.RolledBack = append(s.RolledBack, RolledBack{Role: n.Role, Source: im.Source, Version: ns.NewVersion, Node: n.Name, Back: rb.version})
		})
		return fail(fmt.Errorf("came back on version %s (%w from %s); the rollout stops", rb.version, ErrRolledBack, ns.NewVersion))
	case err != nil:
		return fail(err)
	}
	r.o.Logf("%s: back on %s, healthy, in its peers' configuration", n.Name, ns.NewVersion)
	r.mu.Lock()
	res.Updated = append(res.Updated, n.Name)
	r.mu.Unlock()
	return r.update(func(s *State) { delete(s.Nodes, n.Name); s.Done[n.Name] = im.Source })
}

// startStaging writes the inactive slot of every node that images will
// update, in their order, each as soon as its turn is at most StageAhead
// nodes away (turn), and keeps the result for the node's turn
// (stagedSlot). Nodes out of service from an earlier run, and those done
// already, are left out. It returns a function that waits for the writes
// under way to end (cancel ctx first).
func (r *run) startStaging(ctx context.Context, images []Image) func() {
	type job struct {
		n  Node
		im Image
		ch chan staged
	}
	var jobs []job
	for _, im := range images {
		for _, n := range r.o.Nodes {
			if n.Role != im.Role {
				continue
			}
			if _, out := r.state.Nodes[n.Name]; out || r.state.Done[n.Name] == im.Source {
				continue
			}
			ch := make(chan staged, 1)
			r.staged[n.Name] = ch
			jobs = append(jobs, job{n, im, ch})
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		started := 0 // nodes whose turn has come
		for i, j := range jobs {
			for i > started+r.o.StageAhead-1 {
				select {
				case <-r.turns:
					started++
				case <-ctx.Done():
					return
				}
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				j.ch <- r.stage(ctx, j.n, j.im)
			}()
		}
	}()
	return wg.Wait
}

// turn says that a node's turn has come (startStaging).
func (r *run) turn() {
	select {
	case r.turns <- struct{}{}:
	default:
	}
}

// stage writes n's inactive slot with im, while n serves.
func (r *run) stage(ctx context.Context, n Node, im Image) staged {
	c := r.peers[n.Name]
	st, err := c.Status(ctx)
	if err != nil {
		return staged{err: fmt.Errorf("asking its status: %w", err)}
	}
	if st.Role != n.Role || st.Node != n.Name {
		return staged{err: fmt.Errorf("its agent says it is %s of role %s", st.Node, st.Role)}
	}
	r.mu.Lock()
	known := r.state.Versions[im.Source]
	r.mu.Unlock()
	if known != "" && st.Image.Version == known {
		return staged{skip: "runs " + known + " already"}
	}
	r.o.Logf("%s: writing %s into its inactive slot (it keeps serving)", n.Name, im.Source)
	res, err := c.Update(ctx, agent.UpdateRequest{Source: im.Source, Stage: true})
	if err != nil {
		if isActive(err) {
			return staged{skip: "runs the image of " + im.Source + " already"}
		}
		return staged{err: fmt.Errorf("writing its inactive slot: %w", err)}
	}
	r.o.Logf("%s: slot %s holds %s", n.Name, res.Slot, res.Version)
	return staged{}
}

// stagedSlot waits for n's slot write (startStaging), or writes it now
// when none was started.
func (r *run) stagedSlot(ctx context.Context, n Node, im Image) staged {
	ch, ok := r.staged[n.Name]
	if !ok {
		return r.stage(ctx, n, im)
	}
	select {
	case sg := <-ch:
		return sg
	case <-ctx.Done():
		return staged{err: ctx.Err()}
	}
}

// skip records that n runs im already, and says why.
func (r *run) skip(n Node, im Image, res *Result, why string) error {
	r.o.Logf("%s: %s", n.Name, why)
	_ = r.update(func(s *State) { s.Done[n.Name] = im.Source })
	r.mu.Lock()
	res.Skipped = append(res.Skipped, n.Name)
	r.mu.Unlock()
	return nil
}

// isActive says whether the agent refused an update because the node
// runs that image already (update.ErrActive, through the control API).
func isActive(err error) bool { return strings.Contains(err.Error(), update.ErrActive.Error()) }

// statusWithin asks c's status until it answers, at most Timeout.
func (r *run) statusWithin(ctx context.Context, c Client) (agent.ControlStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	for {
		st, err := c.Status(ctx)
		if err == nil {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, err
		case <-time.After(r.o.Poll):
		}
	}
}

type rolledBack struct{ version string }

func (e *rolledBack) Error() string { return "rolled back to " + e.version }

// waitBack waits until n answers on its new version, healthy, and is in
// its peers' configuration; or on its old version, undrained (it rolled
// back).
func (r *run) waitBack(ctx context.Context, n Node, ns NodeState) error {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	var last string
	for {
		st, err := r.peers[n.Name].Status(ctx)
		switch {
		case err != nil:
			last = "no answer: " + err.Error()
		case st.Image.Version == ns.NewVersion && st.Ready && st.Healthy && !st.Draining:
			missing := r.missingFrom(ctx, n)
			if len(missing) == 0 {
				return nil
			}
			last = fmt.Sprintf("on %s and healthy, but not yet in the configuration of %s", ns.NewVersion, strings.Join(missing, ", "))
		case st.Image.Version == ns.OldVersion && ns.OldVersion != ns.NewVersion && st.Ready && !st.Draining:
			return &rolledBack{version: st.Image.Version}
		default:
			last = fmt.Sprintf("version %s, healthy %v, draining %v", st.Image.Version, st.Healthy, st.Draining)
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("not back on %s within %s (last: %s); it falls back to its old slot by itself when the new one fails its boot tries", ns.NewVersion, r.o.Timeout, last)
			}
			return ctx.Err()
		case <-time.After(r.o.Poll):
		}
	}
}

// peersOf are the nodes that render role (their status's discovers),
// but n, and those out of service in this rollout.
func (r *run) peersOf(ctx context.Context, n Node) map[string]agent.ControlStatus {
	out := map[string]agent.ControlStatus{}
	for _, p := range r.o.Nodes {
		r.mu.Lock()
		_, away := r.state.Nodes[p.Name]
		r.mu.Unlock()
		if p.Name == n.Name || away {
			continue
		}
		st, err := r.peers[p.Name].Status(ctx)
		if err != nil {
			// An unreachable peer renders nothing we could check: it
			// counts as not having the node yet.
			out[p.Name] = agent.ControlStatus{Discovers: []string{n.Role}}
			continue
		}
		if slices.Contains(st.Discovers, n.Role) {
			out[p.Name] = st
		}
	}
	return out
}

// inRendered says whether st's last render holds n: healthy, and
// verified when the peer's discovery checks identities (gossip renders
// only verified members).
func inRendered(st agent.ControlStatus, n Node) bool {
	for _, m := range st.Rendered[n.Role] {
		if m.Name == n.Name && m.Healthy && (m.Verified || st.Discovery != config.MethodGossip) {
			return true
		}
	}
	return false
}

// missingFrom lists the peers whose configuration lacks n.
func (r *run) missingFrom(ctx context.Context, n Node) []string {
	var missing []string
	for name, st := range r.peersOf(ctx, n) {
		if !inRendered(st, n) {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	return missing
}

// waitDropped waits (at most DrainTimeout) until no peer renders n as
// healthy and n announces no VIP (an lb node's VIPs have moved to its
// peers), then DrainGrace for the requests n still serves.
func (r *run) waitDropped(ctx context.Context, n Node) {
	ctx2, cancel := context.WithTimeout(ctx, r.o.DrainTimeout)
	defer cancel()
	for {
		var still []string
		for name, st := range r.peersOf(ctx2, n) {
			if inRendered(st, n) {
				still = append(still, name)
			}
		}
		var vips []string
		if st, err := r.peers[n.Name].Status(ctx2); err == nil {
			vips = st.HoldsVIPs
		}
		if len(still) == 0 && len(vips) == 0 {
			break
		}
		select {
		case <-ctx2.Done():
			slices.Sort(still)
			if len(still) > 0 {
				r.o.Logf("%s: %s still hold it after %s (a discovery that shares no health, such as static, keeps it); going on", n.Name, strings.Join(still, ", "), r.o.DrainTimeout)
			}
			if len(vips) > 0 {
				r.o.Logf("%s: still holds VIP %s after %s (no other node of its role took it); going on", n.Name, strings.Join(vips, ", "), r.o.DrainTimeout)
			}
			goto grace
		case <-time.After(r.o.Poll):
		}
	}
grace:
	select {
	case <-ctx.Done():
	case <-time.After(r.o.DrainGrace):
	}
}
