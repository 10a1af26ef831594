package rollout

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	v1 = "111111111111"
	v2 = "222222222222"
)

// TestRollout: every lb and web node ends on v2, never more than
// MaxUnavailable of a role out of service at once, lb before web; a
// second run has nothing to do.
func TestRollout(t *testing.T) {
	for _, maxUn := range []int{1, 2} {
		t.Run(fmt.Sprintf("max-unavailable-%d", maxUn), func(t *testing.T) {
			c := newTestCluster(t, map[string]int{"lb": 2, "web": 4, "app": 1})
			state := filepath.Join(t.TempDir(), StateFile)
			o := c.options(state, nil, Image{"lb", "v2"}, Image{"web", "v2"})
			o.MaxUnavailable = maxUn
			res, err := Run(t.Context(), o)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, map[string]string{"lb-1": v2, "lb-2": v2, "web-1": v2, "web-2": v2, "web-3": v2, "web-4": v2, "app-1": v1})
			for role, n := range c.maxOut {
				if n > maxUn {
					t.Errorf("role %s: %d nodes out of service at once, max-unavailable %d", role, n, maxUn)
				}
			}
			if len(c.writtenOut) > 0 {
				t.Errorf("%v had their slot written after their drain, not before", c.writtenOut)
			}
			if len(c.updatedHolding) > 0 {
				t.Errorf("%v updated (and rebooted) while still holding a VIP", c.updatedHolding)
			}
			if maxUn == 2 && c.maxOut["web"] != 2 {
				t.Errorf("web: at most %d out at once with max-unavailable 2: the rollout does not use its room", c.maxOut["web"])
			}
			if i := slices.Index(res.Updated, "web-1"); i < slices.Index(res.Updated, "lb-1") || i < slices.Index(res.Updated, "lb-2") {
				t.Errorf("order %v: web before an lb", res.Updated)
			}
			drains := len(c.drains)
			res, err = Run(t.Context(), o)
			if err != nil || len(res.Updated) != 0 || len(c.drains) != drains {
				t.Errorf("second run: %+v, %v, %d drains", res, err, len(c.drains)-drains)
			}
		})
	}
}

// TestStageAhead: with StageAhead 1, a node's slot is written while the
// node before it drains and reboots, and never two nodes ahead; with no
// staging ahead (-1), only once its own turn has come.
func TestStageAhead(t *testing.T) {
	for _, ahead := range []int{1, -1} {
		t.Run(fmt.Sprint(ahead), func(t *testing.T) {
			c := newTestCluster(t, map[string]int{"lb": 1, "web": 3})
			c.downFor = 200 * time.Millisecond
			o := c.options(filepath.Join(t.TempDir(), StateFile), nil, Image{"web", "v2"})
			o.StageAhead = ahead
			if _, err := Run(t.Context(), o); err != nil {
				t.Fatal(err)
			}
			c.check(t, map[string]string{"web-1": v2, "web-2": v2, "web-3": v2})
			c.mu.Lock()
			ev := slices.Clone(c.events)
			c.mu.Unlock()
			at := func(e string) int {
				i := slices.Index(ev, e)
				if i < 0 {
					t.Fatalf("no %q in %v", e, ev)
				}
				return i
			}
			for k := 1; k <= 2; k++ {
				prev, next := fmt.Sprintf("web-%d", k), fmt.Sprintf("web-%d", k+1)
				if ahead > 0 && at("stage "+next) > at("up "+prev) {
					t.Errorf("events %v: %s was written only after %s was back", ev, next, prev)
				}
				if ahead < 0 && at("stage "+next) < at("up "+prev) {
					t.Errorf("events %v: %s was written before its turn", ev, next)
				}
			}
			// web-3's turn is two nodes after web-1's: its slot is
			// written only once web-2's turn has come, after web-1 is
			// back.
			if at("stage web-3") < at("up web-1") && ahead == 1 {
				t.Errorf("events %v: web-3 was written two nodes ahead", ev)
			}
			if len(c.writtenOut) > 0 {
				t.Errorf("%v had their slot written after their drain", c.writtenOut)
			}
		})
	}
}

// TestRolledBackStops: a node that comes back on its old version stops
// the rollout, named with the version it runs; a rerun does not offer the
// image again unless Force.
func TestRolledBackStops(t *testing.T) {
	c := newTestCluster(t, map[string]int{"lb": 1, "web": 3})
	state := filepath.Join(t.TempDir(), StateFile)
	o := c.options(state, nil, Image{"web", "v3"})
	o.Tries, o.Trial = 1, 90*time.Second
	_, err := Run(t.Context(), o)
	c.mu.Lock()
	if got := c.nodes["web-1"].tries; !slices.Equal(got, []string{"1/1m30s"}) {
		t.Errorf("web-1's update requests had tries/trial %v, want [1/1m30s]", got)
	}
	c.mu.Unlock()
	var ne *NodeError
	if !errors.As(err, &ne) || !errors.Is(err, ErrRolledBack) || ne.Node != "web-1" {
		t.Fatalf("got %v", err)
	}
	if want := "node web-1: came back on version " + v1 + " (rolled back"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if len(c.drains) != 1 {
		t.Errorf("drains %v after the first node rolled back", c.drains)
	}
	c.check(t, map[string]string{"web-1": v1, "web-2": v1, "web-3": v1})
	_, err = Run(t.Context(), o)
	if err == nil || !strings.Contains(err.Error(), "rolled back on node web-1") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("rerun: %v", err)
	}
	if len(c.drains) != 1 {
		t.Errorf("the rerun drained %v", c.drains[1:])
	}
	o.Force = true
	if _, err = Run(t.Context(), o); !errors.Is(err, ErrRolledBack) {
		t.Fatalf("rerun with force: %v", err)
	}
	if len(c.drains) != 2 {
		t.Errorf("with force, drains %v", c.drains)
	}
}

// TestResume: a rollout killed while a node reboots is resumed by a
// rerun, which waits for that node before draining another one.
func TestResume(t *testing.T) {
	c := newTestCluster(t, map[string]int{"lb": 1, "web": 3})
	state := filepath.Join(t.TempDir(), StateFile)
	o := c.options(state, nil, Image{"web", "v2"})
	ctx, cancel := context.WithCancel(t.Context())
	var once sync.Once
	rebooted := make(chan struct{})
	c.downFor = 300 * time.Millisecond
	c.onBoot = func(n *testNode) {
		// The first reboot kills the rollout.
		once.Do(func() { cancel(); close(rebooted) })
	}
	_, err := Run(ctx, o)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("killed run: %v", err)
	}
	<-rebooted
	st, err := ReadState(state)
	if err != nil {
		t.Fatal(err)
	}
	if ns, ok := st.Nodes["web-1"]; !ok || ns.Phase != PhaseUpdated {
		t.Fatalf("state after the kill: %+v", st)
	}
	c.onBoot = nil
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	c.check(t, map[string]string{"web-1": v2, "web-2": v2, "web-3": v2})
	if c.maxOut["web"] > 1 {
		t.Errorf("%d web nodes out of service at once across the kill", c.maxOut["web"])
	}
	if len(c.drains) != 3 || !slices.Contains(res.Updated, "web-1") {
		t.Errorf("drains %v, updated %v", c.drains, res.Updated)
	}
}

// TestResumeDrained: a node left drained by a killed run counts as out
// of service, and is updated first.
func TestResumeDrained(t *testing.T) {
	c := newTestCluster(t, map[string]int{"web": 3})
	state := filepath.Join(t.TempDir(), StateFile)
	o := c.options(state, nil, Image{"web", "v2"})
	cl := o.Dial(o.Nodes[1])
	if _, err := cl.Drain(t.Context()); err != nil {
		t.Fatal(err)
	}
	st, _ := ReadState(state)
	st.Nodes["web-2"] = NodeState{Role: "web", Source: "v2", Phase: PhaseDrained, OldVersion: v1}
	if err := st.Write(state); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if c.drains[1] != "web-2" || c.maxOut["web"] > 1 {
		t.Errorf("drains %v, at most %d out", c.drains, c.maxOut["web"])
	}
	c.check(t, map[string]string{"web-1": v2, "web-2": v2, "web-3": v2})
}

// TestGuardedRoles: db only with Include, and last.
func TestGuardedRoles(t *testing.T) {
	c := newTestCluster(t, map[string]int{"web": 1, "app": 1, "db": 1})
	state := filepath.Join(t.TempDir(), StateFile)
	o := c.options(state, nil, Image{"db", "v2"}, Image{"web", "v2"})
	if _, err := Run(t.Context(), o); err == nil || !strings.Contains(err.Error(), "--include db") {
		t.Fatalf("db without --include: %v", err)
	}
	if len(c.drains) != 0 {
		t.Fatalf("drained %v", c.drains)
	}
	o.Include = []string{"db"}
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Updated, []string{"web-1", "db-1"}) {
		t.Errorf("updated %v, want web-1 then db-1", res.Updated)
	}
	o.Include = []string{"app"}
	if _, err := Run(t.Context(), o); err == nil {
		t.Error("--include app without its image was accepted")
	}
}

// TestReplicasFirst: a role's replicas are updated before its primary,
// which the cluster file lists first.
func TestReplicasFirst(t *testing.T) {
	c := newTestCluster(t, map[string]int{"db": 3})
	o := c.options(filepath.Join(t.TempDir(), StateFile), nil, Image{"db", "v2"})
	o.Include = []string{"db"}
	modes := map[string]string{"db-1": "primary", "db-2": "replica", "db-3": "replica"}
	for i := range o.Nodes {
		o.Nodes[i].Mode = modes[o.Nodes[i].Name]
	}
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Updated, []string{"db-2", "db-3", "db-1"}) {
		t.Errorf("updated %v, want the replicas db-2 and db-3, then the primary db-1", res.Updated)
	}
}

// TestNodeCertificateCannotRollOut: a node's own certificate does not
// command its peers.
func TestNodeCertificateCannotRollOut(t *testing.T) {
	c := newTestCluster(t, map[string]int{"web": 2})
	n := c.nodes["web-1"]
	id, err := c.nodeCert(n)
	if err != nil {
		t.Fatal(err)
	}
	o := c.options(filepath.Join(t.TempDir(), StateFile), &id, Image{"web", "v2"})
	if _, err := Run(t.Context(), o); err == nil {
		t.Fatal("a rollout with a node certificate ran")
	}
	c.check(t, map[string]string{"web-1": v1, "web-2": v1})
}

// TestAlreadyOnImage: a node that runs the image already (updated by
// hand) is put back in service and skipped, and the rollout goes on.
func TestAlreadyOnImage(t *testing.T) {
	c := newTestCluster(t, map[string]int{"web": 3})
	c.mu.Lock()
	c.nodes["web-2"].version = v2
	c.mu.Unlock()
	o := c.options(filepath.Join(t.TempDir(), StateFile), nil, Image{"web", "v2"})
	res, err := Run(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Skipped, []string{"web-2"}) || len(res.Updated) != 2 {
		t.Errorf("updated %v, skipped %v", res.Updated, res.Skipped)
	}
	st, err := c.nodes["web-2"].status(t, c)
	if err != nil || st.Draining {
		t.Errorf("web-2 after the rollout: %+v %v", st, err)
	}
	c.check(t, map[string]string{"web-1": v2, "web-2": v2, "web-3": v2})
}

// TestResumeUnrecordedUpdate: a run killed after the node took the update
// but before the state said so finds the node on the new version and
// does not update it again.
func TestResumeUnrecordedUpdate(t *testing.T) {
	c := newTestCluster(t, map[string]int{"web": 2})
	c.mu.Lock()
	c.nodes["web-1"].version = v2
	c.mu.Unlock()
	state := filepath.Join(t.TempDir(), StateFile)
	st, _ := ReadState(state)
	st.Nodes["web-1"] = NodeState{Role: "web", Source: "v2", Phase: PhaseDrained, OldVersion: v1}
	if err := st.Write(state); err != nil {
		t.Fatal(err)
	}
	res, err := Run(t.Context(), c.options(state, nil, Image{"web", "v2"}))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.drains, []string{"web-2"}) || !slices.Equal(res.Updated, []string{"web-1", "web-2"}) {
		t.Errorf("drains %v, updated %v", c.drains, res.Updated)
	}
	if st, _ = ReadState(state); st.Versions["v2"] != v2 || len(st.Nodes) != 0 {
		t.Errorf("state %+v", st)
	}
}

// TestOneAtATime: a second rollout of the cluster is refused while one
// runs.
func TestOneAtATime(t *testing.T) {
	state := filepath.Join(t.TempDir(), StateFile)
	unlock, err := lock(state)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	c := newTestCluster(t, map[string]int{"web": 1})
	if _, err := Run(t.Context(), c.options(state, nil, Image{"web", "v2"})); err == nil || !strings.Contains(err.Error(), "another imgforge rollout") {
		t.Fatalf("got %v", err)
	}
	if len(c.drains) != 0 {
		t.Errorf("drained %v", c.drains)
	}
}
