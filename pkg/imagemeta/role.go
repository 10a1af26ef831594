package imagemeta

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/imgforge/imgforge/pkg/names"
)

// RolePath is where an imgforge image says which role it was built for.
const RolePath = "/etc/imgforge/role.json"

// RoleInfo is role.json: what the agent needs to know about the role its
// image was built for.
type RoleInfo struct {
	Role     string            `json:"role"`
	Image    string            `json:"image"`
	Options  map[string]string `json:"options,omitempty"`
	Services []string          `json:"services,omitempty"`
	// Ports is written even when it is empty (as null), as it always was:
	// omitting it would change the image of every role without ports.
	Ports    []Port   `json:"ports"`
	Health   Health   `json:"health"`
	Discover []string `json:"discover,omitempty"`
	// DiscoverPorts are the ports each discovered role serves (its role
	// file's ports): what this role's clients connect to when discovery
	// gives no port (an SRV record does).
	DiscoverPorts map[string][]Port `json:"discover_ports,omitempty"`
	// VIPs says the role holds the cluster's virtual addresses.
	VIPs bool `json:"vips,omitempty"`
	// Exporters are the role's metrics endpoints on the node.
	Exporters []Exporter `json:"exporters,omitempty"`
	// Render lists the services whose files the agent renders.
	Render []RenderService `json:"render,omitempty"`
	// BootOptions are the role's options that a node's user-data may set
	// (imgforge.options): the values each accepts and its default, the
	// image's choice. The agent checks the user-data against them.
	BootOptions []BootOption `json:"boot_options,omitempty"`
	// Credentials are the shared accounts a node of the role needs from
	// its user-data: database (imgforge.database.user and password),
	// replication (its replication_user and replication_password).
	Credentials []string `json:"credentials,omitempty"`
	// Snapshot is how a node of the role makes a snapshot of its state
	// for a peer of its role (the control endpoint's GET /v1/snapshot);
	// nil: the role serves none.
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	// Reports are values the agent reads from the role's exporters into
	// its status and /metrics.
	Reports []Report `json:"reports,omitempty"`
}

// Snapshot is a role's snapshot command: it writes the snapshot to its
// standard output; SnapshotDir in it is a private empty folder.
type Snapshot struct {
	Command []string `json:"command"`
}

// SnapshotDir in Snapshot.Command is replaced by a private folder made
// for each snapshot.
const SnapshotDir = "{dir}"

// Report is one value the agent reads from an exporter of the role: the
// samples of Metrics, aggregated by Aggregate (min or max; empty: max),
// Missing when the exporter answers without one (nil: absent), reported
// only on a node whose options include When.
type Report struct {
	Name      string            `json:"name"`
	Help      string            `json:"help"`
	Exporter  string            `json:"exporter"`
	Metrics   []string          `json:"metrics"`
	Aggregate string            `json:"aggregate,omitempty"`
	Missing   *float64          `json:"missing,omitempty"`
	When      map[string]string `json:"when,omitempty"`
}

// BootOption is one option a node's user-data may set.
type BootOption struct {
	Name    string   `json:"name"`
	Values  []string `json:"values"`
	Default string   `json:"default"`
}

// Credential names, as role files list them (RoleInfo.Credentials).
const (
	CredentialDatabase    = "database"
	CredentialReplication = "replication"
)

// Credentials lists the credentials a role may need.
var Credentials = []string{CredentialDatabase, CredentialReplication}

// BootOption returns the boot option called name.
func (r RoleInfo) BootOption(name string) (BootOption, bool) {
	for _, o := range r.BootOptions {
		if o.Name == name {
			return o, true
		}
	}
	return BootOption{}, false
}

// Exporter is one metrics endpoint of the role, on the node itself.
type Exporter struct {
	Name string `json:"name"`
	Port int    `json:"port"`
	Path string `json:"path"`
}

// RenderService is one service whose files the agent renders from the
// role's templates; Reload runs, in order, after a file changed.
type RenderService struct {
	Service string       `json:"service"`
	Files   []RenderFile `json:"files"`
	Reload  [][]string   `json:"reload,omitempty"`
}

// RenderFile is one rendered file: from the role's template Template, or
// from a value the agent holds (From: tls-cert or tls-key). Check is the
// command that validates it, with {candidate} for its path.
type RenderFile struct {
	Template  string   `json:"template,omitempty"`
	From      string   `json:"from,omitempty"`
	Path      string   `json:"path"`
	Mode      FileMode `json:"mode,omitempty"`
	Owner     string   `json:"owner,omitempty"`
	Group     string   `json:"group,omitempty"`
	Sensitive bool     `json:"sensitive,omitempty"`
	Check     []string `json:"check,omitempty"`
}

// FileMode is a file's permission bits, written in octal ("0644").
type FileMode uint32

// MarshalText writes the mode in octal.
func (m FileMode) MarshalText() ([]byte, error) { return []byte(fmt.Sprintf("%04o", uint32(m))), nil }

// UnmarshalText reads an octal mode of at most 0777.
func (m *FileMode) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(string(b), 8, 32)
	if err != nil || v > 0o777 {
		return fmt.Errorf("mode %q: accepted: octal 0000 to 0777", b)
	}
	*m = FileMode(v)
	return nil
}

// Port is one port the role serves (a role definition's ports entry).
type Port struct {
	Name     string `json:"name"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"` // tcp or udp
}

// Health is the role's health check (a role definition's health field).
type Health struct {
	Type     string   `json:"type"` // http, tcp or command
	Port     int      `json:"port,omitempty"`
	Path     string   `json:"path,omitempty"`
	Command  []string `json:"command,omitempty"`
	Interval string   `json:"interval,omitempty"`
}

// Marshal gives role.json's bytes.
func (r RoleInfo) Marshal() ([]byte, error) {
	return marshal(r)
}

// ParseRoleInfo reads role.json's bytes. It checks the syntax and the
// types, not the values: a reader decides which roles it knows.
func ParseRoleInfo(data []byte) (RoleInfo, error) {
	var r RoleInfo
	if err := json.Unmarshal(data, &r); err != nil {
		return RoleInfo{}, err
	}
	if r.Role == "" {
		return RoleInfo{}, fmt.Errorf("field \"role\" is missing")
	}
	return r, nil
}

// ReadRoleInfo reads the role.json at path.
func ReadRoleInfo(path string) (RoleInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return RoleInfo{}, fmt.Errorf("reading the role file: %w", err)
	}
	r, err := ParseRoleInfo(b)
	if err != nil {
		return RoleInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// marshal is how every file of this package is written: indented by two
// spaces, HTML characters escaped, and a final newline.
func marshal(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// MaxRoleName is the longest role name (see package names).
const MaxRoleName = names.MaxRole

// ValidRoleName reports whether s is a role name: lower-case letters,
// digits and '-', starting with a letter, at most MaxRoleName long (the
// name of a role file, roles/NAME.yaml).
func ValidRoleName(s string) bool {
	return names.Role(s)
}
