package seed

import (
	"strings"
	"testing"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/spec"
)

// TestDataRole: a role that exists only as data (a cache in front of the
// web nodes, with its own boot option and the VIPs) is seeded from its
// role file with no Go change: its option is checked against its choices
// and written, its default filled, the VIPs given and required, and its
// nodes are the default gossip join list.
func TestDataRole(t *testing.T) {
	roles := testRoles(t)
	const cacheYAML = `name: cache
health: {type: tcp, port: 6081}
discover: [web]
vips: true
options:
  - {name: balance, default: round-robin, boot: true, choices: {round-robin: {}, random: {}}}
`
	r, src, err := spec.ParseRole("roles/cache.yaml", []byte(cacheYAML))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(src, append(roles.names(), "cache")); err != nil {
		t.Fatal(err)
	}
	roles["cache"] = r
	const cluster = `cluster: shop
network: {subnet: 10.10.0.0/24}
vips: [{address: 10.10.0.100}]
discovery: {method: static}
nodes:
  - {name: cache-1, role: cache, address: 10.10.0.51, options: {balance: random}}
  - {name: cache-2, role: cache, address: 10.10.0.52}
  - {name: web-1, role: web, address: 10.10.0.21}
`
	c, err := ParseCluster("cluster.yaml", []byte(cluster), roles)
	if err != nil {
		t.Fatal(err)
	}
	sec := Secrets{Cluster: c.Cluster, DatabasePassword: "password-1", ReplicationPassword: "password-2"}
	for _, tt := range []struct{ node, balance string }{{"cache-1", "random"}, {"cache-2", "round-robin"}} {
		i := nodeIndex(c, tt.node)
		s, _, err := NodeSeed(c, c.Nodes[i], sec, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _, err := config.Parse(tt.node+"/user-data", s.UserData)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Options["balance"] != tt.balance || len(cfg.VIPs) != 1 || cfg.TLS != nil || cfg.Database != nil {
			t.Errorf("%s: options %v, vips %v, tls %v, database %v; want balance %s, the VIP and nothing else", tt.node, cfg.Options, cfg.VIPs, cfg.TLS, cfg.Database, tt.balance)
		}
	}
	if got := joinAddresses(&Cluster{Nodes: c.Nodes, roles: roles, Discovery: ClusterDiscovery{Gossip: &ClusterGossip{}}}); strings.Join(got, ",") != "10.10.0.51,10.10.0.52" {
		t.Errorf("default join list %v, want the cache nodes (they hold the VIPs)", got)
	}
	for _, tt := range []struct{ old, new, want string }{
		{"{balance: random}", "{balance: fastest}", `cluster.yaml:6:74: field "nodes[0].options.balance": "fastest" is not accepted; accepted: random, round-robin`},
		{"vips: [{address: 10.10.0.100}]\n", "", `field "vips": the cache nodes hold the cluster's VIPs (vips: true in their role file) and need at least one`},
	} {
		_, err := ParseCluster("cluster.yaml", []byte(strings.Replace(cluster, tt.old, tt.new, 1)), roles)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v, want %q", err, tt.want)
		}
	}
}

func nodeIndex(c *Cluster, name string) int {
	for i, n := range c.Nodes {
		if n.Name == name {
			return i
		}
	}
	return -1
}
