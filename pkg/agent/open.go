package agent

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/discovery"
)

// ResolvConf is where DNS discovery finds a resolver when none is given.
const ResolvConf = "/etc/resolv.conf"

// OpenDiscovery starts the discovery backend the settings name.
func OpenDiscovery(ctx context.Context, c *config.Config, self discovery.Member, logf func(string, ...any)) (discovery.Discoverer, error) {
	d := c.Discovery
	switch d.Method {
	case config.MethodStatic:
		var ms []discovery.Member
		for _, m := range d.Static.Members {
			a, err := config.ParseMemberAddress(m.Address)
			if err != nil {
				return nil, err
			}
			ms = append(ms, discovery.Member{Name: m.Name, Role: m.Role, Address: a, Mode: m.Mode})
		}
		return discovery.NewStatic(ms), nil
	case config.MethodDNS:
		resolver := d.DNS.Resolver
		if resolver == "" {
			r, err := discovery.ResolverFromFile(ResolvConf)
			if err != nil {
				return nil, err
			}
			resolver = r
		} else if _, err := netip.ParseAddr(resolver); err == nil {
			resolver = netip.AddrPortFrom(netip.MustParseAddr(resolver), 53).String()
		}
		var recs []discovery.Record
		for _, r := range d.DNS.Records {
			recs = append(recs, discovery.Record{Role: r.Role, Name: r.Name, SRV: r.SRV, Mode: r.Mode})
		}
		return discovery.NewDNS(ctx, discovery.DNSOptions{Resolver: resolver, Interval: d.DNS.PollInterval(), Records: recs, Logf: logf})
	case config.MethodGossip:
		key, err := d.Gossip.DecodeKey()
		if err != nil {
			return nil, fmt.Errorf("gossip key %w", err)
		}
		var join []string
		for _, j := range d.Gossip.Join {
			ap, err := config.ParseJoin(j, d.Gossip.GossipPort())
			if err != nil {
				return nil, err
			}
			if ap != netip.AddrPortFrom(self.Address, uint16(d.Gossip.GossipPort())) {
				join = append(join, ap.String())
			}
		}
		id, err := c.ParseIdentity()
		if err != nil {
			return nil, fmt.Errorf("%s.identity: %w", config.Section, err)
		}
		return discovery.NewGossip(ctx, discovery.GossipOptions{
			Cluster: c.Cluster, Self: self, Port: d.Gossip.GossipPort(), Key: key, Join: join, Identity: id, Logf: logf,
			Profile: d.Gossip.Profile,
		})
	}
	return nil, fmt.Errorf("unknown discovery method %q", d.Method)
}
