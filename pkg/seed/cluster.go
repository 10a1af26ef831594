package seed

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/names"
	"github.com/imgforge/imgforge/pkg/spec"
)

// Cluster is a topology file (imgforge seed --cluster FILE): the cluster,
// its network, VIPs and discovery, and its nodes. Secrets are not in it:
// Generate makes them once into secrets.yaml (a gossip key may be given).
type Cluster struct {
	Cluster           string             `yaml:"cluster"`
	Network           Network            `yaml:"network"`
	VIPs              []ClusterVIP       `yaml:"vips"`
	Discovery         ClusterDiscovery   `yaml:"discovery"`
	TLS               *ClusterTLS        `yaml:"tls"`
	Database          *ClusterDatabase   `yaml:"database"`
	Monitoring        *ClusterMonitoring `yaml:"monitoring"`
	SSHAuthorizedKeys []string           `yaml:"ssh_authorized_keys"`
	Nodes             []ClusterNode      `yaml:"nodes"`

	roles Roles // the definitions of the nodes' roles
}

// Network is the nodes' shared network. Empty Subnet means DHCP (only for
// a single node).
type Network struct {
	Subnet    string   `yaml:"subnet"`
	Gateway   string   `yaml:"gateway"`
	DNS       []string `yaml:"dns"`
	Interface string   `yaml:"interface"` // the name the NIC gets (set-name); default eth0
}

// ClusterVIP is a VIP; prefix and interface default to the network's.
type ClusterVIP struct {
	Address   string `yaml:"address"`
	Prefix    int    `yaml:"prefix"`
	Interface string `yaml:"interface"`
}

// ClusterDiscovery is the agent's discovery block, with defaults: method
// gossip, join = the nodes of a role with vips: true, the lb nodes (or the
// first node), key generated.
type ClusterDiscovery struct {
	Method string         `yaml:"method"`
	Gossip *ClusterGossip `yaml:"gossip"`
	DNS    *config.DNS    `yaml:"dns"`
}

// ClusterGossip is the gossip block; a Key left out is generated, an empty
// one is an error.
type ClusterGossip struct {
	Port int      `yaml:"port"`
	Join []string `yaml:"join"` // node names or addresses
	Key  *string  `yaml:"key"`
	// Profile is memberlist's tuning on every node (config.GossipProfiles;
	// empty: the agent's default, lan).
	Profile string `yaml:"profile"`
}

// ClusterTLS gives the nodes of a role that renders the TLS pair (web) a
// certificate: files relative to the cluster file, or self_signed (the
// default).
type ClusterTLS struct {
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	SelfSigned bool   `yaml:"self_signed"`
}

// ClusterMonitoring is the section's monitoring block, except that the
// logs client pair (systemd-journal-upload authenticates with a client
// certificate) is given as files relative to the cluster file.
type ClusterMonitoring struct {
	MetricsURL   string `yaml:"metrics_url"`
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	BearerToken  string `yaml:"bearer_token"`
	LogsURL      string `yaml:"logs_url"`
	TracesURL    string `yaml:"traces_url"`     // OTLP/HTTP, with the metrics credentials
	LogsCertFile string `yaml:"logs_cert_file"` // PEM client certificate (chain)
	LogsKeyFile  string `yaml:"logs_key_file"`  // its PEM key
	CA           string `yaml:"ca"`             // PEM certificates to trust
}

// ClusterDatabase names the database users; their passwords are made
// into secrets.yaml.
type ClusterDatabase struct {
	User            string `yaml:"user"`
	ReplicationUser string `yaml:"replication_user"`
}

// ClusterNode is one machine.
type ClusterNode struct {
	Name    string            `yaml:"name"`
	Role    string            `yaml:"role"`
	Address string            `yaml:"address"` // in the subnet; prefix from it
	MAC     string            `yaml:"mac"`     // default: derived from cluster and node name
	ID      uint32            `yaml:"id"`      // default: the low 32 bits of the address
	Options map[string]string `yaml:"options"` // its role's options (the role file's), such as runtime or mode
}

var macRe = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)

// Defaults for a cluster file.
const (
	DefaultInterface = "eth0"
	DefaultDBUser    = "imgforge"
	DefaultReplUser  = "replication"
)

// ParseCluster reads a cluster file strictly and validates it against
// the role definitions roles. Errors name the file, line, column and field
// and say what is accepted.
func ParseCluster(file string, data []byte, roles Roles) (*Cluster, error) {
	if len(data) > MaxClusterFile {
		return nil, fmt.Errorf("%s: the cluster file is larger than %d bytes (1 MiB); accepted: a cluster file of at most 1 MiB", file, MaxClusterFile)
	}
	c := Cluster{roles: roles}
	src, err := spec.DecodeStrict(file, data, &c)
	if err != nil {
		return nil, err
	}
	if err := c.validate(src, filepath.Dir(file)); err != nil {
		return nil, err
	}
	return &c, nil
}

// MaxClusterFile is the largest cluster file accepted: far more than a
// person writes, far less than would tie the tool up.
const MaxClusterFile = 1 << 20

// LoadCluster reads the cluster file at path (see ParseCluster).
func LoadCluster(path string, roles Roles) (*Cluster, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading cluster file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxClusterFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading cluster file: %w", err)
	}
	return ParseCluster(path, data, roles)
}

// reserved names what a of subnet is reserved for: "network" (the
// subnet's first address), "broadcast" (IPv4's last, in subnets larger
// than /31) or "gateway"; "" when it is free.
func reserved(subnet netip.Prefix, gateway string, a netip.Addr) string {
	switch {
	case a == subnet.Masked().Addr():
		return "network"
	case a.Is4() && subnet.Bits() < 31 && a == lastAddr(subnet):
		return "broadcast"
	}
	if g, err := netip.ParseAddr(gateway); err == nil && a == g.Unmap() {
		return "gateway"
	}
	return ""
}

func (c *Cluster) validate(src spec.Source, dir string) error {
	if !names.Cluster(c.Cluster) {
		return src.Errorf("cluster", "%q is not a cluster name; accepted: lower-case letters, digits and '-', starting with a letter", c.Cluster)
	}
	if c.Network.Interface == "" {
		c.Network.Interface = DefaultInterface
	}
	var subnet netip.Prefix
	if c.Network.Subnet != "" {
		p, err := netip.ParsePrefix(c.Network.Subnet)
		if err != nil || p != p.Masked() {
			return src.Errorf("network.subnet", "%q is not a network; accepted: a network such as 10.10.0.0/24", c.Network.Subnet)
		}
		subnet = p
		if c.Network.Gateway != "" {
			g, err := netip.ParseAddr(c.Network.Gateway)
			if err != nil || !subnet.Contains(g) {
				return src.Errorf("network.gateway", "%q is not an address in %s; accepted: the router's address in the subnet", c.Network.Gateway, subnet)
			}
		}
	} else if c.Network.Gateway != "" || len(c.VIPs) > 0 && len(c.Nodes) > 1 {
		return src.Errorf("network.subnet", "is missing; accepted: a network such as 10.10.0.0/24")
	}
	for i, d := range c.Network.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return src.Errorf(fmt.Sprintf("network.dns[%d]", i), "%q is not an IP address", d)
		}
	}
	if len(c.Nodes) == 0 {
		return src.Errorf("nodes", "is empty; accepted: a list of {name, role, address}")
	}
	seen := map[string]bool{}
	addrs := map[netip.Addr]string{}
	macs := map[string]string{}
	for i, n := range c.Nodes {
		f := fmt.Sprintf("nodes[%d]", i)
		if !names.Node(n.Name) {
			return src.Errorf(f+".name", "%q is not a node name; accepted: lower-case letters, digits and '-', at most 63", n.Name)
		}
		if seen[n.Name] {
			return src.Errorf(f+".name", "%q is a duplicate node name; every node needs its own", n.Name)
		}
		seen[n.Name] = true
		if c.roles[n.Role] == nil {
			return src.Errorf(f+".role", "unknown role %q; accepted: %s", n.Role, strings.Join(c.roles.names(), ", "))
		}
		if n.Address == "" {
			if len(c.Nodes) > 1 || subnet.IsValid() {
				return src.Errorf(f+".address", "is missing; accepted: an address in the subnet, such as 10.10.0.11")
			}
		} else {
			a, err := config.ParseMemberAddress(n.Address)
			if err != nil {
				return src.Errorf(f+".address", "%v", err)
			}
			if !subnet.IsValid() {
				return src.Errorf("network.subnet", "is missing; node addresses need it")
			}
			if !subnet.Contains(a) {
				return src.Errorf(f+".address", "%s is outside the subnet %s; accepted: an address in %s", a, subnet, subnet)
			}
			if a == subnet.Addr() || (a.Is4() && subnet.Bits() < 31 && a == lastAddr(subnet)) || a.String() == c.Network.Gateway {
				return src.Errorf(f+".address", "%s is the network, broadcast or gateway address of %s", a, subnet)
			}
			if other, dup := addrs[a]; dup {
				return src.Errorf(f+".address", "%s is a duplicate node address (also %s's)", a, other)
			}
			addrs[a] = n.Name
		}
		if n.MAC != "" {
			m := strings.ToLower(n.MAC)
			if !macRe.MatchString(m) || hexByte(m[:2])&1 == 1 {
				return src.Errorf(f+".mac", "%q is not a unicast MAC address; accepted: six hex bytes such as 52:54:00:12:34:56", n.MAC)
			}
			if other, dup := macs[m]; dup {
				return src.Errorf(f+".mac", "%s is a duplicate MAC address (also %s's)", m, other)
			}
			macs[m] = n.Name
			c.Nodes[i].MAC = m
		}
	}
	for i, v := range c.VIPs {
		f := fmt.Sprintf("vips[%d]", i)
		a, err := config.ParseMemberAddress(v.Address)
		if err != nil {
			return src.Errorf(f+".address", "%v", err)
		}
		if subnet.IsValid() && !subnet.Contains(a) {
			return src.Errorf(f+".address", "%s is outside the subnet %s; accepted: an address in %s", a, subnet, subnet)
		}
		if other, ok := addrs[a]; ok {
			return src.Errorf(f+".address", "%s is node %s's address; a VIP must be an address no node has", a, other)
		}
		if subnet.IsValid() {
			if what := reserved(subnet, c.Network.Gateway, a); what != "" {
				return src.Errorf(f+".address", "%s is the %s address of %s; accepted: an address in %s that no node, gateway or broadcast has", a, what, subnet, subnet)
			}
		}
		if v.Prefix == 0 {
			c.VIPs[i].Prefix = subnet.Bits()
		}
		if c.VIPs[i].Prefix < 1 || c.VIPs[i].Prefix > a.BitLen() {
			return src.Errorf(f+".prefix", "%d is out of range; accepted: 1 to %d", v.Prefix, a.BitLen())
		}
		if v.Interface == "" {
			c.VIPs[i].Interface = c.Network.Interface
		}
	}
	if err := c.validateRoles(src); err != nil {
		return err
	}
	if err := c.validateDiscovery(src, addrs, seen); err != nil {
		return err
	}
	if c.TLS != nil {
		if c.TLS.SelfSigned && (c.TLS.CertFile != "" || c.TLS.KeyFile != "") {
			return src.Errorf("tls", "give either cert_file and key_file, or self_signed: true")
		}
		if !c.TLS.SelfSigned {
			if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
				return src.Errorf("tls", "needs cert_file and key_file, or self_signed: true")
			}
			for _, p := range []*string{&c.TLS.CertFile, &c.TLS.KeyFile} {
				if !filepath.IsAbs(*p) {
					*p = filepath.Join(dir, *p)
				}
			}
		}
	}
	if m := c.Monitoring; m != nil {
		switch {
		case m.LogsURL == "" && (m.LogsCertFile != "" || m.LogsKeyFile != ""):
			return src.Errorf("monitoring.logs_cert_file", "is set but logs_url is not; accepted: logs_cert_file and logs_key_file together with logs_url")
		case m.LogsCertFile != "" && m.LogsKeyFile == "":
			return src.Errorf("monitoring.logs_key_file", "is missing; logs_cert_file needs its key; accepted: a PEM key file, relative to this file")
		case m.LogsKeyFile != "" && m.LogsCertFile == "":
			return src.Errorf("monitoring.logs_cert_file", "is missing; logs_key_file needs its certificate; accepted: a PEM certificate file, relative to this file")
		case m.LogsURL != "" && m.LogsCertFile == "":
			return src.Errorf("monitoring.logs_cert_file", "is missing; systemd-journal-upload authenticates to logs_url with a client certificate; accepted: logs_cert_file and logs_key_file (PEM files, relative to this file)")
		}
		for _, p := range []*string{&m.LogsCertFile, &m.LogsKeyFile} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
	}
	if c.Database != nil {
		for _, u := range []struct{ k, v string }{{"user", c.Database.User}, {"replication_user", c.Database.ReplicationUser}} {
			if u.v != "" && !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,31}$`).MatchString(u.v) {
				return src.Errorf("database."+u.k, "%q is not a database user name; accepted: letters, digits and '_', at most 32", u.v)
			}
		}
	}
	return nil
}

func (c *Cluster) validateDiscovery(src spec.Source, addrs map[netip.Addr]string, names map[string]bool) error {
	d := &c.Discovery
	if d.Method == "" {
		d.Method = config.MethodGossip
	}
	if !slices.Contains(config.Methods, d.Method) {
		return src.Errorf("discovery.method", "unknown discovery method %q; accepted: %s", d.Method, strings.Join(config.Methods, ", "))
	}
	if d.Method != config.MethodGossip && d.Gossip != nil {
		return src.Errorf("discovery.gossip", "is set but the method is %s", d.Method)
	}
	if d.Method != config.MethodDNS && d.DNS != nil {
		return src.Errorf("discovery.dns", "is set but the method is %s", d.Method)
	}
	if d.Method == config.MethodDNS && d.DNS == nil {
		return src.Errorf("discovery", "method dns needs a dns: {records: [...]} block")
	}
	if d.Method != config.MethodGossip {
		return nil
	}
	if d.Gossip == nil {
		d.Gossip = &ClusterGossip{}
	}
	g := d.Gossip
	if g.Port != 0 && (g.Port < 1 || g.Port > 65535) {
		return src.Errorf("discovery.gossip.port", "%d is out of range; accepted: 1 to 65535", g.Port)
	}
	if g.Profile != "" && !slices.Contains(config.GossipProfiles, g.Profile) {
		return src.Errorf("discovery.gossip.profile", "unknown gossip profile %q; accepted: %s", g.Profile, strings.Join(config.GossipProfiles, ", "))
	}
	if g.Key != nil {
		if _, err := config.DecodeGossipKey(*g.Key); err != nil {
			if *g.Key == "" {
				return src.Errorf("discovery.gossip.key", "is empty; accepted: the base64 of 32 random bytes, or leave the field out and imgforge seed makes one")
			}
			return src.Errorf("discovery.gossip.key", "%v", err)
		}
	}
	for i, j := range g.Join {
		if names[j] {
			continue
		}
		ap, err := config.ParseJoin(j, config.DefaultGossipPort)
		if err != nil {
			return src.Errorf(fmt.Sprintf("discovery.gossip.join[%d]", i), "%v; accepted: a node's name or address", err)
		}
		if _, ok := addrs[ap.Addr()]; !ok {
			return src.Errorf(fmt.Sprintf("discovery.gossip.join[%d]", i), "%s is unreachable: no node has that address; accepted: a node's name or address (%s)", ap.Addr(), strings.Join(nodeList(c.Nodes), ", "))
		}
	}
	return nil
}

func nodeList(ns []ClusterNode) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Name)
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func hexByte(s string) byte {
	var b byte
	_, _ = fmt.Sscanf(s, "%02x", &b)
	return b
}
