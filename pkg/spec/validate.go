package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/imgforge/imgforge/pkg/format"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/names"
)

var (
	packageRe = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$`)
	unitRe    = regexp.MustCompile(`^[A-Za-z0-9@._:-]+$`)
	accountRe = regexp.MustCompile(`^([a-z_][a-z0-9_-]{0,31}|[0-9]{1,9})$`)
	// globRe is every path glob a definition may hold (prune, exclude,
	// include, boot_exclude, boot_include): an absolute path of
	// globChars. Nothing a shell, dpkg's configuration or apt reads as
	// syntax gets through.
	globRe = regexp.MustCompile(`^/[A-Za-z0-9/._+@:,*?-]*$`)
	// Architectures Debian builds that imgforge knows how to name; only
	// amd64 is built today.
	architectures = []string{"amd64", "arm64"}
)

// globChars says in messages which characters globRe accepts.
const globChars = "letters, digits, '/', '.', '_', '-', '+', '@', ':', ',' and the wildcards '*' and '?'"

// leavesRoot says whether err is os.Root refusing a path that leaves its
// folder (the os package does not export that error).
func leavesRoot(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

func validName(s string) bool { return names.Word(s) }

// Validate checks every value of the role; known lists the role names
// that discover may name.
func (r *Role) Validate(src Source, known []string) error {
	if !validName(r.Name) {
		return src.Errorf("name", "%q is not a valid name; use lower-case letters, digits and '-', starting with a letter", r.Name)
	}
	if !imagemeta.ValidRoleName(r.Name) {
		return src.Errorf("name", "%q is %d characters long; a role name has at most %d (it travels in every node's signed gossip metadata)", r.Name, len(r.Name), imagemeta.MaxRoleName)
	}
	if r.Image != "" && !validName(r.Image) {
		return src.Errorf("image", "%q is not a valid image name", r.Image)
	}
	if err := validatePackages(src, "packages", r.Packages); err != nil {
		return err
	}
	if err := validateFiles(src, "files", r.Files); err != nil {
		return err
	}
	if err := validateServices(src, "services", r.Services); err != nil {
		return err
	}
	seenPort := map[string]bool{}
	for i, p := range r.Ports {
		f := fmt.Sprintf("ports[%d]", i)
		if !validName(p.Name) {
			return src.Errorf(f+".name", "%q is not a valid port name; use lower-case letters, digits and '-'", p.Name)
		}
		if p.Port < 1 || p.Port > 65535 {
			return src.Errorf(f+".port", "%d is out of range; accepted: 1 to 65535", p.Port)
		}
		if p.Protocol != "" && p.Protocol != "tcp" && p.Protocol != "udp" {
			return src.Errorf(f+".protocol", "%q is not accepted; accepted: tcp, udp", p.Protocol)
		}
		key := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if seenPort[key] {
			return src.Errorf(f+".port", "port %d is listed twice", p.Port)
		}
		seenPort[key] = true
	}
	if err := r.Health.validate(src); err != nil {
		return err
	}
	for i, d := range r.Discover {
		if !slices.Contains(known, d) {
			return src.Errorf(fmt.Sprintf("discover[%d]", i), "unknown role %q; known roles: %s", d, strings.Join(known, ", "))
		}
	}
	if err := validateExporters(src, r.Exporters); err != nil {
		return err
	}
	if err := validateRender(src, r.Render); err != nil {
		return err
	}
	if err := r.validateSnapshot(src); err != nil {
		return err
	}
	if err := r.validateReports(src); err != nil {
		return err
	}
	for i, g := range r.Prune {
		if !globRe.MatchString(g) || path.Clean(g) != g || g == "/" {
			return src.Errorf(fmt.Sprintf("prune[%d]", i), "%q is not accepted: a prune glob is a clean absolute path other than / made of %s, such as /var/lib/mysql/*", g, globChars)
		}
	}
	seenOpt := map[string]bool{}
	for i, o := range r.Options {
		f := fmt.Sprintf("options[%d]", i)
		if !validName(o.Name) {
			return src.Errorf(f+".name", "%q is not a valid option name", o.Name)
		}
		if seenOpt[o.Name] {
			return src.Errorf(f+".name", "option %q is defined twice", o.Name)
		}
		seenOpt[o.Name] = true
		if len(o.Choices) == 0 {
			return src.Errorf(f+".choices", "an option needs at least one choice")
		}
		if _, ok := o.Choices[o.Default]; !ok {
			return src.Errorf(f+".default", "%q is not one of the choices; accepted: %s", o.Default, strings.Join(o.ChoiceNames(), ", "))
		}
		for _, c := range o.ChoiceNames() {
			ch := o.Choices[c]
			cf := f + ".choices." + c
			if !validName(c) {
				return src.Errorf(cf, "%q is not a valid choice name", c)
			}
			if err := validatePackages(src, cf+".packages", ch.Packages); err != nil {
				return err
			}
			if err := validateFiles(src, cf+".files", ch.Files); err != nil {
				return err
			}
			if err := validateServices(src, cf+".services", ch.Services); err != nil {
				return err
			}
			if o.Boot && (len(ch.Packages) > 0 || len(ch.Files) > 0 || len(ch.Services) > 0) {
				return src.Errorf(cf, "adds packages, files or services, but the option is chosen at boot (boot: true); accepted: a boot option's choices with a description only")
			}
		}
	}
	seenCred := map[string]bool{}
	for i, c := range r.Credentials {
		f := fmt.Sprintf("credentials[%d]", i)
		if !slices.Contains(imagemeta.Credentials, c) {
			return src.Errorf(f, "%q is not accepted; accepted: %s", c, strings.Join(imagemeta.Credentials, ", "))
		}
		if seenCred[c] {
			return src.Errorf(f, "%q is listed twice", c)
		}
		seenCred[c] = true
	}
	return nil
}

// ChoiceNames lists the option's choices in order.
func (o Option) ChoiceNames() []string {
	var out []string
	for k := range o.Choices {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (h Health) validate(src Source) error {
	switch h.Type {
	case "http":
		if h.Path == "" || !strings.HasPrefix(h.Path, "/") {
			return src.Errorf("health.path", "an http health check needs a path starting with '/'")
		}
		fallthrough
	case "tcp":
		if h.Port < 1 || h.Port > 65535 {
			return src.Errorf("health.port", "%d is out of range; accepted: 1 to 65535", h.Port)
		}
	case "command":
		if len(h.Command) == 0 {
			return src.Errorf("health.command", "a command health check needs a command")
		}
	default:
		return src.Errorf("health.type", "%q is not accepted; accepted: http, tcp, command", h.Type)
	}
	return nil
}

func validatePackages(src Source, field string, pkgs []string) error {
	seen := map[string]bool{}
	for i, p := range pkgs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if !packageRe.MatchString(p) {
			return src.Errorf(f, "%q is not a Debian package name (lower-case letters, digits, '+', '-', '.'; optionally =VERSION)", p)
		}
		if seen[p] {
			return src.Errorf(f, "package %q is listed twice", p)
		}
		seen[p] = true
	}
	return nil
}

func validateServices(src Source, field string, units []string) error {
	for i, u := range units {
		if !unitRe.MatchString(u) {
			return src.Errorf(fmt.Sprintf("%s[%d]", field, i), "%q is not a systemd unit name", u)
		}
	}
	return nil
}

func validateFiles(src Source, field string, files []File) error {
	for i, f := range files {
		fld := fmt.Sprintf("%s[%d]", field, i)
		if f.Src == "" {
			return src.Errorf(fld, "src is required: a file or folder relative to %s", src.Folder.Label)
		}
		clean := path.Clean(f.Src)
		if path.IsAbs(f.Src) || clean == ".." || strings.HasPrefix(clean, "../") || !fs.ValidPath(clean) {
			return src.Errorf(fld+".src", "%q must be a path inside %s without '..'", f.Src, src.Folder.Label)
		}
		if src.Folder.FS != nil {
			if _, err := fs.Stat(src.Folder.FS, clean); err != nil {
				switch {
				case errors.Is(err, fs.ErrNotExist):
					return src.Errorf(fld+".src", "%q does not exist in %s", f.Src, src.Folder.Label)
				case leavesRoot(err):
					return src.Errorf(fld+".src", "%q leads outside %s through a symbolic link; accepted: files and folders inside it", f.Src, src.Folder.Label)
				default:
					return src.Errorf(fld+".src", "%q cannot be read in %s: %v", f.Src, src.Folder.Label, errors.Unwrap(err))
				}
			}
		}
		if !path.IsAbs(f.Dst) || path.Clean(f.Dst) != f.Dst || f.Dst == "/" {
			return src.Errorf(fld+".dst", "%q must be a clean absolute path inside the image, such as /etc/foo.conf", f.Dst)
		}
		if f.Owner != "" && !accountRe.MatchString(f.Owner) {
			return src.Errorf(fld+".owner", "%q is not a user name or number", f.Owner)
		}
		if f.Group != "" && !accountRe.MatchString(f.Group) {
			return src.Errorf(fld+".group", "%q is not a group name or number", f.Group)
		}
	}
	return nil
}

// Validate checks every value of the image definition.
func (im *Image) Validate(src Source) error {
	if !validName(im.Name) {
		return src.Errorf("name", "%q is not a valid name", im.Name)
	}
	d := im.Distribution
	if d.Name != "debian" {
		return src.Errorf("distribution.name", "%q is not accepted; accepted: debian", d.Name)
	}
	if !validName(d.Suite) {
		return src.Errorf("distribution.suite", "%q is not a Debian suite name such as bookworm", d.Suite)
	}
	for _, m := range []struct{ field, v string }{{"distribution.mirror", d.Mirror}, {"distribution.security_mirror", d.SecurityMirror}} {
		if m.v == "" {
			continue
		}
		if err := CheckMirror(m.v); err != nil {
			return src.Errorf(m.field, "%v", err)
		}
	}
	for i, c := range d.Components {
		if !validName(c) {
			return src.Errorf(fmt.Sprintf("distribution.components[%d]", i), "%q is not an archive component such as main", c)
		}
	}
	if !slices.Contains(architectures, im.Architecture) {
		return src.Errorf("architecture", "%q is not accepted; accepted: %s", im.Architecture, strings.Join(architectures, ", "))
	}
	if im.Architecture != "amd64" {
		return src.Errorf("architecture", "%q is not built yet; accepted today: amd64", im.Architecture)
	}
	if im.SourceDateEpoch <= 0 {
		return src.Errorf("source_date_epoch", "must be a positive Unix time, such as 1735689600")
	}
	if err := validatePackages(src, "packages", im.Packages); err != nil {
		return err
	}
	if err := validateFiles(src, "files", im.Files); err != nil {
		return err
	}
	if err := validateServices(src, "services", im.Services); err != nil {
		return err
	}
	for _, l := range []struct {
		field string
		globs []string
	}{{"exclude", im.Exclude}, {"include", im.Include}, {"boot_exclude", im.BootExclude}, {"boot_include", im.BootInclude}} {
		for i, g := range l.globs {
			if !globRe.MatchString(g) {
				return src.Errorf(fmt.Sprintf("%s[%d]", l.field, i), "%q is not accepted: a glob is an absolute path made of %s, such as /usr/share/doc/*", g, globChars)
			}
		}
	}
	for i, o := range im.Outputs {
		if !format.Known(o) {
			return src.Errorf(fmt.Sprintf("outputs[%d]", i), "unknown output format %q; known: %s", o, format.List())
		}
	}
	for _, o := range []struct {
		format, accepted string
		unit             Size
	}{{"vhd", "a whole number of MiB, such as 1500MiB (Azure's rule)", 1 << 20}, {"gce", "a whole number of GiB, such as 2GiB (Google Compute Engine's rule)", 1 << 30}} {
		if z := im.Disk.Size; slices.Contains(im.Outputs, o.format) && z%o.unit != 0 {
			return src.Errorf("disk.size", "%d bytes is not accepted with the %s output; accepted: %s", z, o.format, o.accepted)
		}
	}
	if z := im.Disk.SlotSize; z%(1<<20) != 0 {
		return src.Errorf("disk.slot_size", "%d bytes is not a whole number of MiB; accepted: a size such as 512MiB or 1GiB (unset: 512MiB)", z)
	}
	if strings.ContainsAny(im.Kernel.Cmdline, "\n\r") {
		return src.Errorf("kernel.cmdline", "must be one line")
	}
	sb := im.SecureBoot
	for _, f := range []struct{ field, v, other string }{{"secure_boot.key", sb.Key, sb.Cert}, {"secure_boot.cert", sb.Cert, sb.Key}} {
		switch {
		case f.v == "" && f.other != "":
			return src.Errorf(f.field, "missing: secure_boot needs both key and cert")
		case f.v != "" && (!filepath.IsAbs(f.v) || strings.ContainsFunc(f.v, unicode.IsControl)):
			return src.Errorf(f.field, "%q is not an absolute path; accepted: the absolute path of a PEM file (keys stay out of the definitions' folder)", f.v)
		}
	}
	return nil
}

// argRe is what a checker or reload command's word may hold: no spaces,
// quotes, '$' or control characters (the agent runs them without a shell,
// but they are shown in logs and status).
var argRe = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_{}-]+( [A-Za-z0-9@%+=:,./_{}-]+)*$`)

// templateRe is a template's name inside the role's templates folder.
var templateRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func validateExporters(src Source, exps []Exporter) error {
	seen := map[string]bool{}
	for i, e := range exps {
		f := fmt.Sprintf("exporters[%d]", i)
		if !validName(e.Name) {
			return src.Errorf(f+".name", "%q is not a valid exporter name; use lower-case letters, digits and '-'", e.Name)
		}
		if seen[e.Name] {
			return src.Errorf(f+".name", "exporter %q is listed twice", e.Name)
		}
		seen[e.Name] = true
		if e.Port < 1 || e.Port > 65535 {
			return src.Errorf(f+".port", "%d is out of range; accepted: 1 to 65535", e.Port)
		}
		if !strings.HasPrefix(e.Path, "/") || !globRe.MatchString(e.Path) || strings.ContainsAny(e.Path, "*?") {
			return src.Errorf(f+".path", "%q is not accepted: an absolute URL path such as /metrics", e.Path)
		}
	}
	return nil
}

func validateCommand(src Source, field string, argv []string, candidate bool) error {
	if len(argv) == 0 {
		return src.Errorf(field, "an empty command; give the program and its arguments")
	}
	has := false
	for j, a := range argv {
		if !argRe.MatchString(a) {
			return src.Errorf(fmt.Sprintf("%s[%d]", field, j), "%q is not accepted: letters, digits and @%%+=:,./_{}- only, words apart by one space (no shell runs it)", a)
		}
		has = has || strings.Contains(a, "{candidate}")
	}
	if candidate && !has {
		return src.Errorf(field, "the checker does not name the file: put {candidate} where its path goes")
	}
	return nil
}

func validateRender(src Source, svcs []RenderService) error {
	paths := map[string]bool{}
	names := map[string]bool{}
	for i, s := range svcs {
		f := fmt.Sprintf("render[%d]", i)
		if !validName(s.Service) {
			return src.Errorf(f+".service", "%q is not a valid service name; use lower-case letters, digits and '-'", s.Service)
		}
		if names[s.Service] {
			return src.Errorf(f+".service", "service %q is listed twice", s.Service)
		}
		names[s.Service] = true
		if len(s.Files) == 0 {
			return src.Errorf(f+".files", "a rendered service needs at least one file")
		}
		for j, c := range s.Reload {
			if err := validateCommand(src, fmt.Sprintf("%s.reload[%d]", f, j), c, false); err != nil {
				return err
			}
		}
		for j, rf := range s.Files {
			ff := fmt.Sprintf("%s.files[%d]", f, j)
			switch {
			case rf.Template == "" && rf.From == "":
				return src.Errorf(ff, "give a template or from (accepted: %s)", strings.Join(RenderFrom, ", "))
			case rf.Template != "" && rf.From != "":
				return src.Errorf(ff, "give a template or from, not both")
			case rf.Template != "" && !templateRe.MatchString(rf.Template):
				return src.Errorf(ff+".template", "%q is not a template name in the role's templates folder (letters, digits, '.', '_', '-')", rf.Template)
			case rf.From != "" && !slices.Contains(RenderFrom, rf.From):
				return src.Errorf(ff+".from", "%q is not accepted; accepted: %s", rf.From, strings.Join(RenderFrom, ", "))
			}
			if !path.IsAbs(rf.Path) || path.Clean(rf.Path) != rf.Path || rf.Path == "/" || !globRe.MatchString(rf.Path) || strings.ContainsAny(rf.Path, "*?") {
				return src.Errorf(ff+".path", "%q must be a clean absolute path on the node, such as /etc/foo.conf", rf.Path)
			}
			if paths[rf.Path] {
				return src.Errorf(ff+".path", "%q is rendered twice", rf.Path)
			}
			paths[rf.Path] = true
			if rf.Mode > 0o777 {
				return src.Errorf(ff+".mode", "%04o is not accepted; accepted: 0000 to 0777", uint32(rf.Mode))
			}
			if rf.Owner != "" && !accountRe.MatchString(rf.Owner) {
				return src.Errorf(ff+".owner", "%q is not a user name or number", rf.Owner)
			}
			if rf.Group != "" && !accountRe.MatchString(rf.Group) {
				return src.Errorf(ff+".group", "%q is not a group name or number", rf.Group)
			}
			if rf.Check != nil {
				if err := validateCommand(src, ff+".check", rf.Check, true); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (r *Role) validateSnapshot(src Source) error {
	if r.Snapshot == nil {
		return nil
	}
	return validateCommand(src, "snapshot.command", r.Snapshot.Command, false)
}

var (
	reportNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
	metricNameRe = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]{0,199}$`)
	helpRe       = regexp.MustCompile(`^[A-Za-z0-9 .,;:()'/_+=<>%-]{0,200}$`)
)

// validateReports checks the role's reports against its exporters and
// options.
func (r *Role) validateReports(src Source) error {
	seen := map[string]bool{}
	for i, rp := range r.Reports {
		f := fmt.Sprintf("reports[%d]", i)
		switch {
		case !reportNameRe.MatchString(rp.Name):
			return src.Errorf(f+".name", "%q is not accepted; accepted: lower-case letters, digits and '_', starting with a letter (the metric is imgforge_NAME)", rp.Name)
		case seen[rp.Name]:
			return src.Errorf(f+".name", "report %q is listed twice", rp.Name)
		case !helpRe.MatchString(rp.Help):
			return src.Errorf(f+".help", "accepted: one line of at most 200 letters, digits, spaces and plain punctuation")
		case !slices.ContainsFunc(r.Exporters, func(e Exporter) bool { return e.Name == rp.Exporter }):
			return src.Errorf(f+".exporter", "%q is not one of the role's exporters", rp.Exporter)
		case len(rp.Metrics) == 0:
			return src.Errorf(f+".metrics", "name at least one metric of the exporter")
		case rp.Aggregate != "" && !slices.Contains(ReportAggregates, rp.Aggregate):
			return src.Errorf(f+".aggregate", "%q is not accepted; accepted: %s", rp.Aggregate, strings.Join(ReportAggregates, ", "))
		}
		seen[rp.Name] = true
		for j, m := range rp.Metrics {
			if !metricNameRe.MatchString(m) {
				return src.Errorf(fmt.Sprintf("%s.metrics[%d]", f, j), "%q is not a Prometheus metric name", m)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(rp.When)) {
			i := slices.IndexFunc(r.Options, func(o Option) bool { return o.Name == k })
			if i < 0 {
				return src.Errorf(f+".when."+k, "the role has no option %q", k)
			}
			if _, ok := r.Options[i].Choices[rp.When[k]]; !ok {
				return src.Errorf(f+".when."+k, "%q is not accepted; accepted: %s", rp.When[k], strings.Join(r.Options[i].ChoiceNames(), ", "))
			}
		}
	}
	return nil
}
