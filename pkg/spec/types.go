package spec

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Role is one tier of the stack: what it installs, bakes, runs and serves.
// It is read from roles/NAME.yaml.
type Role struct {
	Name        string   `yaml:"name" json:"name"`
	Description string   `yaml:"description" json:"description,omitempty"`
	Image       string   `yaml:"image" json:"image,omitempty"` // image definition; "default" when empty
	Packages    []string `yaml:"packages" json:"packages,omitempty"`
	Files       []File   `yaml:"files" json:"files,omitempty"`
	Services    []string `yaml:"services" json:"services,omitempty"`
	Ports       []Port   `yaml:"ports" json:"ports,omitempty"`
	Health      Health   `yaml:"health" json:"health"`
	Discover    []string `yaml:"discover" json:"discover,omitempty"`
	Options     []Option `yaml:"options" json:"options,omitempty"`
	// VIPs says the role holds the cluster's virtual addresses (the agent
	// requires at least one and renders them).
	VIPs bool `yaml:"vips" json:"vips,omitempty"`
	// Exporters are the role's metrics endpoints on the node itself, which
	// the monitoring agent scrapes.
	Exporters []Exporter `yaml:"exporters" json:"exporters,omitempty"`
	// Render lists the services whose files the agent renders on the node
	// from the role's templates, with their checkers and reload commands.
	Render []RenderService `yaml:"render" json:"render,omitempty"`
	// Credentials are the shared accounts the role's nodes need at boot:
	// database (the application's account), replication (the replication
	// account). imgforge seed gives them, the agent requires them.
	Credentials []string `yaml:"credentials" json:"credentials,omitempty"`
	// Prune lists paths (globs) removed from the root after the packages
	// are installed: state that must be made per node on first boot.
	Prune []string `yaml:"prune" json:"prune,omitempty"`
	// Snapshot is what a node of the role streams to a peer of its role
	// that asks for it (GET /v1/snapshot on the agent's control
	// endpoint): a consistent copy of its state, such as a database a
	// replica seeds itself from. Nil: the role serves none.
	Snapshot *Snapshot `yaml:"snapshot" json:"snapshot,omitempty"`
	// Reports are values the agent reads from the role's exporters into
	// its status and /metrics.
	Reports []Report `yaml:"reports" json:"reports,omitempty"`
}

// Snapshot says how a node makes a snapshot of its state.
type Snapshot struct {
	// Command writes the snapshot to its standard output; the word
	// {dir} is replaced by a private empty folder made for each
	// snapshot. No shell runs it.
	Command []string `yaml:"command" json:"command"`
}

// SnapshotDir in a Snapshot's Command is the private folder made for it.
const SnapshotDir = "{dir}"

// Report is one value the agent reads from one of the role's exporters
// (the samples of the metrics it names) and reports in its status and,
// as imgforge_NAME, in its /metrics.
type Report struct {
	// Name is the value's name: lower-case letters, digits and '_'.
	Name string `yaml:"name" json:"name"`
	Help string `yaml:"help" json:"help"`
	// Exporter names one of the role's exporters.
	Exporter string `yaml:"exporter" json:"exporter"`
	// Metrics are metric names on the exporter; the samples of all of
	// them (any labels) make the value.
	Metrics []string `yaml:"metrics" json:"metrics"`
	// Aggregate is how the samples make one value: min or max (the
	// default).
	Aggregate string `yaml:"aggregate" json:"aggregate,omitempty"`
	// Missing is the value when the exporter answers without a sample;
	// nil: the value is absent then.
	Missing *float64 `yaml:"missing" json:"missing,omitempty"`
	// When lists option values the node must have for the value to be
	// reported (such as mode: replica); empty: always.
	When map[string]string `yaml:"when" json:"when,omitempty"`
}

// ReportAggregates are the accepted values of Report.Aggregate.
var ReportAggregates = []string{"max", "min"}

// File copies a file or a directory tree from the definition folder into
// the image.
type File struct {
	Src     string `yaml:"src" json:"src"`
	Dst     string `yaml:"dst" json:"dst"`
	Mode    Mode   `yaml:"mode" json:"mode,omitempty"`         // files; 0644 (or 0755 when executable) when unset
	DirMode Mode   `yaml:"dir_mode" json:"dir_mode,omitempty"` // directories; 0755 when unset
	Owner   string `yaml:"owner" json:"owner,omitempty"`       // user name or number; root when unset
	Group   string `yaml:"group" json:"group,omitempty"`       // group name or number; root when unset
}

// Port is a port the role serves.
type Port struct {
	Name     string `yaml:"name" json:"name"`
	Port     int    `yaml:"port" json:"port"`
	Protocol string `yaml:"protocol" json:"protocol,omitempty"` // tcp (default) or udp
}

// Exporter is one metrics endpoint of a role, on the node itself.
type Exporter struct {
	Name string `yaml:"name" json:"name"`
	Port int    `yaml:"port" json:"port"`
	Path string `yaml:"path" json:"path"`
}

// RenderService is one service whose files the agent renders on the node.
type RenderService struct {
	// Service names what the files are for (haproxy, nginx, ...).
	Service string       `yaml:"service" json:"service"`
	Files   []RenderFile `yaml:"files" json:"files"`
	// Reload are the commands run, in order, after a file changed.
	Reload [][]string `yaml:"reload" json:"reload,omitempty"`
}

// RenderFile is one file the agent renders: from a template of the role
// (under /usr/share/imgforge/templates/ROLE), or from a value the agent
// holds (From: tls-cert, tls-key).
type RenderFile struct {
	Template  string `yaml:"template" json:"template,omitempty"`
	From      string `yaml:"from" json:"from,omitempty"`
	Path      string `yaml:"path" json:"path"`
	Mode      Mode   `yaml:"mode" json:"mode,omitempty"`
	Owner     string `yaml:"owner" json:"owner,omitempty"`
	Group     string `yaml:"group" json:"group,omitempty"`
	Sensitive bool   `yaml:"sensitive" json:"sensitive,omitempty"`
	// Check is the command that validates the file, with {candidate} for
	// its path.
	Check []string `yaml:"check" json:"check,omitempty"`
}

// RenderFrom are the values a RenderFile may take instead of a template.
var RenderFrom = []string{"tls-cert", "tls-key"}

// Health says how to tell that the role's service works.
type Health struct {
	Type     string   `yaml:"type" json:"type"` // http, tcp or command
	Port     int      `yaml:"port" json:"port,omitempty"`
	Path     string   `yaml:"path" json:"path,omitempty"`
	Command  []string `yaml:"command" json:"command,omitempty"`
	Interval string   `yaml:"interval" json:"interval,omitempty"`
}

// Option is a build-time choice, such as the application runtime. With
// Boot, a node's user-data may choose it too (imgforge.options); the
// image's choice is then the default, and its choices add nothing to the
// image. An option named mode is the node's member mode, which discovery
// shares with its peers: primary or replica.
type Option struct {
	Name    string            `yaml:"name" json:"name"`
	Default string            `yaml:"default" json:"default"`
	Boot    bool              `yaml:"boot" json:"boot,omitempty"`
	Choices map[string]Choice `yaml:"choices" json:"choices"`
}

// Choice is what one value of an Option adds to the role.
type Choice struct {
	Description string   `yaml:"description" json:"description,omitempty"`
	Packages    []string `yaml:"packages" json:"packages,omitempty"`
	Files       []File   `yaml:"files" json:"files,omitempty"`
	Services    []string `yaml:"services" json:"services,omitempty"`
}

// Image is the operating system the roles are built on: distribution,
// architecture, the packages and files every role shares, and the outputs.
// It is read from images/NAME.yaml.
type Image struct {
	Name            string       `yaml:"name" json:"name"`
	Description     string       `yaml:"description" json:"description,omitempty"`
	Distribution    Distribution `yaml:"distribution" json:"distribution"`
	Architecture    string       `yaml:"architecture" json:"architecture"`
	SourceDateEpoch int64        `yaml:"source_date_epoch" json:"source_date_epoch"`
	Packages        []string     `yaml:"packages" json:"packages,omitempty"`
	Files           []File       `yaml:"files" json:"files,omitempty"`
	Services        []string     `yaml:"services" json:"services,omitempty"` // enabled in every role
	Exclude         []string     `yaml:"exclude" json:"exclude,omitempty"`   // dpkg path-exclude globs
	Include         []string     `yaml:"include" json:"include,omitempty"`   // dpkg path-include globs (exceptions)
	Outputs         []string     `yaml:"outputs" json:"outputs,omitempty"`
	// BootExclude lists what the bootable outputs (raw, qcow2, iso, pxe) leave
	// out of their root filesystem, as globs where * also matches '/';
	// BootInclude lists exceptions.
	BootExclude []string `yaml:"boot_exclude" json:"boot_exclude,omitempty"`
	BootInclude []string `yaml:"boot_include" json:"boot_include,omitempty"`
	Disk        Disk     `yaml:"disk" json:"disk"`
	Kernel      Kernel   `yaml:"kernel" json:"kernel"`
	// SecureBoot signs the boot chain of the bootable outputs for UEFI
	// Secure Boot (imgforge build --secure-boot-key/--secure-boot-cert
	// override it).
	SecureBoot SecureBoot `yaml:"secure_boot" json:"secure_boot,omitempty"`
}

// SecureBoot names the key pair that signs the boot loader and the
// unified kernel images: absolute paths of an unencrypted RSA private key
// and its X.509 certificate, both PEM. Keys stay out of the definitions'
// folder, so the paths must be absolute.
type SecureBoot struct {
	Key  string `yaml:"key" json:"key,omitempty"`
	Cert string `yaml:"cert" json:"cert,omitempty"`
}

// Distribution names the Debian release and where its packages come from.
type Distribution struct {
	Name           string   `yaml:"name" json:"name"`               // debian
	Suite          string   `yaml:"suite" json:"suite"`             // bookworm
	Mirror         string   `yaml:"mirror" json:"mirror,omitempty"` // empty: the host's configured Debian mirror
	SecurityMirror string   `yaml:"security_mirror" json:"security_mirror,omitempty"`
	Components     []string `yaml:"components" json:"components,omitempty"`
	Updates        *bool    `yaml:"updates" json:"updates,omitempty"`   // SUITE-updates; on when unset
	Security       *bool    `yaml:"security" json:"security,omitempty"` // SUITE-security; on when unset
}

// Disk sizes the bootable outputs. A raw disk has two root slots (A, the
// built image, and B, empty until an update) of SlotSize each.
type Disk struct {
	Size     Size `yaml:"size" json:"size,omitempty"`
	ESPSize  Size `yaml:"esp_size" json:"esp_size,omitempty"`
	SlotSize Size `yaml:"slot_size" json:"slot_size,omitempty"`
}

// Kernel holds the kernel command line of the bootable outputs.
type Kernel struct {
	Cmdline string `yaml:"cmdline" json:"cmdline,omitempty"`
}

// Mode is a file mode written in octal ("0644").
type Mode uint32

// UnmarshalYAML accepts an octal string or number such as 0644 or "0755".
func (m *Mode) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected an octal file mode such as \"0644\"")
	}
	s := n.Value
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0o"), 8, 32)
	if err != nil || v > 0o7777 {
		return fmt.Errorf("expected an octal file mode from 0000 to 7777 such as \"0644\", got %q", s)
	}
	*m = Mode(v)
	return nil
}

// MarshalText writes the mode as four octal digits.
func (m Mode) MarshalText() ([]byte, error) { return []byte(fmt.Sprintf("%04o", uint32(m))), nil }

// Size is a byte count written with an optional binary suffix (K, M, G, T,
// with or without "iB").
type Size int64

// ParseSize reads "512MiB", "2G" or "1048576".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("expected a size such as 2GiB, 512MiB or 1048576, got %q", s)
	}
	return Size(v * mult), nil
}

// UnmarshalYAML accepts the forms ParseSize does.
func (z *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a size such as 2GiB")
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	*z = v
	return nil
}

// String writes the size with the largest binary unit that divides it.
func (z Size) String() string {
	v := int64(z)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v != 0 && v%u.mult == 0 {
			return fmt.Sprintf("%d%s", v/u.mult, u.suffix)
		}
	}
	return strconv.FormatInt(v, 10)
}

// MarshalText writes the size as String does.
func (z Size) MarshalText() ([]byte, error) { return []byte(z.String()), nil }
