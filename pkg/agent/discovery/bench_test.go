package discovery

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// joinCounter counts, for one watched name, the members that have seen it join.
type joinCounter struct {
	mu    sync.Mutex
	name  string
	seen  atomic.Int64
	done  chan struct{}
	total int64
}

func (c *joinCounter) watch(name string, total int) {
	c.mu.Lock()
	c.name, c.total, c.done = name, int64(total), make(chan struct{})
	c.seen.Store(0)
	c.mu.Unlock()
}

func (c *joinCounter) joined(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if name == c.name && c.seen.Add(1) == c.total {
		close(c.done)
	}
}

// countingEvents counts the joins of the watched member, and the live
// members one member knows (without memberlist's lock, which a starved
// cluster's suspicion timers queue on for minutes).
type countingEvents struct {
	memberlist.EventDelegate
	c    *joinCounter
	live *atomic.Int64
}

func (e countingEvents) NotifyJoin(n *memberlist.Node) {
	e.EventDelegate.NotifyJoin(n)
	e.live.Add(1)
	e.c.joined(n.Name)
}

func (e countingEvents) NotifyLeave(n *memberlist.Node) {
	e.EventDelegate.NotifyLeave(n)
	e.live.Add(-1)
}

// failureCounts counts memberlist's failure detector events from its log
// lines, over every member of a benchmark cluster.
type failureCounts struct {
	suspect, dead, refuted, failedPing atomic.Int64
}

func (f *failureCounts) Write(p []byte) (int, error) {
	switch {
	case bytes.Contains(p, []byte("has failed, no acks received")):
		f.suspect.Add(1)
	case bytes.Contains(p, []byte("as failed, suspect timeout reached")):
		f.dead.Add(1)
	case bytes.Contains(p, []byte("Refuting a")):
		f.refuted.Add(1)
	case bytes.Contains(p, []byte("Failed ping")):
		f.failedPing.Add(1)
	}
	return len(p), nil
}

func (f *failureCounts) String() string {
	return fmt.Sprintf("suspect %d, dead %d, refuted %d", f.suspect.Load(), f.dead.Load(), f.refuted.Load())
}

func benchAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 10, byte(i >> 8), byte(i)}) }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 2 || v > 60000 {
		b.Fatalf("%s=%q: accepted: 2 to 60000", name, s)
	}
	return v
}

// benchRun is one cluster of BenchmarkGossipConvergence.
type benchRun struct {
	profile string
	n       int
}

// benchRuns are the clusters BenchmarkGossipConvergence builds:
// IMGFORGE_BENCH_GOSSIP (PROFILE:MEMBERS,...) or the default below, the
// largest of each profile that converges on the shared 2-core machine
// (docs/performance.md, "Gossip at scale").
func benchRuns(b *testing.B) []benchRun {
	s := os.Getenv("IMGFORGE_BENCH_GOSSIP")
	if s == "" {
		return []benchRun{{ProfileLAN, 100}, {ProfileLarge, 200}}
	}
	var runs []benchRun
	for _, f := range strings.Split(s, ",") {
		p, m, ok := strings.Cut(strings.TrimSpace(f), ":")
		n, err := strconv.Atoi(m)
		if _, perr := GossipConfig(p); !ok || err != nil || n < 2 || n > 60000 || perr != nil {
			b.Fatalf("IMGFORGE_BENCH_GOSSIP: %q: accepted: PROFILE:MEMBERS,... with a profile of %s and 2 to 60000 members", f, strings.Join(Profiles, ", "))
		}
		runs = append(runs, benchRun{p, n})
	}
	return runs
}

// BenchmarkGossipConvergence builds clusters of N in-process members on
// loopback, with the agent's configuration of a profile, encryption and
// signed metadata, all joining through one seed; it reports how long the
// cluster took to converge (every member sees every other), the CPU the
// idle cluster uses, and the failure detector's suspect and dead events.
// Each op is one more member joining through a random member: the time
// until every member has seen it join.
func BenchmarkGossipConvergence(b *testing.B) {
	for _, r := range benchRuns(b) {
		b.Run(fmt.Sprintf("%s/members=%d", r.profile, r.n), func(b *testing.B) { runGossipBench(b, r) })
		// In parallel: a member still trying to join waits for that try
		// (seconds) before it stops.
		var wg sync.WaitGroup
		for _, g := range benchCluster.members {
			wg.Go(func() { _ = g.Kill() })
		}
		wg.Wait()
		benchCluster = benchClusterState{}
	}
}

func runGossipBench(b *testing.B, r benchRun) {
	// testing runs a benchmark once with b.N=1 before the measured run:
	// the cluster is built once and kept for both.
	c := &benchCluster
	if c.run != r {
		*c = benchClusterState{run: r, counter: &joinCounter{}, fails: &failureCounts{}}
	}
	ca := clusterCA(b, "bench")
	start := func(i int, join []string) *Gossip {
		live := new(atomic.Int64)
		g, err := NewGossip(context.Background(), GossipOptions{
			Cluster: "bench", Self: Member{Name: fmt.Sprintf("web-%d", i), Role: "web", Address: benchAddr(i), Healthy: true},
			Key: testKey, Join: join, JoinWait: 500 * time.Millisecond, Profile: r.profile,
			Identity: ca.node(b, "web", fmt.Sprintf("web-%d", i)),
			Tune: func(mc *memberlist.Config) {
				mc.Events = countingEvents{mc.Events, c.counter, live}
				mc.Logger = log.New(c.fails, "", 0)
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		c.live = append(c.live, live)
		return g
	}
	if len(c.members) == 0 {
		t0, cpu0 := time.Now(), cpuTime()
		c.members = append(c.members, start(1, nil))
		seed := []string{c.members[0].Addr().String()}
		for i := 2; i <= r.n; i++ {
			c.members = append(c.members, start(i, seed))
		}
		b.Logf("%d members started in %v (CPU %v); %s", r.n, time.Since(t0).Round(time.Millisecond), (cpuTime() - cpu0).Round(time.Millisecond), c.fails)
		// Wait until every member knows every other.
		wait := time.Duration(envInt(b, "IMGFORGE_BENCH_WAIT", 300)) * time.Second
		deadline, last := time.Now().Add(wait), time.Now()
		for {
			lo, hi := r.n, 0
			for _, l := range c.live {
				k := int(l.Load())
				lo, hi = min(lo, k), max(hi, k)
			}
			if lo == r.n {
				break
			}
			if time.Since(last) > 30*time.Second {
				// Progress on stderr: benchmark logs appear only at the end.
				fmt.Fprintf(os.Stderr, "gossip %s/%d: after %v each member sees %d to %d live members; %s; CPU %v\n", r.profile, r.n, time.Since(t0).Round(time.Second), lo, hi, c.fails, (cpuTime() - cpu0).Round(time.Second))
				last = time.Now()
			}
			if time.Now().After(deadline) {
				// A figure, not a failure: the next cluster still runs.
				b.Logf("the %d members did not converge in %v: each sees %d to %d live members; %s; CPU %v", r.n, wait, lo, hi, c.fails, (cpuTime() - cpu0).Round(time.Second))
				c.failed = true
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		c.converge, c.convergeCPU = time.Since(t0), cpuTime()-cpu0
		c.suspect, c.dead = c.fails.suspect.Load(), c.fails.dead.Load()
		if c.failed {
			c.converge = 0
		}
	}
	if c.failed {
		b.ReportMetric(0, "ns/op") // no join was measured
		b.ReportMetric(0, "converged")
		b.ReportMetric(c.convergeCPU.Seconds(), "cpu-s-converge")
		b.ReportMetric(float64(c.suspect), "suspects-converge")
		b.ReportMetric(float64(c.dead), "deads-converge")
		return
	}
	if c.idleCores == 0 {
		// The idle cluster: the CPU it uses over 5 s with nothing joining,
		// once the refutations of the start have settled (10 s).
		time.Sleep(10 * time.Second)
		cpu1, t1 := cpuTime(), time.Now()
		time.Sleep(5 * time.Second)
		c.idleCores = float64(cpuTime()-cpu1) / float64(time.Since(t1))
		b.Logf("%d members converged %v after the first started (CPU %v); %s; idle: %.2f cores (%.2f ms of CPU per member per second)",
			r.n, c.converge.Round(time.Millisecond), c.convergeCPU.Round(time.Millisecond), c.fails, c.idleCores, c.idleCores*1000/float64(r.n))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		idx := len(c.members) + 1
		c.counter.watch(fmt.Sprintf("web-%d", idx), len(c.members)+1)
		t := time.Now()
		g := start(idx, []string{c.members[rand.IntN(len(c.members))].Addr().String()})
		select {
		case <-c.counter.done:
		case <-time.After(2 * time.Minute):
			b.Fatalf("web-%d: only %d of %d members saw it join in 2 minutes; %s", idx, c.counter.seen.Load(), len(c.members)+1, c.fails)
		}
		b.Logf("web-%d seen by all %d members after %v; %s", idx, len(c.members)+1, time.Since(t).Round(time.Millisecond), c.fails)
		c.members = append(c.members, g)
	}
	b.StopTimer()
	b.ReportMetric(1, "converged")
	b.ReportMetric(c.converge.Seconds(), "s-converge")
	b.ReportMetric(c.convergeCPU.Seconds(), "cpu-s-converge")
	b.ReportMetric(c.idleCores, "cores-idle")
	b.ReportMetric(float64(c.suspect), "suspects-converge")
	b.ReportMetric(float64(c.dead), "deads-converge")
}

type benchClusterState struct {
	run                   benchRun
	counter               *joinCounter
	fails                 *failureCounts
	members               []*Gossip
	live                  []*atomic.Int64
	converge, convergeCPU time.Duration
	idleCores             float64
	failed                bool
	suspect, dead         int64
}

// benchCluster keeps the benchmark's members between its runs.
var benchCluster benchClusterState
