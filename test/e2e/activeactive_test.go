//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The cluster file's two VIPs: each lb node is the VRRP master of one.
var clusterVIPs = []string{"10.10.0.100", "10.10.0.101"}

// Bounds of a failover (activeActive). keepalived advertises every second
// (advert_int 1): the backup of a VIP declares its master gone after three
// missed adverts and the skew of its priority, about 3 s, takes the VIP
// and announces it by gratuitous ARP. A request in flight to the stopped
// lb gets no answer and ends at the stream's per-request timeout. Under
// emulation, with six guests on the 2 cores, the survivor's keepalived
// and HAProxy may wait seconds for a core: 20 s bounds the longest time
// without an answer on the moved VIP, and the requests that fail in it (at
// most one in flight per source, each failing after failoverTimeout).
const (
	failoverTimeout = 4 * time.Second
	maxFailoverGap  = 20 * time.Second
	maxFailoverFail = 10
)

// vipHolder is the lb node whose MAC the namespace learnt for addr.
func vipHolder(seg *segment, byName map[string]seedNode, addr string) (string, error) {
	out, err := exec.Command("ip", "-n", seg.ns, "neigh", "show", addr).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip neigh: %w: %s", err, out)
	}
	for _, n := range []string{"lb-1", "lb-2"} {
		if strings.Contains(strings.ToLower(string(out)), strings.ToLower(byName[n].MAC)) {
			return n, nil
		}
	}
	return "", fmt.Errorf("%s's MAC (%s) is neither lb's", addr, strings.TrimSpace(string(out)))
}

// activeActive is TestCluster's step 4 (issue 15, part 1). Each lb holds one
// of the two VIPs and serves through it; a client stuck to a web node
// through one lb is sent to the same web node by the other (HAProxy's
// stick tables, shared through the peers section). Then the holder of the
// first VIP is stopped (its power cut) while a steady stream of requests
// from several sources runs against each VIP: the other VIP's stream may
// lose no request, the moved VIP's stays within the bounds above, and the
// stuck clients keep their web node through the lb that took the VIP.
func activeActive(ctx context.Context, t *testing.T, seg *segment, byName map[string]seedNode, fresh func() []string,
	get func(src, url string) (string, string, error), stop func(name string)) {
	t.Helper()
	url := func(vip string) string { return "http://" + vip + "/" }
	row := func(body string) error {
		if !strings.Contains(body, "hello from the imgforge database") {
			return fmt.Errorf("answered %q", body)
		}
		return nil
	}

	// Each lb holds one VIP (a returning lb preempts the VIP it is the
	// master of), and each answers with the database's row.
	t0 := time.Now()
	holders := map[string]string{}
	err := eventually(ctx, func() error {
		seen := map[string]string{}
		for _, vip := range clusterVIPs {
			body, _, err := get("", url(vip))
			if err == nil {
				err = row(body)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", vip, err)
			}
			h, err := vipHolder(seg, byName, vip)
			if err != nil {
				return err
			}
			if o, ok := seen[h]; ok {
				return fmt.Errorf("%s holds both %s and %s", h, o, vip)
			}
			seen[h] = vip
			holders[vip] = h
		}
		return nil
	})
	if err != nil {
		t.Fatalf("active-active: %v", err)
	}
	t.Logf("step 4: %s holds %s and %s holds %s, both answer with the row (after %.0fs)",
		holders[clusterVIPs[0]], clusterVIPs[0], holders[clusterVIPs[1]], clusterVIPs[1], time.Since(t0).Seconds())

	// Clients stuck through the first VIP's lb, asked again through the
	// other's: the same web node. All go through the first lb before any
	// goes through the second, so that its stick table has each entry
	// from its peer before the client's request comes (an lb that had no
	// entry yet would make its own and send it to its peer).
	stuck := fresh()
	// A stuck client's request is tried up to three times: on a cluster
	// short of CPU one may outlast the client's 10 s, and the retry, from
	// the same source, meets the same stick-table entry (HAProxy made it
	// when the first one came).
	getStuck := func(src, u string) (body, web string, err error) {
		for try := 1; try <= 3; try++ {
			if body, web, err = get(src, u); err == nil {
				return body, web, nil
			}
			t.Logf("step 4: client %s through %s, try %d: %v", src, u, try, err)
			time.Sleep(2 * time.Second)
		}
		return body, web, err
	}
	webOf := map[string]string{}
	for _, src := range stuck {
		body, web, err := getStuck(src, url(clusterVIPs[0]))
		if err == nil {
			err = row(body)
		}
		if err != nil || web == "" {
			t.Fatalf("client %s through %s: %v (web node %q)", src, clusterVIPs[0], err, web)
		}
		webOf[src] = web
	}
	sticky := func(vip, when string) {
		t.Helper()
		by := map[string]int{}
		for _, src := range stuck {
			_, web, err := getStuck(src, url(vip))
			if err != nil {
				t.Errorf("client %s through %s %s: %v", src, vip, when, err)
				continue
			}
			by[web]++
			if web != webOf[src] {
				t.Errorf("client %s went to %s through %s %s, to %s through %s before: the stick table was not shared",
					src, web, vip, when, webOf[src], clusterVIPs[0])
			}
		}
		t.Logf("step 4: %d clients kept their web node through %s %s (by web node: %v)", len(stuck), vip, when, by)
	}
	sticky(clusterVIPs[1], "(the other lb)")

	// The failover, under two streams of requests.
	quick := func(vip string) func(src string) error {
		return func(src string) error {
			c := seg.client(src, true, false)
			c.Timeout = failoverTimeout
			resp, err := c.Get(url(vip))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b := new(strings.Builder)
			if _, err := io.Copy(b, resp.Body); err != nil {
				return err
			}
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s %q", resp.Status, b.String())
			}
			return row(b.String())
		}
	}
	moved, kept := clusterVIPs[0], clusterVIPs[1]
	sMoved := startStream(ctx, fresh()[:4], quick(moved))
	sKept := startStream(ctx, fresh()[:4], quick(kept))
	// Both streams answered before the cut.
	if err := eventually(ctx, func() error {
		if a, b := sMoved.counts(), sKept.counts(); a.sent-a.failed < 5 || b.sent-b.failed < 5 {
			return fmt.Errorf("answers so far: %s; %s", a, b)
		}
		return nil
	}); err != nil {
		t.Fatalf("the streams before the failover: %v", err)
	}
	before := sMoved.counts()
	holder := holders[moved]
	t1 := time.Now()
	stop(holder)
	// The moved VIP answers again, from the other lb, and goes on
	// answering for 20 more requests.
	err = eventually(ctx, func() error {
		if h, err := vipHolder(seg, byName, moved); err != nil || h == holder {
			return fmt.Errorf("%s is still at %s's MAC (%w)", moved, holder, err)
		}
		if c := sMoved.since(before); c.sent-c.failed < 20 {
			return fmt.Errorf("%d answers since the cut", c.sent-c.failed)
		}
		return nil
	})
	a, b := sMoved.stop(), sKept.stop()
	if err != nil {
		t.Fatalf("after %s stopped: %v; %s: %s", holder, err, moved, a)
	}
	t.Logf("step 4: %s (holder of %s) stopped; %s then answered from its peer; requests to %s: %s; to %s: %s (%.0fs)",
		holder, moved, moved, moved, a, kept, b, time.Since(t1).Seconds())
	for _, e := range a.errs {
		t.Logf("  %s: %s", moved, e)
	}
	if b.failed > 0 {
		t.Errorf("requests to %s, whose lb kept running, failed: %s %v", kept, b, b.errs)
	}
	if a.gap > maxFailoverGap || a.failed > maxFailoverFail {
		t.Errorf("the failover of %s: %s; bounds: a gap of %s, %d failed", moved, a, maxFailoverGap, maxFailoverFail)
	}
	sticky(moved, "after the failover")
}
