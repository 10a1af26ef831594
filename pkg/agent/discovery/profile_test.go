package discovery

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/config"
)

// TestGossipConfigProfiles: each profile gives its tuning, neither
// compresses, and an unknown profile is an error naming the accepted ones.
func TestGossipConfigProfiles(t *testing.T) {
	tests := []struct {
		profile              string
		probe, probeTimeout  time.Duration
		gossip               time.Duration
		gossipNodes, suspect int
		err                  string
	}{
		{"", time.Second, 500 * time.Millisecond, 100 * time.Millisecond, 3, 4, ""},
		{"lan", time.Second, 500 * time.Millisecond, 100 * time.Millisecond, 3, 4, ""},
		{"large", LargeConfig().ProbeInterval, LargeConfig().ProbeTimeout, LargeConfig().GossipInterval, LargeConfig().GossipNodes, LargeConfig().SuspicionMult, ""},
		{"huge", 0, 0, 0, 0, 0, `unknown gossip profile "huge"; accepted: lan, large`},
		{"LAN", 0, 0, 0, 0, 0, `unknown gossip profile "LAN"; accepted: lan, large`},
	}
	for _, tt := range tests {
		t.Run(tt.profile, func(t *testing.T) {
			c, err := GossipConfig(tt.profile)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("err %v; want %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.ProbeInterval != tt.probe || c.ProbeTimeout != tt.probeTimeout || c.GossipInterval != tt.gossip || c.GossipNodes != tt.gossipNodes || c.SuspicionMult != tt.suspect {
				t.Errorf("probe %v/%v gossip %v to %d, suspicion %d", c.ProbeInterval, c.ProbeTimeout, c.GossipInterval, c.GossipNodes, c.SuspicionMult)
			}
			if c.EnableCompression {
				t.Error("compresses")
			}
			if c.ProbeTimeout >= c.ProbeInterval {
				t.Errorf("probe timeout %v is not under the interval %v", c.ProbeTimeout, c.ProbeInterval)
			}
		})
	}
	// The large profile is at least as patient as lan in every knob.
	lan, large := LANConfig(), LargeConfig()
	if large.ProbeTimeout <= lan.ProbeTimeout || large.SuspicionMult < lan.SuspicionMult || large.ProbeInterval < lan.ProbeInterval {
		t.Errorf("large is not more patient than lan: %+v", large)
	}
}

// TestGossipProfilesMatchConfig: the agent's configuration accepts exactly
// the profiles this package has, and a user-data that sets one reaches
// the gossip options.
func TestGossipProfilesMatchConfig(t *testing.T) {
	if !slices.Equal(Profiles, config.GossipProfiles) {
		t.Fatalf("discovery has %v, config accepts %v", Profiles, config.GossipProfiles)
	}
	doc, err := os.ReadFile("../config/testdata/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range Profiles {
		d := strings.Replace(string(doc), "      port: 7946\n", "      port: 7946\n      profile: "+p+"\n", 1)
		c, _, err := config.Parse("user-data", []byte(d))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if c.Discovery.Gossip.Profile != p {
			t.Fatalf("profile %q; want %s", c.Discovery.Gossip.Profile, p)
		}
	}
}

// TestGossipLargeProfileConverges: 40 members with the large profile all
// see each other and see a late member join, with signed metadata. It
// waits on changes, not on a time: the time is the benchmark's business.
func TestGossipLargeProfileConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("40 gossip members; the benchmark measures the time")
	}
	const n = 40
	ca := clusterCA(t, "big")
	start := func(i int, join []string) *Gossip {
		name := fmt.Sprintf("web-%d", i)
		g, err := NewGossip(t.Context(), GossipOptions{
			Cluster: "big", Self: Member{Name: name, Role: "web", Address: netip.AddrFrom4([4]byte{127, 11, 0, byte(i)}), Healthy: true},
			Key: testKey, Join: join, JoinWait: 200 * time.Millisecond, Profile: ProfileLarge,
			Identity: ca.node(t, "web", name),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = g.Kill() })
		return g
	}
	first := start(1, nil)
	seed := []string{first.Addr().String()}
	members := []*Gossip{first}
	for i := 2; i <= n; i++ {
		members = append(members, start(i, seed))
	}
	for _, g := range members {
		waitMembers(t, g, n)
	}
	late := start(n+1, []string{members[n/2].Addr().String()})
	for _, g := range append(members, late) {
		s := waitMembers(t, g, n+1)
		for _, m := range s.All() {
			if !m.Verified || !m.Healthy {
				t.Fatalf("%+v", m)
			}
		}
	}
}

// waitMembers waits until g sees k members, up to 3 minutes: far longer
// than the seconds it takes even on a loaded machine.
func waitMembers(t *testing.T, g *Gossip, k int) Set {
	t.Helper()
	deadline := time.After(3 * time.Minute)
	for {
		s := g.Members()
		if s.Len() == k {
			return s
		}
		select {
		case <-g.Changes():
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%s sees %d members; want %d", g.o.Self.Name, s.Len(), k)
		}
	}
}
