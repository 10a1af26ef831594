// Package dpkg reads the package database of a Debian root filesystem.
package dpkg

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// MaxLineLength is the longest line, in bytes and without its line
// terminator, that ParseStatus accepts.
const MaxLineLength = 1 << 20

// Package is an installed package as recorded in /var/lib/dpkg/status.
type Package struct {
	Name          string
	Version       string
	Architecture  string
	Source        string // source package name; Name when the stanza has no Source field
	SourceVersion string // source package version; Version unless Source names one
	Homepage      string
	Maintainer    string
	Description   string // first line (the synopsis) of the Description field
	InstalledSize int64  // Installed-Size field, in KiB
}

// ParseStatus parses a dpkg status file (/var/lib/dpkg/status) and returns
// the packages whose Status field says they are installed, sorted by Name
// and then Architecture. Stanzas in other states, such as
// "deinstall ok config-files", are skipped.
//
// Errors name the offending line, as in "dpkg status line 12: ...".
func ParseStatus(r io.Reader) ([]Package, error) {
	sc := bufio.NewScanner(r)
	// Room for the longest accepted line plus "\r\n"; anything longer
	// makes Scan fail with bufio.ErrTooLong.
	sc.Buffer(make([]byte, 0, 64*1024), MaxLineLength+2)

	p := parser{seen: map[string]int{}}
	for sc.Scan() {
		p.lineNo++
		if err := p.line(sc.Text()); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, lineErrorf(p.lineNo+1, "line longer than %d bytes: %w", MaxLineLength, err)
		}
		return nil, lineErrorf(p.lineNo+1, "reading: %w", err)
	}
	if err := p.endStanza(); err != nil {
		return nil, err
	}
	slices.SortFunc(p.pkgs, func(a, b Package) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Architecture, b.Architecture)
	})
	return p.pkgs, nil
}

// field is one field of a stanza: the first line of its value and the
// line number it appeared on.
type field struct {
	value string
	line  int
}

// parser holds the state of one ParseStatus call.
type parser struct {
	lineNo int
	pkgs   []Package
	seen   map[string]int // "name:arch" -> line of the stanza that installed it

	// The stanza being read; fields is nil between stanzas.
	start   int              // line of the stanza's first field
	fields  map[string]field // keyed by lower-cased field name
	lastKey string           // field that continuation lines belong to
}

// line consumes one line of input, without its terminating newline.
func (p *parser) line(s string) error {
	s = strings.TrimSuffix(s, "\r")
	if len(s) > MaxLineLength {
		return lineErrorf(p.lineNo, "line longer than %d bytes: %w", MaxLineLength, bufio.ErrTooLong)
	}
	if strings.TrimLeft(s, " \t") == "" {
		return p.endStanza()
	}
	if s[0] == ' ' || s[0] == '\t' {
		// Continuation of a multi-line field; only the first line of any
		// value is kept, so there is nothing to record.
		if p.lastKey == "" {
			return lineErrorf(p.lineNo, "continuation line outside a field")
		}
		return nil
	}
	name, value, ok := strings.Cut(s, ":")
	if !ok {
		return lineErrorf(p.lineNo, "expected \"Field: value\", found %q", truncate(s))
	}
	if name == "" || strings.ContainsAny(name, " \t") {
		return lineErrorf(p.lineNo, "invalid field name %q", truncate(name))
	}
	if p.fields == nil {
		p.start = p.lineNo
		p.fields = map[string]field{}
	}
	key := strings.ToLower(name)
	if prev, dup := p.fields[key]; dup {
		return lineErrorf(p.lineNo, "duplicate field %q (first on line %d)", name, prev.line)
	}
	p.fields[key] = field{value: strings.TrimSpace(value), line: p.lineNo}
	p.lastKey = key
	return nil
}

// endStanza finishes the current stanza, if any, keeping its package when
// it is installed.
func (p *parser) endStanza() error {
	if p.fields == nil {
		return nil
	}
	fields, start := p.fields, p.start
	p.fields, p.lastKey = nil, ""

	name, ok := fields["package"]
	if !ok || name.value == "" {
		return lineErrorf(start, "stanza has no Package field")
	}
	status, ok := fields["status"]
	if !ok {
		return lineErrorf(start, "package %s has no Status field", name.value)
	}
	if !installed(status.value) {
		return nil
	}
	version, ok := fields["version"]
	if !ok || version.value == "" {
		return lineErrorf(start, "installed package %s has no Version field", name.value)
	}

	pkg := Package{
		Name:          name.value,
		Version:       version.value,
		Architecture:  fields["architecture"].value,
		Source:        name.value,
		SourceVersion: version.value,
		Homepage:      fields["homepage"].value,
		Maintainer:    fields["maintainer"].value,
		Description:   fields["description"].value,
	}
	if src, ok := fields["source"]; ok {
		srcName, srcVersion, err := parseSource(src.value)
		if err != nil {
			return lineErrorf(src.line, "Source field: %w", err)
		}
		pkg.Source = srcName
		if srcVersion != "" {
			pkg.SourceVersion = srcVersion
		}
	}
	if size, ok := fields["installed-size"]; ok && size.value != "" {
		n, err := strconv.ParseInt(size.value, 10, 64)
		if err != nil {
			return lineErrorf(size.line, "Installed-Size field: %w", err)
		}
		if n < 0 {
			return lineErrorf(size.line, "Installed-Size field is negative: %d", n)
		}
		pkg.InstalledSize = n
	}

	key := pkg.Name + ":" + pkg.Architecture
	if first, dup := p.seen[key]; dup {
		return lineErrorf(start, "package %s is listed twice (first in the stanza on line %d)", key, first)
	}
	p.seen[key] = start
	p.pkgs = append(p.pkgs, pkg)
	return nil
}

// installed reports whether a Status field value ("want flag status")
// describes an installed package, e.g. "install ok installed".
func installed(status string) bool {
	words := strings.Fields(status)
	return len(words) > 0 && words[len(words)-1] == "installed"
}

// parseSource splits a Source field value of the form "name" or
// "name (version)".
func parseSource(s string) (name, version string, err error) {
	name, rest, hasVersion := strings.Cut(s, "(")
	name = strings.TrimSpace(name)
	if name == "" || strings.ContainsAny(name, " \t)") {
		return "", "", fmt.Errorf("invalid source package name in %q", truncate(s))
	}
	if !hasVersion {
		return name, "", nil
	}
	version, ok := strings.CutSuffix(strings.TrimSpace(rest), ")")
	version = strings.TrimSpace(version)
	if !ok || version == "" || strings.ContainsAny(version, "() \t") {
		return "", "", fmt.Errorf("invalid source version in %q", truncate(s))
	}
	return name, version, nil
}

// lineErrorf returns an error that names a line of the status file.
func lineErrorf(line int, format string, args ...any) error {
	return fmt.Errorf("dpkg status line %d: %w", line, fmt.Errorf(format, args...))
}

// truncate shortens s for quoting in an error message.
func truncate(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
