package render

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/names"
)

// Node is one machine of the stack as discovery sees it.
type Node struct {
	// Name is the node's host name: letters, digits, '-' and '.', as in
	// DNS. It names haproxy servers and peers and the monitoring labels.
	Name string
	// Role is the node's role (a role name: roles/NAME.yaml).
	Role string
	// Address is where the other nodes reach it.
	Address netip.Addr
	// ID is the node's numeric id (MariaDB's server_id, 1 to
	// 4294967295); 0 derives it from the address (the low 32 bits).
	ID uint32
	// Primary marks the primary among the members of its role (a node
	// whose mode is not replica).
	Primary bool
	// Port is the port discovery gave for the node (an SRV record's); 0
	// means its role's first port.
	Port uint16
}

// VIP is one virtual address keepalived floats between the lb nodes.
type VIP struct {
	Address netip.Addr
	// Prefix is the length of the VIP's network (1-32, 1-128 for IPv6).
	Prefix int
	// Interface carries the VIP and the VRRP adverts.
	Interface string
	// RouterID is the VRRP virtual_router_id (1-255), the same on every lb
	// node and unique on the segment; 0 means 51 + the VIP's index.
	RouterID int
}

// TLS is a certificate and its key, PEM encoded. The certificate may be
// followed by its chain.
type TLS struct {
	CertPEM, KeyPEM []byte
}

// DB holds the database credentials given at boot.
type DB struct {
	// Name is the application's database; empty means "imgforge".
	Name string
	// User and Password are the application's account on the primary.
	User, Password string
	// ReplicationUser and ReplicationPassword are the account replicas
	// attach with.
	ReplicationUser, ReplicationPassword string
}

// Monitoring is where a node pushes its metrics and logs.
type Monitoring struct {
	// MetricsURL is a Prometheus remote_write endpoint (https); empty
	// means no metrics are pushed.
	MetricsURL string
	// MetricsUser and MetricsPassword are its basic auth, or MetricsToken
	// its bearer token (at most one of the two).
	MetricsUser, MetricsPassword, MetricsToken string
	// LogsURL is a systemd-journal-remote endpoint (https); empty means no
	// logs are pushed. It authenticates the node by LogsCert (client
	// certificate and key), as systemd-journal-upload does.
	LogsURL  string
	LogsCert *TLS
	// TracesURL is an OTLP/HTTP traces endpoint (https); empty means the
	// node relays no spans. It takes the metrics credentials.
	TracesURL string
	// CAPEM verifies both endpoints; empty means the system's CA bundle.
	CAPEM []byte
}

// Input is everything a node's configuration is rendered from.
type Input struct {
	// Self is this node; Self.Role picks the renderer.
	Self Node
	// Members are the live, healthy members of each role, in any order.
	// Self may be among them.
	Members map[string][]Node
	// VIPs are the lb role's virtual addresses.
	VIPs []VIP
	// Options are the role's build options: runtime=php-fpm|uwsgi (app,
	// web), mode=primary|replica (db).
	Options map[string]string
	// TLS is the web role's certificate; nil means a self-signed one made
	// on first boot and kept.
	TLS *TLS
	// DB holds the database credentials (app, db).
	DB DB
	// Monitoring is nil when no endpoint was given.
	Monitoring *Monitoring
	// MemoryBytes is the machine's RAM (db memory settings).
	MemoryBytes uint64
	// Draining says the node is leaving service: it holds its VIPs at
	// the lowest priority, so that its peers take them.
	Draining bool
}

var (
	hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	ifaceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)
	dbIdent   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,31}$`)
	// A credential that is safe inside a quoted SQL, JSON or YAML string
	// and a header: printable ASCII without quotes, backslash, '$',
	// backtick or space.
	secretChars = regexp.MustCompile(`^[A-Za-z0-9!#%&()*+,\-./:;<=>?@\[\]^_{|}~]+$`)
)

const (
	maxMembers  = 1000
	maxVIPs     = 16
	minMemory   = 256 << 20
	maxSecret   = 256
	minPassword = 8
)

func validName(s string) error {
	if len(s) == 0 || len(s) > 253 {
		return fmt.Errorf("%q is not a host name: 1 to 253 characters", s)
	}
	for _, l := range strings.Split(s, ".") {
		if !hostLabel.MatchString(l) {
			return fmt.Errorf("%q is not a host name: dot-separated labels of letters, digits and '-', not starting or ending with '-'", s)
		}
	}
	return nil
}

func validAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return fmt.Errorf("no address")
	case a.Zone() != "":
		return fmt.Errorf("%s: zoned addresses are not accepted", a)
	case a.Is4In6():
		return fmt.Errorf("%s: give the IPv4 address, not its IPv6 mapping", a)
	case a.IsUnspecified() || a.IsMulticast():
		return fmt.Errorf("%s is not a unicast address", a)
	}
	return nil
}

func validSecret(s string, min int) error {
	switch {
	case len(s) < min || len(s) > maxSecret:
		return fmt.Errorf("must be %d to %d characters long", min, maxSecret)
	case !secretChars.MatchString(s):
		return fmt.Errorf("may hold letters, digits and the punctuation !#%%&()*+,-./:;<=>?@[]^_{|}~ only (no quotes, backslash, '$', backtick or space)")
	}
	return nil
}

func validNode(n Node, where string) error {
	if err := validName(n.Name); err != nil {
		return fmt.Errorf("%s.name: %w", where, err)
	}
	if !names.Role(n.Role) {
		return fmt.Errorf("%s.role: %q is not a role name; accepted: lower-case letters, digits and '-', starting with a letter", where, n.Role)
	}
	if err := validAddr(n.Address); err != nil {
		return fmt.Errorf("%s.address: %w", where, err)
	}
	return nil
}

// Validate checks every value a template could see. The error names the
// field (members[web][2].name) and what would be accepted.
func (in *Input) Validate() error {
	if err := validNode(in.Self, "self"); err != nil {
		return err
	}
	for _, role := range sortedKeys(in.Members) {
		nodes := in.Members[role]
		if len(nodes) > maxMembers {
			return fmt.Errorf("members[%s]: %d nodes, at most %d are accepted", role, len(nodes), maxMembers)
		}
		names := map[string]netip.Addr{}
		for i, n := range nodes {
			where := fmt.Sprintf("members[%s][%d]", role, i)
			if err := validNode(n, where); err != nil {
				return err
			}
			if n.Role != role {
				return fmt.Errorf("%s.role: %q in the member list of %s", where, n.Role, role)
			}
			if a, dup := names[n.Name]; dup && a != n.Address {
				return fmt.Errorf("%s.name: %q is listed twice with two addresses (%s, %s)", where, n.Name, a, n.Address)
			}
			names[n.Name] = n.Address
			if n.Name == in.Self.Name && n.Address != in.Self.Address {
				return fmt.Errorf("%s: %q has address %s, but this node (self) has %s", where, n.Name, n.Address, in.Self.Address)
			}
		}
	}
	if len(in.VIPs) > maxVIPs {
		return fmt.Errorf("vips: %d given, at most %d are accepted", len(in.VIPs), maxVIPs)
	}
	ids := map[int]int{}
	for i, v := range in.VIPs {
		where := fmt.Sprintf("vips[%d]", i)
		if err := validAddr(v.Address); err != nil {
			return fmt.Errorf("%s.address: %w", where, err)
		}
		if v.Address.Is4() != in.Self.Address.Is4() {
			return fmt.Errorf("%s.address: %s is not of the family of this node's address %s (VRRP runs one family per instance)", where, v.Address, in.Self.Address)
		}
		if v.Prefix < 1 || v.Prefix > v.Address.BitLen() {
			return fmt.Errorf("%s.prefix: %d; accepted: 1 to %d", where, v.Prefix, v.Address.BitLen())
		}
		if !ifaceName.MatchString(v.Interface) {
			return fmt.Errorf("%s.interface: %q is not an interface name (1 to 15 letters, digits, '_', '.', '-')", where, v.Interface)
		}
		if v.RouterID < 0 || v.RouterID > 255 {
			return fmt.Errorf("%s.router_id: %d; accepted: 1 to 255, or 0 for 51 + the index", where, v.RouterID)
		}
		id := routerID(v, i)
		if j, dup := ids[id]; dup {
			return fmt.Errorf("%s.router_id: %d is also the router id of vips[%d]", where, id, j)
		}
		ids[id] = i
	}
	for _, k := range sortedKeys(in.Options) {
		if !names.Word(k) || !optionValue.MatchString(in.Options[k]) {
			return fmt.Errorf("options.%s: %q; accepted: an option name and a value of lower-case letters, digits, '.' and '-'", k, in.Options[k])
		}
	}
	if in.TLS != nil {
		if _, err := parsePair(in.TLS); err != nil {
			return fmt.Errorf("tls: %w", err)
		}
	}
	if err := in.DB.validate(); err != nil {
		return err
	}
	if in.Monitoring != nil {
		if err := in.Monitoring.validate(); err != nil {
			return err
		}
	}
	return nil
}

// optionValue is what a role option's value may be (a choice name).
var optionValue = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// validateData checks what the role ri needs of in: VIPs of the node's
// family when the role holds them.
func (in *Input) validateData(ri *imagemeta.RoleInfo) error {
	if !ri.VIPs {
		return nil
	}
	if len(in.VIPs) == 0 {
		return fmt.Errorf("vips: the %s role holds the VIPs and needs at least one", ri.Role)
	}
	for i, n := range in.Members[ri.Role] {
		if n.Address.Is4() != in.Self.Address.Is4() {
			return fmt.Errorf("members[%s][%d].address: %s is not of the family of this node's address %s", ri.Role, i, n.Address, in.Self.Address)
		}
	}
	return nil
}

func (d *DB) validate() error {
	if d.Name != "" && !dbIdent.MatchString(d.Name) {
		return fmt.Errorf("db.name: %q; accepted: a letter or '_', then up to 31 letters, digits or '_'", d.Name)
	}
	for _, c := range []struct{ field, user, pass string }{
		{"db.user", d.User, d.Password},
		{"db.replication_user", d.ReplicationUser, d.ReplicationPassword},
	} {
		if c.user == "" && c.pass == "" {
			continue
		}
		if !dbIdent.MatchString(c.user) {
			return fmt.Errorf("%s: %q; accepted: a letter or '_', then up to 31 letters, digits or '_'", c.field, c.user)
		}
		if err := validSecret(c.pass, minPassword); err != nil {
			return fmt.Errorf("%s password: %w", c.field, err)
		}
	}
	if d.User != "" && d.User == d.ReplicationUser {
		return fmt.Errorf("db.replication_user: %q is also the application's user; give two accounts", d.User)
	}
	return nil
}

func (m *Monitoring) validate() error {
	if m.TracesURL != "" {
		if err := validURL(m.TracesURL); err != nil {
			return fmt.Errorf("monitoring.traces_url: %w", err)
		}
	}
	if m.MetricsURL != "" || m.TracesURL != "" {
		if m.MetricsURL != "" {
			if err := validURL(m.MetricsURL); err != nil {
				return fmt.Errorf("monitoring.metrics_url: %w", err)
			}
		}
		if m.MetricsUser != "" || m.MetricsPassword != "" {
			if m.MetricsToken != "" {
				return fmt.Errorf("monitoring.metrics_token: give basic auth or a bearer token, not both")
			}
			if err := validSecret(m.MetricsUser, 1); err != nil {
				return fmt.Errorf("monitoring.metrics_user: %w", err)
			}
			if err := validSecret(m.MetricsPassword, 1); err != nil {
				return fmt.Errorf("monitoring.metrics_password: %w", err)
			}
		} else if m.MetricsToken != "" {
			if err := validSecret(m.MetricsToken, 1); err != nil {
				return fmt.Errorf("monitoring.metrics_token: %w", err)
			}
		}
	}
	if m.LogsURL != "" {
		if err := validURL(m.LogsURL); err != nil {
			return fmt.Errorf("monitoring.logs_url: %w", err)
		}
		if m.LogsCert == nil {
			return fmt.Errorf("monitoring.logs_cert: systemd-journal-upload authenticates with a client certificate over https; none was given")
		}
		if _, err := parsePair(m.LogsCert); err != nil {
			return fmt.Errorf("monitoring.logs_cert: %w", err)
		}
	}
	if len(m.CAPEM) > 0 {
		if err := validCertBundle(m.CAPEM); err != nil {
			return fmt.Errorf("monitoring.ca: %w", err)
		}
	}
	return nil
}

// validURL accepts an https URL without user info, spaces, quotes or
// control characters.
func validURL(s string) error {
	if len(s) > 2048 || strings.ContainsAny(s, " \"'`\\$") {
		return fmt.Errorf("%q: at most 2048 characters, no spaces, quotes, backslash or '$'", s)
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e {
			return fmt.Errorf("%q: printable ASCII only", s)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %w", s, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q: accepted: https://HOST[:PORT]/PATH (pushes go over TLS)", s)
	}
	if u.User != nil {
		return fmt.Errorf("%q: credentials go in their own fields, not in the URL", s)
	}
	return nil
}

// parsePair checks a certificate and key: PEM, parseable, and matching.
func parsePair(t *TLS) (*x509.Certificate, error) {
	pair, err := tls.X509KeyPair(t.CertPEM, t.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("certificate and key: %w", err)
	}
	return x509.ParseCertificate(pair.Certificate[0])
}

// validCertBundle accepts one or more PEM certificates and nothing else.
func validCertBundle(b []byte) error {
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			if len(strings.TrimSpace(string(rest))) > 0 {
				return fmt.Errorf("text outside the PEM blocks")
			}
			break
		}
		if blk.Type != "CERTIFICATE" {
			return fmt.Errorf("a PEM block of type %q; accepted: CERTIFICATE", blk.Type)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no PEM certificate")
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// members gives the nodes of a role sorted by name then address, without
// repeats; with self added when withSelf and Self has that role.
func (in *Input) members(role string, withSelf bool) []Node {
	var out []Node
	seen := map[string]bool{}
	add := func(n Node) {
		if !seen[n.Name] {
			seen[n.Name] = true
			out = append(out, n)
		}
	}
	for _, n := range in.Members[role] {
		add(n)
	}
	if withSelf && in.Self.Role == role {
		add(in.Self)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Address.Less(out[j].Address)
	})
	return out
}

func routerID(v VIP, i int) int {
	if v.RouterID != 0 {
		return v.RouterID
	}
	return 51 + i
}

// serverID is the node's MariaDB server_id: its ID, or the low 32 bits of
// its address.
func serverID(n Node) uint32 {
	if n.ID != 0 {
		return n.ID
	}
	b := n.Address.AsSlice()
	if len(b) < 4 {
		return 0
	}
	b = b[len(b)-4:]
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
