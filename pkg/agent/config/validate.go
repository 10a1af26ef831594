package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/identity"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/names"
	"github.com/imgforge/imgforge/pkg/spec"
)

var (
	interfaceRe = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,15}$`)
	dbUserRe    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,31}$`)
	// Secrets end up inside quoted SQL, JSON and YAML strings and HTTP
	// headers: printable ASCII without spaces, quotes, backslash, '$' or
	// backtick (package render checks the same set).
	secretRe   = regexp.MustCompile(`^[A-Za-z0-9!#%&()*+,\-./:;<=>?@\[\]^_{|}~]{8,128}$`)
	credRe     = regexp.MustCompile(`^[A-Za-z0-9!#%&()*+,\-./:;<=>?@\[\]^_{|}~]{1,256}$`)
	hostnameRe = regexp.MustCompile(`^([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?$`)
)

const (
	acceptCluster  = "lower-case letters, digits and '-', starting with a letter, at most 63"
	acceptNodeName = "a host name label: lower-case letters, digits and '-', at most 63"
	acceptSecret   = "8 to 128 printable ASCII characters without spaces, quotes, backslash, '$' or backtick"
	acceptCred     = "1 to 256 printable ASCII characters without spaces, quotes, backslash, '$' or backtick"
	acceptDBUser   = "letters, digits and '_', starting with a letter or '_', at most 32"
)

// GossipKeySize is the length of the decoded gossip key (AES-256).
const GossipKeySize = 32

// IsRole reports whether r is a role name. Roles are data (roles/NAME.yaml):
// the agent checks a node's against its image's role.json.
func IsRole(r string) bool { return imagemeta.ValidRoleName(r) }

// AcceptRole says what a role name is.
var AcceptRole = fmt.Sprintf("a role name (a role file's: lower-case letters, digits and '-', starting with a letter, at most %d characters), such as lb, web, app or db", imagemeta.MaxRoleName)

func (c *Config) validate(src spec.Source) error {
	f := func(field string) string { return Section + "." + field }
	if !names.Cluster(c.Cluster) {
		return src.Errorf(f("cluster"), "%q is not a cluster name; accepted: %s", c.Cluster, acceptCluster)
	}
	if !IsRole(c.Role) {
		return src.Errorf(f("role"), "%q is not a role name; accepted: %s", c.Role, AcceptRole)
	}
	if err := c.validateOptions(src); err != nil {
		return err
	}
	if err := c.Node.validate(src, f("node")); err != nil {
		return err
	}
	seenVIP := map[netip.Addr]bool{}
	for i, v := range c.VIPs {
		field := f(fmt.Sprintf("vips[%d]", i))
		a, err := v.validate(src, field)
		if err != nil {
			return err
		}
		if seenVIP[a] {
			return src.Errorf(field+".address", "%s is listed twice", a)
		}
		seenVIP[a] = true
	}
	if err := c.Discovery.validate(src, f("discovery")); err != nil {
		return err
	}
	if c.TLS != nil {
		if err := c.TLS.validate(src, f("tls")); err != nil {
			return err
		}
	}
	if err := c.validateDatabase(src, f("database")); err != nil {
		return err
	}
	if c.Monitoring != nil {
		if err := c.Monitoring.validate(src, f("monitoring")); err != nil {
			return err
		}
	}
	if err := c.validateIdentity(src); err != nil {
		return err
	}
	return c.checkVIPSubnet(src)
}

func (n *Node) validate(src spec.Source, field string) error {
	if n.Name != "" && !names.Node(n.Name) {
		return src.Errorf(field+".name", "%q is not a node name; accepted: %s", n.Name, acceptNodeName)
	}
	if n.Address != "" {
		if _, err := ParseNodeAddress(n.Address); err != nil {
			return src.Errorf(field+".address", "%v", err)
		}
	}
	return nil
}

// ParseNodeAddress parses a node's address with its prefix length, such as
// 10.10.0.21/24 or fd00::21/64.
func ParseNodeAddress(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address with a prefix length; accepted: an address such as 10.10.0.21/24 or fd00::21/64", s)
	}
	if a := p.Addr(); !a.IsGlobalUnicast() && !a.IsLoopback() {
		return netip.Prefix{}, fmt.Errorf("%q is not a unicast host address; accepted: an address such as 10.10.0.21/24", s)
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q has a zone; accepted: an address without %%zone", s)
	}
	return p, nil
}

// ParseMemberAddress parses the address of a member: an IP address
// without a prefix or zone, not loopback-only unless allowLoopback.
func ParseMemberAddress(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address; accepted: an address such as 10.10.0.21 or fd00::21", s)
	}
	if a.IsUnspecified() || a.IsMulticast() {
		return netip.Addr{}, fmt.Errorf("%q is not a unicast address; accepted: an address such as 10.10.0.21", s)
	}
	return a.Unmap(), nil
}

func (v VIP) validate(src spec.Source, field string) (netip.Addr, error) {
	a, err := ParseMemberAddress(v.Address)
	if err != nil {
		return a, src.Errorf(field+".address", "%v", err)
	}
	if v.Prefix < 1 || v.Prefix > a.BitLen() {
		return a, src.Errorf(field+".prefix", "%d is out of range; accepted: 1 to %d", v.Prefix, a.BitLen())
	}
	if !interfaceRe.MatchString(v.Interface) {
		return a, src.Errorf(field+".interface", "%q is not an interface name; accepted: 1 to 15 letters, digits, '_', '.', ':' or '-', such as eth0", v.Interface)
	}
	return a, nil
}

// checkVIPSubnet checks every VIP against the node's network, when the
// node's address is known.
func (c *Config) checkVIPSubnet(src spec.Source) error {
	if c.Node.Address == "" {
		return nil
	}
	p, err := ParseNodeAddress(c.Node.Address)
	if err != nil {
		return src.Errorf(Section+".node.address", "%v", err)
	}
	network := p.Masked()
	for i, v := range c.VIPs {
		a, _ := ParseMemberAddress(v.Address)
		if !network.Contains(a) {
			return src.Errorf(fmt.Sprintf("%s.vips[%d].address", Section, i), "%s is outside the node's subnet %s; accepted: an address in %s", a, network, network)
		}
		if a == p.Addr() {
			return src.Errorf(fmt.Sprintf("%s.vips[%d].address", Section, i), "%s is the node's own address; a VIP must be an address no node has", a)
		}
	}
	return nil
}

func (d *Discovery) validate(src spec.Source, field string) error {
	set := map[string]bool{MethodStatic: d.Static != nil, MethodDNS: d.DNS != nil, MethodGossip: d.Gossip != nil}
	if !slices.Contains(Methods, d.Method) {
		return src.Errorf(field+".method", "unknown discovery method %q; accepted: %s", d.Method, strings.Join(Methods, ", "))
	}
	for _, m := range Methods {
		if m != d.Method && set[m] {
			return src.Errorf(field+"."+m, "is set but the method is %s; remove it or set method: %s", d.Method, m)
		}
	}
	switch d.Method {
	case MethodStatic:
		if d.Static == nil {
			return src.Errorf(field, "method static needs a static: {members: [...]} block")
		}
		return d.Static.validate(src, field+".static")
	case MethodDNS:
		if d.DNS == nil {
			return src.Errorf(field, "method dns needs a dns: {records: [...]} block")
		}
		return d.DNS.validate(src, field+".dns")
	default:
		if d.Gossip == nil {
			return src.Errorf(field, "method gossip needs a gossip: {key: ...} block; accepted: port, join, key, profile")
		}
		return d.Gossip.validate(src, field+".gossip")
	}
}

// validateMode checks a member's mode: one of the member modes; which
// roles have one is their role files' business (an option named mode).
func validateMode(src spec.Source, field, mode string) error {
	if mode != "" && !slices.Contains(MemberModes, mode) {
		return src.Errorf(field, "%q is not a member mode; accepted: %s", mode, strings.Join(MemberModes, ", "))
	}
	return nil
}

func (s *Static) validate(src spec.Source, field string) error {
	seen := map[string]bool{}
	addrs := map[netip.Addr]bool{}
	for i, m := range s.Members {
		mf := fmt.Sprintf("%s.members[%d]", field, i)
		if !names.Node(m.Name) {
			return src.Errorf(mf+".name", "%q is not a node name; accepted: %s", m.Name, acceptNodeName)
		}
		if seen[m.Name] {
			return src.Errorf(mf+".name", "%q is listed twice", m.Name)
		}
		seen[m.Name] = true
		if !IsRole(m.Role) {
			return src.Errorf(mf+".role", "%q is not a role name; accepted: %s", m.Role, AcceptRole)
		}
		a, err := ParseMemberAddress(m.Address)
		if err != nil {
			return src.Errorf(mf+".address", "%v", err)
		}
		if addrs[a] {
			return src.Errorf(mf+".address", "%s is listed twice", a)
		}
		addrs[a] = true
		if err := validateMode(src, mf+".mode", m.Mode); err != nil {
			return err
		}
	}
	return nil
}

// DefaultDNSInterval is how often DNS discovery polls when no interval is given.
const DefaultDNSInterval = 5 * time.Second

// PollInterval is the DNS poll interval, DefaultDNSInterval when unset.
func (d *DNS) PollInterval() time.Duration {
	if v, err := time.ParseDuration(d.Interval); err == nil {
		return v
	}
	return DefaultDNSInterval
}

func (d *DNS) validate(src spec.Source, field string) error {
	if d.Resolver != "" {
		if _, err := netip.ParseAddrPort(d.Resolver); err != nil {
			if _, err := netip.ParseAddr(d.Resolver); err != nil {
				return src.Errorf(field+".resolver", "%q is not an address; accepted: IP or IP:port, such as 10.10.0.1 or 10.10.0.1:53", d.Resolver)
			}
		}
	}
	if d.Interval != "" {
		v, err := time.ParseDuration(d.Interval)
		if err != nil || v < time.Second || v > time.Hour {
			return src.Errorf(field+".interval", "%q is not accepted; accepted: a duration from 1s to 1h, such as 5s", d.Interval)
		}
	}
	if len(d.Records) == 0 {
		return src.Errorf(field+".records", "is empty; accepted: a list of {role, name} (A/AAAA) or {role, srv} (SRV)")
	}
	for i, r := range d.Records {
		rf := fmt.Sprintf("%s.records[%d]", field, i)
		if !IsRole(r.Role) {
			return src.Errorf(rf+".role", "%q is not a role name; accepted: %s", r.Role, AcceptRole)
		}
		if (r.Name == "") == (r.SRV == "") {
			return src.Errorf(rf, "give exactly one of name (A/AAAA records) and srv (an SRV record)")
		}
		for _, n := range []struct{ k, v string }{{"name", r.Name}, {"srv", r.SRV}} {
			if n.v != "" && (len(n.v) > 253 || !hostnameRe.MatchString(n.v)) {
				return src.Errorf(rf+"."+n.k, "%q is not a DNS name; accepted: a name such as web.shop.internal", n.v)
			}
		}
		if err := validateMode(src, rf+".mode", r.Mode); err != nil {
			return err
		}
	}
	return nil
}

// ParseJoin parses a gossip join address: IP, or IP:port.
func ParseJoin(s string, defaultPort int) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().IsUnspecified() || ap.Addr().IsMulticast() {
			return netip.AddrPort{}, fmt.Errorf("%q is not a unicast address and port", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := ParseMemberAddress(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an address; accepted: IP or IP:port, such as 10.10.0.11 or 10.10.0.11:7946", s)
	}
	return netip.AddrPortFrom(a, uint16(defaultPort)), nil
}

// GossipPort is the gossip port, DefaultGossipPort when unset.
func (g *Gossip) GossipPort() int {
	if g.Port == 0 {
		return DefaultGossipPort
	}
	return g.Port
}

// DecodeKey decodes the gossip key.
func (g *Gossip) DecodeKey() ([]byte, error) { return DecodeGossipKey(g.Key) }

// DecodeGossipKey decodes a base64 gossip key of GossipKeySize bytes.
func DecodeGossipKey(s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("is missing; accepted: the base64 of %d random bytes (imgforge seed makes one)", GossipKeySize)
	}
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("is not base64; accepted: the base64 of %d random bytes", GossipKeySize)
	}
	if len(k) != GossipKeySize {
		return nil, fmt.Errorf("decodes to %d bytes; accepted: the base64 of %d random bytes", len(k), GossipKeySize)
	}
	return k, nil
}

func (g *Gossip) validate(src spec.Source, field string) error {
	if g.Port != 0 && (g.Port < 1 || g.Port > 65535) {
		return src.Errorf(field+".port", "%d is out of range; accepted: 1 to 65535", g.Port)
	}
	for i, j := range g.Join {
		if _, err := ParseJoin(j, g.GossipPort()); err != nil {
			return src.Errorf(fmt.Sprintf("%s.join[%d]", field, i), "%v", err)
		}
	}
	if _, err := g.DecodeKey(); err != nil {
		return src.Errorf(field+".key", "%v", err)
	}
	if g.Profile != "" && !slices.Contains(GossipProfiles, g.Profile) {
		return src.Errorf(field+".profile", "unknown gossip profile %q; accepted: %s", g.Profile, strings.Join(GossipProfiles, ", "))
	}
	return nil
}

func (t *TLS) validate(src spec.Source, field string) error {
	if t.SelfSigned {
		if t.Cert != "" || t.Key != "" {
			return src.Errorf(field, "give either cert and key, or self-signed, not both")
		}
		return nil
	}
	if t.Cert == "" || t.Key == "" {
		return src.Errorf(field, "needs both cert and key (PEM), or the value self-signed")
	}
	pair, err := tls.X509KeyPair([]byte(t.Cert), []byte(t.Key))
	if err != nil {
		return src.Errorf(field+".cert", "the certificate and key do not make a pair: %s; accepted: a PEM certificate chain and its PEM private key", oneLine(err.Error()))
	}
	if _, err := x509.ParseCertificate(pair.Certificate[0]); err != nil {
		return src.Errorf(field+".cert", "the certificate does not parse: %s", oneLine(err.Error()))
	}
	return nil
}

func (c *Config) validateDatabase(src spec.Source, field string) error {
	d := c.Database
	if d == nil {
		return nil
	}
	// Which roles need which account is their role.json's (CheckRole).
	check := func(name, user, pass string) error {
		if user == "" && pass == "" {
			return nil
		}
		if !dbUserRe.MatchString(user) {
			return src.Errorf(field+"."+name+"user", "is not a database user name (the value is not shown); accepted: %s", acceptDBUser)
		}
		if !secretRe.MatchString(pass) {
			return src.Errorf(field+"."+name+"password", "is not accepted (%d characters); accepted: %s", len(pass), acceptSecret)
		}
		return nil
	}
	if err := check("", d.User, d.Password); err != nil {
		return err
	}
	if err := check("replication_", d.ReplicationUser, d.ReplicationPassword); err != nil {
		return err
	}
	if d.ReplicationUser != "" && d.ReplicationUser == d.User {
		return src.Errorf(field+".replication_user", "is also the app user; accepted: a separate user for replication")
	}
	return nil
}

func (m *Monitoring) validate(src spec.Source, field string) error {
	if m.MetricsURL == "" && m.LogsURL == "" && m.TracesURL == "" {
		return src.Errorf(field, "needs one or more of metrics_url, logs_url and traces_url")
	}
	for _, u := range []struct{ k, v string }{{"metrics_url", m.MetricsURL}, {"logs_url", m.LogsURL}, {"traces_url", m.TracesURL}} {
		if u.v == "" {
			continue
		}
		p, err := url.Parse(u.v)
		if err != nil || p.Scheme != "https" || p.Host == "" || p.User != nil || p.Fragment != "" {
			return src.Errorf(field+"."+u.k, "is not accepted (the value is not shown: it may hold credentials); accepted: an https:// URL without credentials, such as https://metrics.example:9090/api/v1/write")
		}
		if port := p.Port(); port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return src.Errorf(field+"."+u.k, "has a bad port; accepted: 1 to 65535")
			}
		}
	}
	if m.BearerToken != "" && (m.Username != "" || m.Password != "") {
		return src.Errorf(field+".bearer_token", "give either a bearer token or username and password, not both")
	}
	if m.Password != "" && m.Username == "" {
		return src.Errorf(field+".username", "is missing; a password needs a username")
	}
	if m.Username != "" && m.Password == "" {
		return src.Errorf(field+".password", "is missing; a username needs a password")
	}
	for _, s := range []struct{ k, v string }{{"username", m.Username}, {"password", m.Password}, {"bearer_token", m.BearerToken}} {
		if s.v != "" && !credRe.MatchString(s.v) {
			return src.Errorf(field+"."+s.k, "is not accepted (%d characters); accepted: %s", len(s.v), acceptCred)
		}
	}
	if err := m.validateLogsCert(src, field); err != nil {
		return err
	}
	if m.CA != "" {
		if _, err := ParseCertificates(m.CA); err != nil {
			return src.Errorf(field+".ca", "%v", err)
		}
	}
	return nil
}

// validateLogsCert checks the client certificate systemd-journal-upload
// presents: required with logs_url, a PEM certificate (chain) and its key
// that make a pair, usable for TLS client authentication.
func (m *Monitoring) validateLogsCert(src spec.Source, field string) error {
	if m.LogsCert == "" && m.LogsKey == "" {
		if m.LogsURL != "" {
			return src.Errorf(field+".logs_cert", "is missing; systemd-journal-upload authenticates to logs_url with a client certificate; accepted: logs_cert and logs_key (PEM)")
		}
		return nil
	}
	if m.LogsURL == "" {
		return src.Errorf(field+".logs_cert", "is set but logs_url is not; accepted: logs_cert and logs_key together with logs_url")
	}
	if m.LogsCert == "" {
		return src.Errorf(field+".logs_cert", "is missing; logs_key needs its certificate; accepted: a PEM certificate (chain)")
	}
	if m.LogsKey == "" {
		return src.Errorf(field+".logs_key", "is missing; logs_cert needs its key; accepted: a PEM private key")
	}
	if err := CheckClientPair(m.LogsCert, m.LogsKey); err != nil {
		return src.Errorf(field+".logs_cert", "%v", err)
	}
	return nil
}

// CheckClientPair checks a TLS client certificate (chain) and its key, PEM
// encoded: they make a pair, and the certificate allows client
// authentication when it lists extended key usages.
func CheckClientPair(certPEM, keyPEM string) error {
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		return fmt.Errorf("the certificate and key do not make a pair: %s; accepted: a PEM certificate chain and its PEM private key", oneLine(err.Error()))
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("the certificate does not parse: %s", oneLine(err.Error()))
	}
	if len(cert.ExtKeyUsage) > 0 && !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) && !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return fmt.Errorf("the certificate's extended key usage does not allow TLS client authentication; accepted: a certificate with clientAuth (or no extended key usage)")
	}
	return nil
}

// ParseCertificates parses a PEM bundle of one or more certificates.
func ParseCertificates(s string) ([]*x509.Certificate, error) {
	rest := []byte(s)
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a PEM %q block; accepted: PEM CERTIFICATE blocks", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("a certificate does not parse: %s", oneLine(err.Error()))
		}
		out = append(out, c)
	}
	if len(out) == 0 || len(strings.TrimSpace(string(rest))) > 0 {
		return nil, fmt.Errorf("is not a PEM certificate bundle; accepted: one or more -----BEGIN CERTIFICATE----- blocks")
	}
	return out, nil
}

// validateIdentity checks the node's identity: required with gossip
// discovery; the CA a cluster CA naming this cluster; the certificate
// from it for this node's role (and name, once known), with its key.
func (c *Config) validateIdentity(src spec.Source) error {
	field := Section + ".identity"
	if c.Identity == nil {
		if c.Discovery.Method == MethodGossip {
			return src.Errorf(field, "is missing; gossip members prove their name and role with a certificate from the cluster CA; accepted: {ca, cert, key} as imgforge seed writes them")
		}
		return nil
	}
	id := c.Identity
	for _, p := range []struct{ k, v string }{{"ca", id.CA}, {"cert", id.Cert}, {"key", id.Key}} {
		if p.v == "" {
			return src.Errorf(field+"."+p.k, "is missing; accepted: ca, cert and key (PEM) as imgforge seed writes them")
		}
	}
	n, err := identity.ParseNode([]byte(id.CA), []byte(id.Cert), []byte(id.Key))
	if err != nil {
		k, msg, ok := strings.Cut(err.Error(), ": ")
		if !ok || (k != "ca" && k != "cert" && k != "key") {
			k, msg = "cert", err.Error()
		}
		return src.Errorf(field+"."+k, "%s; accepted: the cluster CA's certificate, this node's certificate from it and its Ed25519 key (PEM), as imgforge seed writes them", msg)
	}
	if n.Cluster != c.Cluster {
		return src.Errorf(field+".ca", "is the CA of cluster %q, not %q; accepted: this cluster's CA", n.Cluster, c.Cluster)
	}
	if n.Role != c.Role {
		return src.Errorf(field+".cert", "is for role %s, not %s; accepted: a certificate for this node's role", n.Role, c.Role)
	}
	if c.Node.Name != "" && n.Name != c.Node.Name {
		return src.Errorf(field+".cert", "is for node %s, not %s; accepted: a certificate for this node", n.Name, c.Node.Name)
	}
	return nil
}

// ParseIdentity returns the node's parsed identity, nil without one.
func (c *Config) ParseIdentity() (*identity.Node, error) {
	if c.Identity == nil {
		return nil, nil
	}
	return identity.ParseNode([]byte(c.Identity.CA), []byte(c.Identity.Cert), []byte(c.Identity.Key))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
