package render

import (
	"fmt"
	"net/netip"
)

// Ports the lb role uses.
const (
	peersPort = 10000 // haproxy peers (stick tables)
	httpPort  = 80
	httpsPort = 443
)

type lbServer struct {
	Name        string
	HTTP, HTTPS string // address:port
}

type lbPeer struct {
	Name, Addr string
}

type vrrpInstance struct {
	Name      string
	Interface string
	RouterID  int
	Priority  int
	Master    bool // the node that holds this VIP while everything is up
	Address   string
}

type lbData struct {
	Self     string
	SelfAddr string
	Peers    []lbPeer // every lb node, self included (haproxy peers)
	Unicast  []string // the other lb nodes' addresses (VRRP)
	Web      []lbServer
	VIPs     []vrrpInstance
}

// lb renders haproxy.cfg and keepalived.conf.
//
// Priorities: the lb nodes are sorted by name; for VIP j the node at
// index (j mod N) is master (priority 250), the next one 249, and so on,
// so with two VIPs on two nodes each node is master of one and either
// takes both when the other fails.
func (r *Renderer) lb(c *Config, in *Input) error {
	lbs := in.members(RoleLB, true)
	self := -1
	d := lbData{Self: in.Self.Name, SelfAddr: in.Self.Address.String()}
	for i, n := range lbs {
		d.Peers = append(d.Peers, lbPeer{Name: n.Name, Addr: hostPort(n.Address, peersPort)})
		if n.Name == in.Self.Name {
			self = i
		} else {
			d.Unicast = append(d.Unicast, n.Address.String())
		}
	}
	for _, n := range in.members(RoleWeb, false) {
		d.Web = append(d.Web, lbServer{Name: n.Name, HTTP: hostPort(n.Address, httpPort), HTTPS: hostPort(n.Address, httpsPort)})
	}
	for j, v := range in.VIPs {
		rank := ((self-j)%len(lbs) + len(lbs)) % len(lbs)
		d.VIPs = append(d.VIPs, vrrpInstance{
			Name:      fmt.Sprintf("VI_%d", j),
			Interface: v.Interface,
			RouterID:  routerID(v, j),
			Priority:  max(1, 250-rank),
			Master:    rank == 0,
			Address:   netip.PrefixFrom(v.Address, v.Prefix).String(),
		})
	}
	haproxy, err := r.execute("lb/haproxy.cfg.tmpl", d)
	if err != nil {
		return err
	}
	keepalived, err := r.execute("lb/keepalived.conf.tmpl", d)
	if err != nil {
		return err
	}
	c.Services = append(c.Services,
		Service{
			Name: "haproxy",
			Files: []File{{
				Path: "/etc/haproxy/haproxy.cfg", Mode: 0o644, Owner: "root", Group: "root", Data: haproxy,
				Check: []string{"haproxy", "-c", "-f", Candidate},
			}},
			Then: [][]string{reload("haproxy.service")},
		},
		Service{
			Name: "keepalived",
			Files: []File{{
				Path: "/etc/keepalived/keepalived.conf", Mode: 0o644, Owner: "root", Group: "root", Data: keepalived,
				Check: []string{"keepalived", "--config-test", "--use-file", Candidate},
			}},
			Then: [][]string{reload("keepalived.service")},
		},
	)
	return nil
}

// hostPort is ADDR:PORT, with IPv6 addresses in brackets.
func hostPort(a netip.Addr, port uint16) string {
	return netip.AddrPortFrom(a, port).String()
}
