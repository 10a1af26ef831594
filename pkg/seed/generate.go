package seed

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/identity"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/spec"
)

// SecretsFile is where a cluster's secrets are kept, in the output folder.
const SecretsFile = "secrets.yaml"

// NodesFile lists the generated nodes (name, role, address, MAC, seed) as JSON.
const NodesFile = "nodes.json"

// Secrets are a cluster's generated secrets, made once and reused: the
// gossip key, the database passwords, the cluster CA and each node's
// identity (its key and certificate from the CA).
type Secrets struct {
	Cluster             string `yaml:"cluster"`
	GossipKey           string `yaml:"gossip_key"`
	DatabasePassword    string `yaml:"database_password"`
	ReplicationPassword string `yaml:"replication_password"`
	// CA is the cluster CA (package identity): made on the first run.
	CA *KeyPair `yaml:"ca,omitempty"`
	// Nodes are the nodes' identities by name, issued again when a node's
	// role changes or its certificate nears its end.
	Nodes map[string]NodeIdentity `yaml:"nodes,omitempty"`
}

// KeyPair is a PEM certificate and its PEM key.
type KeyPair struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// NodeIdentity is one node's certificate and key.
type NodeIdentity struct {
	Role    string `yaml:"role"`
	KeyPair `yaml:",inline"`
}

// Options control Generate.
type Options struct {
	Out     string           // output folder: DIR/NODE/{meta-data,user-data,network-config,seed.iso}
	Rand    io.Reader        // for secrets (crypto/rand in the CLI)
	ModTime time.Time        // stamped into the ISOs
	Now     func() time.Time // when certificates start; default time.Now
}

// NodeResult is what Generate made for one node.
type NodeResult struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Address string `json:"address,omitempty"`
	MAC     string `json:"mac"`
	Dir     string `json:"dir"`
	ISO     string `json:"iso"`
}

// DeriveMAC is the MAC a node gets when the cluster file gives none: the
// first five bytes of SHA-256("imgforge-mac\x00" + cluster + "\x00" +
// node) after a 0x02 byte, so locally administered, unicast, and the same
// on every run.
func DeriveMAC(cluster, node string) string {
	h := sha256.Sum256([]byte("imgforge-mac\x00" + cluster + "\x00" + node))
	return net.HardwareAddr(append([]byte{0x02}, h[:5]...)).String()
}

// writeISO is WriteISO; tests make it fail.
var writeISO = WriteISO

// Generate writes the seed of every node of c, and the cluster's secrets
// (made on the first run, read back on later ones, so a re-run gives the
// same files). It writes all or nothing: everything is made in a new
// folder (inside the output folder, or beside it when there is none yet)
// and moved into place once all of it was written.
func Generate(c *Cluster, o Options) (res []NodeResult, err error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	sec, err := loadSecrets(c, o)
	if err != nil {
		return nil, err
	}
	var tls *config.TLS
	if c.TLS != nil && !c.TLS.SelfSigned {
		cert, err := os.ReadFile(c.TLS.CertFile)
		if err != nil {
			return nil, fmt.Errorf("reading tls.cert_file: %w", err)
		}
		key, err := os.ReadFile(c.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("reading tls.key_file: %w", err)
		}
		tls = &config.TLS{Cert: string(cert), Key: string(key)}
	} else {
		tls = &config.TLS{SelfSigned: true}
	}
	mon, err := monitoring(c.Monitoring)
	if err != nil {
		return nil, err
	}
	// The files are made in a folder on the same file system as where
	// they go: inside the output folder when it exists (it may be a mount
	// point), else beside it, to become it.
	out := filepath.Clean(o.Out)
	where, pattern := out, ".imgforge-seed-*"
	if _, err := os.Lstat(out); errors.Is(err, fs.ErrNotExist) {
		where, pattern = filepath.Dir(out), "."+filepath.Base(out)+".new-*"
		if err := os.MkdirAll(where, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", where, err)
		}
	}
	stage, err := os.MkdirTemp(where, pattern)
	if err != nil {
		return nil, fmt.Errorf("making a folder for the new seeds in %s: %w", where, err)
	}
	defer os.RemoveAll(stage)
	if err := os.Chmod(stage, 0o755); err != nil {
		return nil, err
	}
	secText, err := marshalSecrets(sec)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(stage, SecretsFile), secText, 0o600); err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		s, mac, err := NodeSeed(c, n, sec, tls, mon)
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(stage, n.Name)
		if err := WriteDir(dir, s); err != nil {
			return nil, err
		}
		if err := writeISO(filepath.Join(dir, "seed.iso"), s, o.ModTime); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		res = append(res, NodeResult{Name: n.Name, Role: n.Role, Address: n.Address, MAC: mac, Dir: filepath.Join(o.Out, n.Name), ISO: filepath.Join(o.Out, n.Name, "seed.iso")})
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(stage, NodesFile), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	names := []string{SecretsFile} // first: once they are in place, a re-run makes the same seeds
	for _, n := range c.Nodes {
		names = append(names, n.Name)
	}
	if err := commit(stage, out, append(names, NodesFile)); err != nil {
		return nil, err
	}
	return res, nil
}

// commit moves what stage holds into out: the whole folder when out does
// not exist, else each of names, replacing what out has of that name.
func commit(stage, out string, names []string) error {
	if _, err := os.Lstat(out); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(stage, out); err != nil {
			return fmt.Errorf("moving the seeds into %s: %w", out, err)
		}
		return nil
	}
	// Check first that each can replace what is there, so that nothing
	// moves unless everything can.
	for _, name := range names {
		dst := filepath.Join(out, name)
		fi, err := os.Lstat(dst)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("moving the seeds into %s: %w", out, err)
		}
		staged, err := os.Lstat(filepath.Join(stage, name))
		if err != nil {
			return err
		}
		if fi.IsDir() != staged.IsDir() || !fi.IsDir() && !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is in the way: it is not what imgforge seed writes there (a folder per node, regular files); move it away", dst)
		}
	}
	for _, name := range names {
		dst := filepath.Join(out, name)
		old := filepath.Join(stage, ".old-"+name)
		if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
			if err := os.Rename(dst, old); err != nil {
				return fmt.Errorf("moving the seeds into %s: %w", out, err)
			}
		}
		if err := os.Rename(filepath.Join(stage, name), dst); err != nil {
			return fmt.Errorf("moving the seeds into %s: %w", out, err)
		}
	}
	return nil
}

// loadSecrets reads the output folder's secrets.yaml, when there is one,
// and makes what it lacks: it refuses a file that is a symbolic link or
// that others may read.
func loadSecrets(c *Cluster, o Options) (Secrets, error) {
	path := filepath.Join(o.Out, SecretsFile)
	var sec Secrets
	data, err := readSecretsFile(path)
	switch {
	case err == nil:
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&sec); err != nil && !errors.Is(err, io.EOF) {
			return sec, fmt.Errorf("%s: %w", path, err)
		}
		if sec.Cluster != c.Cluster {
			return sec, fmt.Errorf("%s holds the secrets of cluster %q, not %q; use another --out folder", path, sec.Cluster, c.Cluster)
		}
	case errors.Is(err, fs.ErrNotExist):
		sec.Cluster = c.Cluster
	default:
		return sec, err
	}
	if c.Discovery.Gossip != nil && c.Discovery.Gossip.Key != nil {
		sec.GossipKey = *c.Discovery.Gossip.Key
	}
	for _, f := range []struct {
		v *string
		n int
	}{{&sec.GossipKey, config.GossipKeySize}, {&sec.DatabasePassword, 24}, {&sec.ReplicationPassword, 24}} {
		if *f.v != "" {
			continue
		}
		b := make([]byte, f.n)
		if _, err := io.ReadFull(o.Rand, b); err != nil {
			return sec, fmt.Errorf("making secrets: %w", err)
		}
		if f.v == &sec.GossipKey {
			*f.v = base64.StdEncoding.EncodeToString(b)
		} else {
			*f.v = base64.RawURLEncoding.EncodeToString(b)
		}
	}
	if _, err := config.DecodeGossipKey(sec.GossipKey); err != nil {
		return sec, fmt.Errorf("%s: gossip_key %w", path, err)
	}
	if err := identities(c, &sec, o, path); err != nil {
		return sec, err
	}
	return sec, nil
}

// identities makes the cluster CA when there is none, and issues every
// node that has no valid certificate for its role (or one that ends
// within identity.RenewBefore) a new key and certificate. Nodes no longer
// in the cluster file are dropped from the secrets; their certificates
// stay valid until they end (see docs/agent.md on revoking).
func identities(c *Cluster, sec *Secrets, o Options, path string) error {
	now := o.Now()
	if sec.CA == nil {
		certPEM, keyPEM, err := identity.NewCA(o.Rand, c.Cluster, now)
		if err != nil {
			return err
		}
		sec.CA = &KeyPair{Cert: string(certPEM), Key: string(keyPEM)}
	}
	ca, err := identity.ParseCA([]byte(sec.CA.Cert), []byte(sec.CA.Key))
	if err != nil {
		return fmt.Errorf("%s: ca: %w", path, err)
	}
	if got := identity.Cluster(ca.Cert); got != c.Cluster {
		return fmt.Errorf("%s: ca: is the CA of cluster %q, not %q", path, got, c.Cluster)
	}
	if now.After(ca.Cert.NotAfter) {
		return fmt.Errorf("%s: ca: the cluster CA ended on %s; see docs/agent.md on renewing it", path, ca.Cert.NotAfter.Format(time.DateOnly))
	}
	verifier := identity.NewVerifier(ca.Cert)
	nodes := map[string]NodeIdentity{}
	for _, n := range c.Nodes {
		if id, ok := sec.Nodes[n.Name]; ok && id.Role == n.Role {
			node, err := identity.ParseNode([]byte(sec.CA.Cert), []byte(id.Cert), []byte(id.Key))
			if err == nil && node.Role == n.Role && node.Name == n.Name && node.Cert.NotAfter.Sub(now) > identity.RenewBefore {
				if _, _, err := verifier.Verify(node.Cert.Raw, now); err == nil {
					nodes[n.Name] = id
					continue
				}
			}
		}
		certPEM, keyPEM, err := ca.Issue(o.Rand, n.Role, n.Name, now)
		if err != nil {
			return err
		}
		nodes[n.Name] = NodeIdentity{Role: n.Role, KeyPair: KeyPair{Cert: string(certPEM), Key: string(keyPEM)}}
	}
	sec.Nodes = nodes
	return nil
}

// readSecretsFile reads an existing secrets.yaml, refusing a symbolic
// link, anything but a regular file, and a file others may read or
// write.
func readSecretsFile(path string) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("reading secrets: %w", err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return nil, fmt.Errorf("%s is a symbolic link; imgforge seed keeps the cluster's secrets in a regular file only: replace the link with a copy of the file it points to (mode 0600), or remove it to make new secrets", path)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file; accepted: the secrets.yaml an earlier imgforge seed wrote", path)
	case fi.Mode().Perm()&0o077 != 0:
		return nil, fmt.Errorf("%s may be read or written by others (mode %04o); it holds the cluster CA's key and every password: run chmod 600 %s, and make new secrets (remove it) if anyone else may have read it", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading secrets: %w", err)
	}
	return data, nil
}

func marshalSecrets(sec Secrets) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# imgforge seed: the secrets of cluster %q, made once and reused by every run.\n# Keep this file private (mode 0600): it holds the cluster CA's key; every node's user-data carries the rest.\n", sec.Cluster)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(sec); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// NodeSeed makes one node's seed, and returns the MAC its network-config
// matches.
func NodeSeed(c *Cluster, n ClusterNode, sec Secrets, tls *config.TLS, mon *config.Monitoring) (Seed, string, error) {
	mac := n.MAC
	if mac == "" {
		mac = DeriveMAC(c.Cluster, n.Name)
	}
	cfg, err := nodeConfig(c, n, sec, tls, mon)
	if err != nil {
		return Seed{}, "", err
	}
	section, err := config.Marshal(cfg)
	if err != nil {
		return Seed{}, "", err
	}
	var ud bytes.Buffer
	fmt.Fprintf(&ud, "#cloud-config\n# imgforge seed: node %s (%s) of cluster %s.\n# It holds the cluster's secrets: keep it private. No login passwords: SSH keys only.\n", n.Name, n.Role, c.Cluster)
	if len(c.SSHAuthorizedKeys) > 0 {
		enc := yaml.NewEncoder(&ud)
		enc.SetIndent(2)
		if err := enc.Encode(map[string][]string{"ssh_authorized_keys": c.SSHAuthorizedKeys}); err != nil {
			return Seed{}, "", err
		}
		if err := enc.Close(); err != nil {
			return Seed{}, "", err
		}
	}
	ud.Write(section)
	// Check what the node will read, as the agent will.
	if _, _, err := config.Parse("user-data of "+n.Name, ud.Bytes()); err != nil {
		return Seed{}, "", fmt.Errorf("the generated user-data does not validate: %w", err)
	}
	netcfg, err := networkConfig(c, n, mac)
	if err != nil {
		return Seed{}, "", err
	}
	// The instance id changes with the content: cloud-init reads a NoCloud
	// seed again only when its instance id changes.
	h := sha256.New()
	h.Write(ud.Bytes())
	h.Write(netcfg)
	id := fmt.Sprintf("%s-%s-%s", c.Cluster, n.Name, hex.EncodeToString(h.Sum(nil))[:12])
	md := fmt.Appendf(nil, "instance-id: %s\nlocal-hostname: %s\n", yamlString(id), yamlString(n.Name))
	return Seed{MetaData: md, UserData: ud.Bytes(), NetworkConfig: netcfg, Private: true}, mac, nil
}

// monitoring is the section's monitoring block: the cluster file's, with
// the logs client pair read from its files and checked.
func monitoring(m *ClusterMonitoring) (*config.Monitoring, error) {
	if m == nil {
		return nil, nil
	}
	out := &config.Monitoring{
		MetricsURL: m.MetricsURL, Username: m.Username, Password: m.Password, BearerToken: m.BearerToken,
		LogsURL: m.LogsURL, TracesURL: m.TracesURL, CA: m.CA,
	}
	if m.LogsCertFile == "" {
		return out, nil
	}
	cert, err := os.ReadFile(m.LogsCertFile)
	if err != nil {
		return nil, fmt.Errorf("reading monitoring.logs_cert_file: %w", err)
	}
	key, err := os.ReadFile(m.LogsKeyFile)
	if err != nil {
		return nil, fmt.Errorf("reading monitoring.logs_key_file: %w", err)
	}
	if err := config.CheckClientPair(string(cert), string(key)); err != nil {
		return nil, fmt.Errorf("monitoring.logs_cert_file %s and logs_key_file %s: %w", m.LogsCertFile, m.LogsKeyFile, err)
	}
	out.LogsCert, out.LogsKey = string(cert), string(key)
	return out, nil
}

func nodeConfig(c *Cluster, n ClusterNode, sec Secrets, tls *config.TLS, mon *config.Monitoring) (*config.Config, error) {
	cfg := &config.Config{Cluster: c.Cluster, Role: n.Role, Node: config.Node{Name: n.Name, ID: n.ID}}
	if id, ok := sec.Nodes[n.Name]; ok && sec.CA != nil {
		cfg.Identity = &config.Identity{CA: sec.CA.Cert, Cert: id.Cert, Key: id.Key}
	}
	var subnet netip.Prefix
	if c.Network.Subnet != "" {
		subnet = netip.MustParsePrefix(c.Network.Subnet)
	}
	if n.Address != "" {
		a := netip.MustParseAddr(n.Address)
		cfg.Node.Address = netip.PrefixFrom(a, subnet.Bits()).String()
		if cfg.Node.ID == 0 {
			cfg.Node.ID = config.AddressID(a)
		}
	}
	role := c.roles[n.Role]
	cfg.Options = c.options(n)
	if role.VIPs {
		for _, v := range c.VIPs {
			cfg.VIPs = append(cfg.VIPs, config.VIP{Address: v.Address, Prefix: v.Prefix, Interface: v.Interface})
		}
	}
	if rendersTLS(role) {
		cfg.TLS = tls
	}
	if needs(role, imagemeta.CredentialDatabase) || needs(role, imagemeta.CredentialReplication) {
		user, repl := DefaultDBUser, DefaultReplUser
		if c.Database != nil && c.Database.User != "" {
			user = c.Database.User
		}
		if c.Database != nil && c.Database.ReplicationUser != "" {
			repl = c.Database.ReplicationUser
		}
		cfg.Database = &config.Database{}
		if needs(role, imagemeta.CredentialDatabase) {
			cfg.Database.User, cfg.Database.Password = user, sec.DatabasePassword
		}
		if needs(role, imagemeta.CredentialReplication) {
			cfg.Database.ReplicationUser, cfg.Database.ReplicationPassword = repl, sec.ReplicationPassword
		}
	}
	cfg.Monitoring = mon
	cfg.Discovery.Method = c.Discovery.Method
	switch c.Discovery.Method {
	case config.MethodStatic:
		st := &config.Static{}
		for _, m := range c.Nodes {
			if m.Address == "" {
				return nil, fmt.Errorf("node %s: static discovery needs every node's address", m.Name)
			}
			st.Members = append(st.Members, config.StaticMember{Name: m.Name, Role: m.Role, Address: m.Address, Mode: c.mode(m)})
		}
		cfg.Discovery.Static = st
	case config.MethodDNS:
		cfg.Discovery.DNS = c.Discovery.DNS
	case config.MethodGossip:
		g := &config.Gossip{Port: c.Discovery.Gossip.Port, Key: sec.GossipKey, Profile: c.Discovery.Gossip.Profile}
		if g.Port == 0 {
			g.Port = config.DefaultGossipPort
		}
		g.Join = joinAddresses(c)
		cfg.Discovery.Gossip = g
	}
	return cfg, nil
}

// joinAddresses resolves the join list to addresses: names become the
// nodes' addresses; by default every node of a role that holds the VIPs
// (the lb nodes), or the first node.
func joinAddresses(c *Cluster) []string {
	byName := map[string]string{}
	for _, n := range c.Nodes {
		byName[n.Name] = n.Address
	}
	var out []string
	for _, j := range c.Discovery.Gossip.Join {
		if a, ok := byName[j]; ok {
			out = append(out, a)
		} else {
			out = append(out, j)
		}
	}
	if len(c.Discovery.Gossip.Join) > 0 {
		return out
	}
	for _, n := range c.Nodes {
		if c.roles[n.Role].VIPs && n.Address != "" {
			out = append(out, n.Address)
		}
	}
	if len(out) == 0 && c.Nodes[0].Address != "" && len(c.Nodes) > 1 {
		out = append(out, c.Nodes[0].Address)
	}
	return out
}

// networkConfig is a version 2 network-config matching the NIC by MAC
// (cloud-init 22.4's networkd renderer mishandles name globs) and naming
// it, with the node's static address, or DHCP when it has none.
func networkConfig(c *Cluster, n ClusterNode, mac string) ([]byte, error) {
	type nameservers struct {
		Addresses []string `yaml:"addresses"`
	}
	type ethernet struct {
		Match       map[string]quoted `yaml:"match"`
		SetName     string            `yaml:"set-name"`
		DHCP4       bool              `yaml:"dhcp4,omitempty"`
		Addresses   []string          `yaml:"addresses,omitempty"`
		Gateway4    string            `yaml:"gateway4,omitempty"`
		Gateway6    string            `yaml:"gateway6,omitempty"`
		Nameservers *nameservers      `yaml:"nameservers,omitempty"`
	}
	e := ethernet{Match: map[string]quoted{"macaddress": quoted(mac)}, SetName: c.Network.Interface}
	if n.Address == "" {
		e.DHCP4 = true
	} else {
		subnet := netip.MustParsePrefix(c.Network.Subnet)
		e.Addresses = []string{netip.PrefixFrom(netip.MustParseAddr(n.Address), subnet.Bits()).String()}
		if g := c.Network.Gateway; g != "" {
			if netip.MustParseAddr(g).Is4() {
				e.Gateway4 = g
			} else {
				e.Gateway6 = g
			}
		}
	}
	if len(c.Network.DNS) > 0 {
		e.Nameservers = &nameservers{Addresses: c.Network.DNS}
	}
	var b bytes.Buffer
	b.WriteString("# imgforge seed: the NIC is matched by MAC and named; cloud-init 22.4 mishandles name globs.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(struct {
		Version   int                 `yaml:"version"`
		Ethernets map[string]ethernet `yaml:"ethernets"`
	}{2, map[string]ethernet{c.Network.Interface: e}}); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// Single describes one node given on the command line (imgforge seed ROLE).
type Single struct {
	Cluster   string
	Name      string
	Role      string
	Address   string // A/P; empty: DHCP
	Gateway   string
	DNS       []string
	VIPs      []string // address or address/prefix
	MAC       string
	Join      []string
	SSHKeys   []string
	Discovery string
}

// SingleCluster turns a one-node description into a validated Cluster,
// so that it goes through the same checks as a cluster file.
func SingleCluster(s Single, roles Roles) (*Cluster, error) {
	if s.Cluster == "" {
		s.Cluster = "imgforge"
	}
	if s.Name == "" {
		s.Name = s.Role + "-1"
	}
	c := &Cluster{Cluster: s.Cluster, SSHAuthorizedKeys: s.SSHKeys, Network: Network{Gateway: s.Gateway, DNS: s.DNS}}
	n := ClusterNode{Name: s.Name, Role: s.Role, MAC: s.MAC}
	if s.Address != "" {
		p, err := netip.ParsePrefix(s.Address)
		if err != nil {
			return nil, &spec.Error{File: CommandLine, Field: "nodes[0].address", Msg: fmt.Sprintf("%q: accepted: an address with its prefix length, such as 10.10.0.21/24", s.Address)}
		}
		c.Network.Subnet = p.Masked().String()
		n.Address = p.Addr().String()
	}
	for _, v := range s.VIPs {
		vip := ClusterVIP{Address: v}
		if p, err := netip.ParsePrefix(v); err == nil {
			vip = ClusterVIP{Address: p.Addr().String(), Prefix: p.Bits()}
		}
		c.VIPs = append(c.VIPs, vip)
	}
	c.Discovery.Method = s.Discovery
	if len(s.Join) > 0 {
		c.Discovery.Gossip = &ClusterGossip{Join: s.Join}
	}
	c.Nodes = []ClusterNode{n}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	// Validated as a cluster file named CommandLine, so that every check
	// is the same; a front end names the fields of a refusal (a *spec.Error)
	// its own way.
	return ParseCluster(CommandLine, b.Bytes(), roles)
}

// CommandLine is the file name of SingleCluster's errors.
const CommandLine = "command line"

// quoted is a string always written double-quoted: cloud-init's YAML 1.1
// parser reads an unquoted MAC of digits such as 52:54:00:12:34:56 as a
// base-60 number.
type quoted string

func (q quoted) MarshalYAML() (any, error) {
	return &yaml.Node{Kind: yaml.ScalarNode, Style: yaml.DoubleQuotedStyle, Value: string(q)}, nil
}
