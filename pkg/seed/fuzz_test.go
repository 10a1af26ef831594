package seed

import (
	"os"
	"strings"
	"testing"
	"time"
)

// FuzzParseCluster: a cluster file never panics the parser, every error
// is one line naming the file, and whatever parses makes seeds whose
// user-data the agent accepts.
func FuzzParseCluster(f *testing.F) {
	b, err := os.ReadFile("testdata/cluster.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("cluster: a\nnodes: [{name: w, role: web}]\n"))
	f.Add([]byte("cluster: a\nnetwork: {subnet: fd00::/64}\nnodes: [{name: d, role: db, address: 'fd00::5'}]\ndiscovery: {method: static}\n"))
	roles := testRoles(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseCluster("c.yaml", data, roles)
		if err != nil {
			if strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "c.yaml") {
				t.Fatalf("bad error %q", err)
			}
			return
		}
		if c.TLS != nil && !c.TLS.SelfSigned {
			return // would read files
		}
		sec := Secrets{Cluster: c.Cluster, GossipKey: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", DatabasePassword: "password-1", ReplicationPassword: "password-2"}
		if c.Discovery.Gossip != nil && c.Discovery.Gossip.Key != nil {
			sec.GossipKey = *c.Discovery.Gossip.Key
		}
		if err := identities(c, &sec, Options{Rand: testRand(1), Now: func() time.Time { return testTime }}, "secrets.yaml"); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.Nodes {
			if _, _, err := NodeSeed(c, n, sec, nil, nil); err != nil && !strings.Contains(err.Error(), "static discovery needs") {
				t.Fatalf("node %s: %v", n.Name, err)
			}
		}
	})
}
