// Package plan resolves a role and its image definition into a Plan: the
// complete, pure-data description of one image build.
//
// A Plan holds everything a build reads: the Debian release and mirror,
// the package sets of the shared base and of the role, every file the
// overlay bakes (with its digest), the services, ports, health check and
// discovery needs of the role, and the outputs. Two equal plans give the
// same image. The plan does not run anything; package build does.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/spec"
)

// Plan is the resolved build of one role.
type Plan struct {
	Role            string            `json:"role" yaml:"role"`
	Description     string            `json:"description,omitempty" yaml:"description,omitempty"`
	Image           string            `json:"image" yaml:"image"`
	Options         map[string]string `json:"options,omitempty" yaml:"options,omitempty"`
	Distribution    Distribution      `json:"distribution" yaml:"distribution"`
	Architecture    string            `json:"architecture" yaml:"architecture"`
	SourceDateEpoch int64             `json:"source_date_epoch" yaml:"source_date_epoch"`
	BasePackages    []string          `json:"base_packages" yaml:"base_packages"`
	Packages        []string          `json:"packages" yaml:"packages"`
	Exclude         []string          `json:"exclude,omitempty" yaml:"exclude,omitempty"`
	Include         []string          `json:"include,omitempty" yaml:"include,omitempty"`
	Prune           []string          `json:"prune,omitempty" yaml:"prune,omitempty"`
	BootExclude     []string          `json:"boot_exclude,omitempty" yaml:"boot_exclude,omitempty"`
	BootInclude     []string          `json:"boot_include,omitempty" yaml:"boot_include,omitempty"`
	Files           []File            `json:"files" yaml:"files"`
	Services        []string          `json:"services,omitempty" yaml:"services,omitempty"`
	Ports           []spec.Port       `json:"ports,omitempty" yaml:"ports,omitempty"`
	Health          spec.Health       `json:"health" yaml:"health"`
	Discover        []string          `json:"discover,omitempty" yaml:"discover,omitempty"`
	// DiscoverPorts are the ports of each discovered role, from its role
	// file: where this role's clients connect.
	DiscoverPorts map[string][]spec.Port `json:"discover_ports,omitempty" yaml:"discover_ports,omitempty"`
	VIPs          bool                   `json:"vips,omitempty" yaml:"vips,omitempty"`
	Exporters     []spec.Exporter        `json:"exporters,omitempty" yaml:"exporters,omitempty"`
	Render        []spec.RenderService   `json:"render,omitempty" yaml:"render,omitempty"`
	Snapshot      *spec.Snapshot         `json:"snapshot,omitempty" yaml:"snapshot,omitempty"`
	Reports       []spec.Report          `json:"reports,omitempty" yaml:"reports,omitempty"`
	// BootOptions are the role's options a node's user-data may set, with
	// the values each accepts; Options holds their defaults.
	BootOptions []BootOption `json:"boot_options,omitempty" yaml:"boot_options,omitempty"`
	// Credentials are the shared accounts the role's nodes need at boot.
	Credentials []string    `json:"credentials,omitempty" yaml:"credentials,omitempty"`
	Outputs     []string    `json:"outputs" yaml:"outputs"`
	Disk        spec.Disk   `json:"disk" yaml:"disk"`
	Kernel      spec.Kernel `json:"kernel" yaml:"kernel"`
	// SecureBoot is the image definition's Secure Boot key pair. It is
	// not part of the plan's digest: the key signs the boot chain, it
	// does not change the image.
	SecureBoot spec.SecureBoot `json:"-" yaml:"-"`
	// SecureBootPos is where the definition set it.
	SecureBootPos spec.Pos `json:"-" yaml:"-"`

	// Positions of the packages in their definition files, so that a build
	// error about a package can say where it was asked for.
	PackagePos map[string]spec.Pos `json:"-" yaml:"-"`
	// Positions of the disk settings ("disk.size", "disk.slot_size"), so
	// that a build error about the disk can say where it was set.
	DiskPos map[string]spec.Pos `json:"-" yaml:"-"`
	// Content of the files, by digest; not part of the printed plan.
	Blobs map[string][]byte `json:"-" yaml:"-"`
}

// DefaultSlotSize is disk.slot_size when the image definition does not
// set it: each of a raw disk's two root partitions.
const DefaultSlotSize = 512 << 20

// Distribution is the resolved Debian release and its apt sources.
type Distribution struct {
	Name       string   `json:"name" yaml:"name"`
	Suite      string   `json:"suite" yaml:"suite"`
	Mirror     string   `json:"mirror" yaml:"mirror"`
	Components []string `json:"components" yaml:"components"`
	Sources    []string `json:"sources" yaml:"sources"` // one-line apt sources, as mmdebstrap takes them
}

// File is one entry the overlay layer writes.
type File struct {
	Path   string    `json:"path" yaml:"path"`
	Type   string    `json:"type" yaml:"type"` // file or dir
	Mode   spec.Mode `json:"mode" yaml:"mode"`
	Owner  string    `json:"owner" yaml:"owner"`
	Group  string    `json:"group" yaml:"group"`
	Size   int64     `json:"size,omitempty" yaml:"size,omitempty"`
	Digest string    `json:"digest,omitempty" yaml:"digest,omitempty"`
	Source string    `json:"source" yaml:"source"` // where it came from, e.g. embedded:roles/lb/haproxy.cfg.tmpl
}

// BootOption is an option a node's user-data may set: its name and the
// values it accepts (the image's choice is its default).
type BootOption struct {
	Name   string   `json:"name" yaml:"name"`
	Values []string `json:"values" yaml:"values"`
}

// Options are what a caller chooses beyond the definitions.
type Options struct {
	// Set chooses role options, such as runtime=uwsgi.
	Set map[string]string
	// Mirror overrides the image's mirror.
	Mirror string
	// SecurityMirror overrides the image's security mirror.
	SecurityMirror string
	// SourceDateEpoch overrides the image's SOURCE_DATE_EPOCH when not zero.
	SourceDateEpoch int64
	// HostMirrors are the host's configured mirrors (see DetectMirrors),
	// used when neither the image nor the options name one. A mirror
	// that spec.CheckMirror refuses is not used.
	HostMirrors Mirrors
	// Agent is the imgforge-agent binary every image carries as
	// AgentPath (see pkg/imgforge.FindAgent); AgentSource says where it
	// came from. Without it the image has no agent.
	Agent       []byte
	AgentSource string
}

// AgentPath is where the image holds the boot-time agent.
const AgentPath = "/usr/bin/imgforge-agent"

// Resolve loads role name from the catalog and resolves it into a Plan.
func Resolve(cat *spec.Catalog, name string, opts Options) (*Plan, error) {
	role, rsrc, err := cat.Role(name)
	if err != nil {
		return nil, err
	}
	imageName := role.Image
	if imageName == "" {
		imageName = "default"
	}
	im, isrc, err := cat.Image(imageName)
	if err != nil {
		if role.Image != "" {
			return nil, rsrc.Errorf("image", "%v", err)
		}
		return nil, err
	}

	p := &Plan{
		Role:            role.Name,
		Description:     role.Description,
		Image:           im.Name,
		Architecture:    im.Architecture,
		SourceDateEpoch: im.SourceDateEpoch,
		Services:        append(append([]string(nil), im.Services...), role.Services...),
		Ports:           append([]spec.Port(nil), role.Ports...),
		Health:          role.Health,
		Discover:        sortedCopy(role.Discover),
		VIPs:            role.VIPs,
		Credentials:     role.Credentials,
		Exporters:       append([]spec.Exporter(nil), role.Exporters...),
		Render:          append([]spec.RenderService(nil), role.Render...),
		Snapshot:        role.Snapshot,
		Reports:         append([]spec.Report(nil), role.Reports...),
		Exclude:         append([]string(nil), im.Exclude...),
		Include:         append([]string(nil), im.Include...),
		Prune:           append([]string(nil), role.Prune...),
		BootExclude:     append([]string(nil), im.BootExclude...),
		BootInclude:     append([]string(nil), im.BootInclude...),
		Outputs:         append([]string(nil), im.Outputs...),
		Disk:            im.Disk,
		Kernel:          im.Kernel,
		SecureBoot:      im.SecureBoot,
		SecureBootPos:   isrc.At("secure_boot.key"),
		PackagePos:      map[string]spec.Pos{},
		Blobs:           map[string][]byte{},
	}
	if opts.SourceDateEpoch != 0 {
		p.SourceDateEpoch = opts.SourceDateEpoch
	}
	if len(p.Outputs) == 0 {
		p.Outputs = []string{"oci"}
	}
	if p.Disk.SlotSize == 0 {
		p.Disk.SlotSize = DefaultSlotSize
	}
	p.DiskPos = map[string]spec.Pos{"disk.size": isrc.At("disk.size"), "disk.slot_size": isrc.At("disk.slot_size")}
	p.Ports = withProtocol(p.Ports)
	for _, d := range p.Discover {
		peer, _, err := cat.Role(d)
		if err != nil {
			return nil, rsrc.Errorf("discover", "%v", err)
		}
		if len(peer.Ports) > 0 {
			if p.DiscoverPorts == nil {
				p.DiscoverPorts = map[string][]spec.Port{}
			}
			p.DiscoverPorts[d] = withProtocol(append([]spec.Port(nil), peer.Ports...))
		}
	}
	for _, m := range []struct{ what, v string }{{"mirror", opts.Mirror}, {"security mirror", opts.SecurityMirror}} {
		if m.v == "" {
			continue
		}
		if err := spec.CheckMirror(m.v); err != nil {
			return nil, fmt.Errorf("%s option: %w", m.what, err)
		}
	}
	p.Distribution = resolveDistribution(im.Distribution, opts)

	p.BasePackages = im.Packages
	for i, pkg := range im.Packages {
		p.PackagePos[pkg] = isrc.At(fmt.Sprintf("packages[%d]", i))
	}
	pkgs := append([]string(nil), role.Packages...)
	for i, pkg := range role.Packages {
		p.PackagePos[pkg] = rsrc.At(fmt.Sprintf("packages[%d]", i))
	}

	type fileSet struct {
		src   spec.Source
		files []spec.File
		field string
	}
	sets := []fileSet{{isrc, im.Files, "files"}, {rsrc, role.Files, "files"}}

	// Role options: the caller's choice or the default.
	for k := range opts.Set {
		found := false
		for _, o := range role.Options {
			found = found || o.Name == k
		}
		if !found {
			var known []string
			for _, o := range role.Options {
				known = append(known, o.Name)
			}
			return nil, fmt.Errorf("role %s has no option %q; its options: %s", role.Name, k, noneIfEmpty(known))
		}
	}
	for i, o := range role.Options {
		v, ok := opts.Set[o.Name]
		if !ok {
			v = o.Default
		}
		ch, ok := o.Choices[v]
		if !ok {
			return nil, fmt.Errorf("role %s option %s: %q is not a choice; accepted: %s", role.Name, o.Name, v, strings.Join(o.ChoiceNames(), ", "))
		}
		if p.Options == nil {
			p.Options = map[string]string{}
		}
		p.Options[o.Name] = v
		if o.Boot {
			p.BootOptions = append(p.BootOptions, BootOption{Name: o.Name, Values: o.ChoiceNames()})
		}
		field := fmt.Sprintf("options[%d].choices.%s", i, v)
		pkgs = append(pkgs, ch.Packages...)
		for j, pkg := range ch.Packages {
			p.PackagePos[pkg] = rsrc.At(fmt.Sprintf("%s.packages[%d]", field, j))
		}
		p.Services = append(p.Services, ch.Services...)
		sets = append(sets, fileSet{rsrc, ch.Files, field + ".files"})
	}
	p.Packages = sortedUnique(pkgs)
	p.Services = sortedUnique(p.Services)
	// A role package that the base already has belongs to the base only.
	p.Packages = minus(p.Packages, p.BasePackages)
	p.BasePackages = sortedUnique(p.BasePackages)

	files := map[string]File{}
	for _, s := range sets {
		for i, f := range s.files {
			if err := expand(p, s.src, f, fmt.Sprintf("%s[%d]", s.field, i), files); err != nil {
				return nil, err
			}
		}
	}
	if opts.Agent != nil {
		if prev, ok := files[AgentPath]; ok {
			return nil, fmt.Errorf("%s is the agent's place, but %s writes it too", AgentPath, prev.Source)
		}
		sum := sha256.Sum256(opts.Agent)
		digest := "sha256:" + hex.EncodeToString(sum[:])
		p.Blobs[digest] = opts.Agent
		files[AgentPath] = File{Path: AgentPath, Type: "file", Mode: 0o755, Owner: "root", Group: "root",
			Size: int64(len(opts.Agent)), Digest: digest, Source: "agent:" + opts.AgentSource}
	}
	for _, f := range files {
		p.Files = append(p.Files, f)
	}
	sort.Slice(p.Files, func(i, j int) bool { return p.Files[i].Path < p.Files[j].Path })
	return p, nil
}

func noneIfEmpty(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func resolveDistribution(d spec.Distribution, opts Options) Distribution {
	host := opts.HostMirrors
	if host.Debian != "" && spec.CheckMirror(host.Debian) != nil {
		host.Debian = ""
	}
	if host.Security != "" && spec.CheckMirror(host.Security) != nil {
		host.Security = ""
	}
	mirror := firstNonEmpty(opts.Mirror, d.Mirror, host.Debian, DefaultMirror)
	security := firstNonEmpty(opts.SecurityMirror, d.SecurityMirror, host.Security, DefaultSecurityMirror)
	comps := d.Components
	if len(comps) == 0 {
		comps = []string{"main"}
	}
	c := strings.Join(comps, " ")
	out := Distribution{Name: d.Name, Suite: d.Suite, Mirror: mirror, Components: comps}
	out.Sources = append(out.Sources, fmt.Sprintf("deb %s %s %s", mirror, d.Suite, c))
	if d.Updates == nil || *d.Updates {
		out.Sources = append(out.Sources, fmt.Sprintf("deb %s %s-updates %s", mirror, d.Suite, c))
	}
	if d.Security == nil || *d.Security {
		out.Sources = append(out.Sources, fmt.Sprintf("deb %s %s-security %s", security, d.Suite, c))
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// expand adds the entries of one spec.File (a file or a whole tree) to files.
func expand(p *Plan, src spec.Source, f spec.File, field string, files map[string]File) error {
	owner, group := f.Owner, f.Group
	if owner == "" {
		owner = "root"
	}
	if group == "" {
		group = "root"
	}
	dirMode := f.DirMode
	if dirMode == 0 {
		dirMode = 0o755
	}
	fileMode := f.Mode
	if fileMode == 0 {
		fileMode = 0o644
	}
	root := path.Clean(f.Src)
	return fs.WalkDir(src.Folder.FS, root, func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return src.Errorf(field+".src", "reading %s: %v", name, err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(name, root), "/")
		dst := path.Join(f.Dst, rel)
		origin := path.Join(src.Folder.Label, name)
		if prev, ok := files[dst]; ok && (prev.Type != "dir" || !d.IsDir()) {
			return src.Errorf(field+".dst", "%s is already written by %s", dst, prev.Source)
		}
		switch {
		case d.IsDir():
			files[dst] = File{Path: dst, Type: "dir", Mode: dirMode, Owner: owner, Group: group, Source: origin}
		case d.Type().IsRegular():
			data, err := fs.ReadFile(src.Folder.FS, name)
			if err != nil {
				return src.Errorf(field+".src", "reading %s: %v", name, err)
			}
			sum := sha256.Sum256(data)
			digest := "sha256:" + hex.EncodeToString(sum[:])
			p.Blobs[digest] = data
			files[dst] = File{Path: dst, Type: "file", Mode: fileMode, Owner: owner, Group: group, Size: int64(len(data)), Digest: digest, Source: origin}
		case d.Type()&fs.ModeSymlink != 0:
			// Links in a copied folder are refused, whether they lead
			// inside the definition folder or out: the image gets files
			// and folders only. (A src that is a link, or passes through
			// one, is followed while it stays inside; see spec.Folder.)
			return src.Errorf(field+".src", "%s is a symbolic link; accepted in a copied folder: files and folders", origin)
		default:
			return src.Errorf(field+".src", "%s is neither a regular file nor a folder; accepted: files and folders", origin)
		}
		return nil
	})
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

func sortedUnique(s []string) []string {
	out := sortedCopy(s)
	j := 0
	for i, x := range out {
		if i == 0 || x != out[j-1] {
			out[j] = x
			j++
		}
	}
	return out[:j]
}

func minus(a, b []string) []string {
	drop := map[string]bool{}
	for _, x := range b {
		drop[x] = true
	}
	var out []string
	for _, x := range a {
		if !drop[x] {
			out = append(out, x)
		}
	}
	return out
}

// Digest is the sha256 of the plan's canonical JSON: it names the plan.
// Where a file came from (a folder on disk or the embedded defaults) is
// not part of it: the same content gives the same digest.
func (p *Plan) Digest() string {
	c := *p
	c.Files = make([]File, len(p.Files))
	for i, f := range p.Files {
		f.Source = ""
		c.Files[i] = f
	}
	b, err := json.Marshal(&c)
	if err != nil {
		panic(fmt.Sprintf("plan: marshalling a plan cannot fail: %v", err))
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// withProtocol fills the protocol of each port: tcp when unset.
func withProtocol(ports []spec.Port) []spec.Port {
	for i := range ports {
		if ports[i].Protocol == "" {
			ports[i].Protocol = "tcp"
		}
	}
	return ports
}

// RoleInfo is the role.json of the image of p: what the agent needs to
// know about the role.
func (p *Plan) RoleInfo() imagemeta.RoleInfo {
	info := imagemeta.RoleInfo{Role: p.Role, Image: p.Image, Options: p.Options, Services: p.Services,
		Health: imagemeta.Health(p.Health), Discover: p.Discover, VIPs: p.VIPs, Credentials: p.Credentials}
	for _, o := range p.BootOptions {
		info.BootOptions = append(info.BootOptions, imagemeta.BootOption{Name: o.Name, Values: o.Values, Default: p.Options[o.Name]})
	}
	if p.Ports != nil {
		info.Ports = metaPorts(p.Ports)
	}
	for role, ports := range p.DiscoverPorts {
		if info.DiscoverPorts == nil {
			info.DiscoverPorts = map[string][]imagemeta.Port{}
		}
		info.DiscoverPorts[role] = metaPorts(ports)
	}
	for _, e := range p.Exporters {
		info.Exporters = append(info.Exporters, imagemeta.Exporter(e))
	}
	for _, s := range p.Render {
		rs := imagemeta.RenderService{Service: s.Service, Reload: s.Reload}
		for _, f := range s.Files {
			rs.Files = append(rs.Files, imagemeta.RenderFile{
				Template: f.Template, From: f.From, Path: f.Path, Mode: imagemeta.FileMode(f.Mode),
				Owner: f.Owner, Group: f.Group, Sensitive: f.Sensitive, Check: f.Check,
			})
		}
		info.Render = append(info.Render, rs)
	}
	if p.Snapshot != nil {
		info.Snapshot = &imagemeta.Snapshot{Command: p.Snapshot.Command}
	}
	for _, r := range p.Reports {
		info.Reports = append(info.Reports, imagemeta.Report(r))
	}
	return info
}

func metaPorts(ports []spec.Port) []imagemeta.Port {
	out := make([]imagemeta.Port, len(ports))
	for i, port := range ports {
		out[i] = imagemeta.Port(port)
	}
	return out
}
