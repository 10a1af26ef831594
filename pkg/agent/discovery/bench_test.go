package discovery

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
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

type countingEvents struct {
	memberlist.EventDelegate
	c *joinCounter
}

func (e countingEvents) NotifyJoin(n *memberlist.Node) {
	e.EventDelegate.NotifyJoin(n)
	e.c.joined(n.Name)
}

func benchAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 10, byte(i >> 8), byte(i)}) }

// On the shared 2-core machine this was written on (load 4-12 from other
// work), 100 members converge; 200 and 300 did not within 5 minutes
// (CPU-starved members miss their 250 ms probe timeouts and are marked
// dead), and 1000 did not either.
//
// BenchmarkGossipConvergence measures, in a cluster of N in-process
// members on loopback (N from IMGFORGE_BENCH_MEMBERS, default 1000), the
// time from a new member's start until every member has seen it join,
// with the agent's LAN configuration and encryption.
func BenchmarkGossipConvergence(b *testing.B) {
	n := 1000
	if s := os.Getenv("IMGFORGE_BENCH_MEMBERS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 2 || v > 60000 {
			b.Fatalf("IMGFORGE_BENCH_MEMBERS=%q: accepted: 2 to 60000", s)
		}
		n = v
	}
	// testing runs a benchmark once with b.N=1 before the measured run:
	// the cluster is built once and kept for both.
	if benchCluster.n != n {
		benchCluster.n, benchCluster.counter, benchCluster.members = n, &joinCounter{}, nil
	}
	counter := benchCluster.counter
	start := func(i int, join []string) *Gossip {
		g, err := NewGossip(context.Background(), GossipOptions{
			Cluster: "bench", Self: Member{Name: fmt.Sprintf("web-%d", i), Role: "web", Address: benchAddr(i), Healthy: true},
			Key: testKey, Join: join, JoinWait: 500 * time.Millisecond,
			Identity: clusterCA(b, "bench").node(b, "web", fmt.Sprintf("web-%d", i)),
			Tune:     func(c *memberlist.Config) { c.Events = countingEvents{c.Events, counter} },
		})
		if err != nil {
			b.Fatal(err)
		}
		return g
	}
	members := benchCluster.members
	defer func() { benchCluster.members = members }()
	t0 := time.Now()
	if len(members) == 0 {
		members = append(members, start(1, nil))
		seed := []string{members[0].Addr().String()}
		for i := 2; i <= n; i++ {
			members = append(members, start(i, seed))
		}
	}
	n = len(members)
	// Wait until every member knows every other.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		lo, hi := n, 0
		for _, g := range members {
			k := g.ml.NumMembers()
			lo, hi = min(lo, k), max(hi, k)
		}
		if lo == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the %d members did not converge in 5 minutes: each sees %d to %d live members", n, lo, hi)
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Logf("%d members converged %v after the start of this run; measuring %d joins", n, time.Since(t0).Round(time.Millisecond), b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		idx := len(members) + 1
		counter.watch(fmt.Sprintf("web-%d", idx), len(members)+1)
		t := time.Now()
		g := start(idx, []string{members[i%len(members)].Addr().String()})
		select {
		case <-counter.done:
		case <-time.After(2 * time.Minute):
			b.Fatalf("web-%d: only %d of %d members saw it join in 2 minutes", idx, counter.seen.Load(), len(members)+1)
		}
		b.Logf("web-%d seen by all %d members after %v", idx, len(members)+1, time.Since(t).Round(time.Millisecond))
		members = append(members, g)
	}
}

// benchCluster keeps the benchmark's members between its runs.
var benchCluster struct {
	n       int
	counter *joinCounter
	members []*Gossip
}
