package render

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/names"
)

// This file renders a role from data: the services, files, checkers and
// reload commands of its role.json (Renderer.Role), with the role's
// templates. The templates all get one input, Data, and the functions of
// funcs; nothing here names a role.

// Data is what every role template is executed with.
type Data struct {
	// Self is this node, with its role's ports.
	Self Member
	// Members are the members of each role the role discovers (its
	// role.json's discover), sorted by name, without repeats; the node's
	// own role includes Self. A discovered role without members is an
	// empty list.
	Members map[string][]Member
	// VIPs are the cluster's virtual addresses (a role with vips: true).
	VIPs []VIPData
	// Options are the role's options (runtime, mode, ...).
	Options map[string]string
	// DB holds the database credentials given at boot.
	DB DBData
	// TLS is where the node's certificate and key are written (the files
	// rendered from tls-cert and tls-key); empty when the role has none.
	TLS TLSData
	// MemoryBytes is the machine's RAM.
	MemoryBytes uint64
	// Draining says the node is leaving service (the lb role renders it
	// into keepalived's drain file, which lowers its VIPs' priority).
	Draining bool
}

// Member is one node as a template sees it.
type Member struct {
	Name, Role string
	// Address is the node's address as text (IPv6 without brackets);
	// Family is its family as nftables names it: ip or ip6.
	Address, Family string
	// ID is the node's numeric id: the one given, or the low 32 bits of
	// its address (MariaDB's server_id).
	ID uint32
	// Primary marks a member that discovery says is the primary of its
	// role (a db node whose mode is not replica).
	Primary bool
	// Ports are the ports of the member's role by name: its role file's
	// ports, the first of them replaced by the port discovery gave (an
	// SRV record's).
	Ports map[string]int

	addr netip.Addr
}

// HostPort is ADDRESS:PORT for the member's port of that name, with an
// IPv6 address in brackets.
func (m Member) HostPort(name string) (string, error) {
	p, ok := m.Ports[name]
	if !ok {
		return "", fmt.Errorf("member %s (%s) has no port named %q; its ports: %s", m.Name, m.Role, name, strings.Join(sortedKeys(m.Ports), ", "))
	}
	return netip.AddrPortFrom(m.addr, uint16(p)).String(), nil
}

// VIPData is one virtual address.
type VIPData struct {
	// Name is VI_INDEX; Address is ADDRESS/PREFIX, Host ADDRESS/32 (or
	// /128); Family is ip or ip6 (nftables's names).
	Name, Address, Host, Interface, Family string
	RouterID                               int
}

// VRRP is a VIP as this node holds it among the members of its role (the
// vrrp function).
type VRRP struct {
	VIPData
	Priority int
	// DrainWeight, 1-Priority, is what a drain adds to the priority
	// (keepalived's track_file weight): a draining node holds the VIP at
	// priority 1, below every peer, without a change to its keepalived
	// configuration (a reload would drop the VIP for a moment).
	DrainWeight int
	// Master is true on the node that holds the VIP while all are up.
	Master bool
}

// DBData holds the database credentials.
type DBData struct {
	Database, User, Password, ReplicationUser, ReplicationPassword string
}

// TLSData is where the node's TLS pair is written.
type TLSData struct {
	CertPath, KeyPath string
}

// Values a role file's render entry may take instead of a template.
const (
	FromTLSCert = "tls-cert"
	FromTLSKey  = "tls-key"
)

// errSkip is a template's skip call: its service is not rendered.
var errSkip = errors.New("skipped")

// waitError is a template's wait call: the file's service is not rendered
// yet, for the reason given.
type waitError struct{ reason string }

func (e *waitError) Error() string { return "waiting: " + e.reason }

var (
	templateName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	accountName  = regexp.MustCompile(`^([a-z_][a-z0-9_-]{0,31}|[0-9]{1,9})$`)
	commandWord  = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_{}-]+( [A-Za-z0-9@%+=:,./_{}-]+)*$`)
	nodePath     = regexp.MustCompile(`^/[A-Za-z0-9/._+@:,-]*$`)
	urlPath      = regexp.MustCompile(`^/[A-Za-z0-9/._~+@:,-]*$`)
	reportName   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
)

// ValidateRole checks what the renderer reads from a role.json: role
// names, template names, paths, owners and the checker and reload
// commands, as pkg/spec does when the role file is read.
func ValidateRole(ri *imagemeta.RoleInfo) error {
	if !names.Role(ri.Role) {
		return fmt.Errorf("role: %q is not a role name (lower-case letters, digits and '-', starting with a letter)", ri.Role)
	}
	for i, d := range ri.Discover {
		if !names.Role(d) {
			return fmt.Errorf("discover[%d]: %q is not a role name", i, d)
		}
	}
	for role, ports := range ri.DiscoverPorts {
		if !slices.Contains(ri.Discover, role) {
			return fmt.Errorf("discover_ports: %q is not a discovered role", role)
		}
		if err := validPorts(ports); err != nil {
			return fmt.Errorf("discover_ports[%s]: %w", role, err)
		}
	}
	if err := validPorts(ri.Ports); err != nil {
		return fmt.Errorf("ports: %w", err)
	}
	for i, e := range ri.Exporters {
		if !names.Word(e.Name) || e.Port < 1 || e.Port > 65535 || !urlPath.MatchString(e.Path) {
			return fmt.Errorf("exporters[%d]: a name (lower-case letters, digits, '-'), a port from 1 to 65535 and a path such as /metrics are needed", i)
		}
	}
	if ri.Snapshot != nil {
		if err := validCommand(ri.Snapshot.Command, false); err != nil {
			return fmt.Errorf("snapshot.command: %w", err)
		}
	}
	for i, rp := range ri.Reports {
		if !reportName.MatchString(rp.Name) || len(rp.Metrics) == 0 || !slices.ContainsFunc(ri.Exporters, func(e imagemeta.Exporter) bool { return e.Name == rp.Exporter }) {
			return fmt.Errorf("reports[%d]: a name (lower-case letters, digits, '_'), one of the role's exporters and at least one metric are needed", i)
		}
	}
	paths := map[string]bool{}
	for i, s := range ri.Render {
		f := fmt.Sprintf("render[%d]", i)
		if !names.Word(s.Service) {
			return fmt.Errorf("%s.service: %q is not a service name", f, s.Service)
		}
		for j, c := range s.Reload {
			if err := validCommand(c, false); err != nil {
				return fmt.Errorf("%s.reload[%d]: %w", f, j, err)
			}
		}
		for j, rf := range s.Files {
			ff := fmt.Sprintf("%s.files[%d]", f, j)
			switch {
			case (rf.Template == "") == (rf.From == ""):
				return fmt.Errorf("%s: give a template or from, one of the two", ff)
			case rf.Template != "" && !templateName.MatchString(rf.Template):
				return fmt.Errorf("%s.template: %q is not a template name", ff, rf.Template)
			case rf.From != "" && rf.From != FromTLSCert && rf.From != FromTLSKey:
				return fmt.Errorf("%s.from: %q; accepted: %s, %s", ff, rf.From, FromTLSCert, FromTLSKey)
			case !nodePath.MatchString(rf.Path) || path.Clean(rf.Path) != rf.Path || rf.Path == "/":
				return fmt.Errorf("%s.path: %q is not a clean absolute path", ff, rf.Path)
			case paths[rf.Path]:
				return fmt.Errorf("%s.path: %q is rendered twice", ff, rf.Path)
			case rf.Mode > 0o777:
				return fmt.Errorf("%s.mode: %04o; accepted: 0000 to 0777", ff, uint32(rf.Mode))
			case rf.Owner != "" && !accountName.MatchString(rf.Owner), rf.Group != "" && !accountName.MatchString(rf.Group):
				return fmt.Errorf("%s: the owner and group are user and group names or numbers", ff)
			}
			paths[rf.Path] = true
			if rf.Check != nil {
				if err := validCommand(rf.Check, true); err != nil {
					return fmt.Errorf("%s.check: %w", ff, err)
				}
			}
		}
	}
	return nil
}

func validPorts(ports []imagemeta.Port) error {
	for i, p := range ports {
		if !names.Word(p.Name) || p.Port < 1 || p.Port > 65535 {
			return fmt.Errorf("[%d]: a name (lower-case letters, digits, '-') and a port from 1 to 65535 are needed", i)
		}
	}
	return nil
}

func validCommand(argv []string, candidate bool) error {
	if len(argv) == 0 {
		return fmt.Errorf("an empty command")
	}
	has := false
	for _, a := range argv {
		if !commandWord.MatchString(a) {
			return fmt.Errorf("%q: letters, digits and @%%+=:,./_{}- only, words apart by one space", a)
		}
		has = has || strings.Contains(a, Candidate)
	}
	if candidate && !has {
		return fmt.Errorf("the checker does not name the file (%s)", Candidate)
	}
	return nil
}

// data is the templates' input for in, with the role ri.
func data(in *Input, ri *imagemeta.RoleInfo) Data {
	portsOf := func(role string, port uint16) map[string]int {
		src := ri.DiscoverPorts[role]
		if role == ri.Role {
			src = ri.Ports
		}
		out := map[string]int{}
		for i, p := range src {
			out[p.Name] = p.Port
			if i == 0 && port != 0 {
				out[p.Name] = int(port)
			}
		}
		return out
	}
	member := func(n Node) Member {
		return Member{Name: n.Name, Role: n.Role, Address: n.Address.String(), Family: family(n.Address), ID: serverID(n), Primary: n.Primary,
			Ports: portsOf(n.Role, n.Port), addr: n.Address}
	}
	d := Data{Self: member(in.Self), Members: map[string][]Member{}, Options: map[string]string{}, MemoryBytes: in.MemoryBytes, Draining: in.Draining,
		DB: DBData{Database: in.DB.database(), User: in.DB.User, Password: in.DB.Password,
			ReplicationUser: in.DB.ReplicationUser, ReplicationPassword: in.DB.ReplicationPassword}}
	for k, v := range in.Options {
		d.Options[k] = v
	}
	roles := append([]string{ri.Role}, ri.Discover...)
	for _, role := range roles {
		list := []Member{}
		for _, n := range in.members(role, true) {
			list = append(list, member(n))
		}
		d.Members[role] = list
	}
	for j, v := range in.VIPs {
		d.VIPs = append(d.VIPs, VIPData{Name: fmt.Sprintf("VI_%d", j), Address: netip.PrefixFrom(v.Address, v.Prefix).String(), Host: netip.PrefixFrom(v.Address, v.Address.BitLen()).String(),
			Interface: v.Interface, Family: family(v.Address), RouterID: routerID(v, j)})
	}
	for _, s := range ri.Render {
		for _, f := range s.Files {
			switch f.From {
			case FromTLSCert:
				d.TLS.CertPath = f.Path
			case FromTLSKey:
				d.TLS.KeyPath = f.Path
			}
		}
	}
	return d
}

// funcs are the template functions of a role's templates, besides join
// and json:
//
//   - vrrp: the VIPs as this node holds them among the members of its
//     role, sorted by name: for VIP j the member at index (j mod N) is
//     master (priority 250), the next one 249, and so on, so with two VIPs
//     on two nodes each is master of one and either takes both when the
//     other fails. The priority does not change while the node drains:
//     the lb role writes .Draining into a file that keepalived tracks
//     with weight DrainWeight, so a draining node holds every VIP at
//     priority 1 (the others at least 2) and its peers take them over
//     (preemption) without a keepalived reload.
//   - others ROLE: the members of ROLE but this node.
//   - primary ROLE: the member of ROLE marked primary, or nil.
//   - memory: the MariaDB sizes for the machine's RAM (MemorySettings).
//   - fail MESSAGE: the render fails with MESSAGE (a need of the role
//     that the input does not meet, such as a missing account).
//   - skip: the file's service is not rendered at all (a service of
//     another mode).
//   - wait REASON: stops the file's service from being rendered for now;
//     the reason is shown in the status.
func funcs(d *Data) template.FuncMap {
	return template.FuncMap{
		"vrrp": func() []VRRP {
			peers := d.Members[d.Self.Role]
			self := slices.IndexFunc(peers, func(m Member) bool { return m.Name == d.Self.Name })
			n := max(len(peers), 1)
			var out []VRRP
			for j, v := range d.VIPs {
				rank := ((self-j)%n + n) % n
				p := max(2, 250-rank)
				out = append(out, VRRP{VIPData: v, Priority: p, DrainWeight: 1 - p, Master: rank == 0})
			}
			return out
		},
		"primary": func(role string) (*Member, error) {
			var p []Member
			for _, m := range d.Members[role] {
				if m.Primary {
					p = append(p, m)
				}
			}
			switch len(p) {
			case 0:
				return nil, nil
			case 1:
				return &p[0], nil
			}
			var names []string
			for _, m := range p {
				names = append(names, m.Name)
			}
			return nil, fmt.Errorf("members[%s]: %d primaries (%s); accepted: one", role, len(p), strings.Join(names, ", "))
		},
		"others": func(role string) []Member {
			var out []Member
			for _, m := range d.Members[role] {
				if m.Name != d.Self.Name {
					out = append(out, m)
				}
			}
			return out
		},
		"memory": func() (Memory, error) {
			if d.MemoryBytes < minMemory {
				return Memory{}, fmt.Errorf("memory_bytes: %d; the %s role needs at least %d (256 MiB)", d.MemoryBytes, d.Self.Role, uint64(minMemory))
			}
			return MemorySettings(d.MemoryBytes), nil
		},
		"skip": func() (string, error) { return "", errSkip },
		"wait": func(reason string) (string, error) { return "", &waitError{reason: reason} },
		"fail": func(msg string) (string, error) { return "", errors.New(msg) },
	}
}

// renderRole renders the services of ri.Render into c.
func (r *Renderer) renderRole(c *Config, in *Input, ri *imagemeta.RoleInfo) error {
	d := data(in, ri)
	var pair *TLS
	if d.TLS.CertPath != "" || d.TLS.KeyPath != "" {
		var err error
		if pair, err = r.tlsPair(in, d.TLS.CertPath, d.TLS.KeyPath); err != nil {
			return fmt.Errorf("rendering %s: %w", ri.Role, err)
		}
	}
	fm := funcs(&d)
	for _, s := range ri.Render {
		svc := Service{Name: s.Service}
		for _, cmd := range s.Reload {
			svc.Then = append(svc.Then, slices.Clone(cmd))
		}
		waiting, skip := "", false
		for _, f := range s.Files {
			var b []byte
			switch f.From {
			case FromTLSCert:
				b = pair.CertPEM
			case FromTLSKey:
				b = pair.KeyPEM
			default:
				var err error
				b, err = r.executeFuncs(ri.Role+"/"+f.Template, d, fm)
				var w *waitError
				switch {
				case errors.As(err, &w):
					waiting = f.Path + ": " + w.reason
				case errors.Is(err, errSkip):
					skip = true
				case err != nil:
					return err
				}
			}
			if waiting != "" || skip {
				break
			}
			mode := f.Mode
			if mode == 0 {
				mode = 0o644
			}
			svc.Files = append(svc.Files, File{
				Path: f.Path, Mode: modeOf(mode), Owner: orRoot(f.Owner), Group: orRoot(f.Group), Data: b,
				Sensitive: f.Sensitive, Check: slices.Clone(f.Check),
			})
		}
		if skip {
			continue
		}
		if waiting != "" {
			c.Waiting = append(c.Waiting, waiting)
			continue
		}
		c.Services = append(c.Services, svc)
	}
	return nil
}

func orRoot(s string) string {
	if s == "" {
		return "root"
	}
	return s
}

// family is a's address family as nftables names it.
func family(a netip.Addr) string {
	if a.Is4() {
		return "ip"
	}
	return "ip6"
}
