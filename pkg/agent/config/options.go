package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/names"
	"github.com/imgforge/imgforge/pkg/spec"
)

// LegacyOptionSections are earlier spellings of imgforge.options that
// Parse still reads: a mapping of option names to values under one of
// these keys, such as app: {runtime: uwsgi} or db: {mode: replica}. They
// are the keys' names only: any node may use either, and its options are
// checked against its own role.json like those under options:.
var LegacyOptionSections = []string{"app", "db"}

// optionValue is what an option's value may be (a choice name; package
// render checks the same).
var optionValue = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

const acceptOptionValue = "lower-case letters, digits, '.' and '-', starting with a letter or digit, at most 63"

// foldLegacyOptions moves the options written under LegacyOptionSections
// into the section's options: mapping, so that the strict decoder sees one
// shape, and returns where each was written (NAME -> app.NAME).
func foldLegacyOptions(file string, section *yaml.Node) (map[string]string, error) {
	var fields map[string]string // legacy spellings only
	given := map[string]bool{}   // under options:
	var options *yaml.Node
	for i := 0; i+1 < len(section.Content); i += 2 {
		if k := section.Content[i]; k.Value == "options" {
			options = section.Content[i+1]
			if options.Kind != yaml.MappingNode {
				return nil, nil // the decoder reports it
			}
			for j := 0; j+1 < len(options.Content); j += 2 {
				given[options.Content[j].Value] = true
			}
		}
	}
	var kept []*yaml.Node
	for i := 0; i+1 < len(section.Content); i += 2 {
		k, v := section.Content[i], section.Content[i+1]
		if !slices.Contains(LegacyOptionSections, k.Value) {
			kept = append(kept, k, v)
			continue
		}
		if v.Kind != yaml.MappingNode {
			return nil, &spec.Error{File: file, Line: v.Line, Col: v.Column, Field: Section + "." + k.Value, Msg: "is not a mapping; accepted: option names and values, as under options: (such as runtime: uwsgi)"}
		}
		if options == nil {
			options = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: k.Line, Column: k.Column}
			kept = append(kept, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "options", Line: k.Line, Column: k.Column}, options)
		}
		for j := 0; j+1 < len(v.Content); j += 2 {
			name := v.Content[j]
			field := k.Value + "." + name.Value
			prev, ok := fields[name.Value]
			if given[name.Value] {
				prev, ok = "options."+name.Value, true
			}
			if ok {
				return nil, &spec.Error{File: file, Line: name.Line, Col: name.Column, Field: Section + "." + field, Msg: fmt.Sprintf("is also set as %s.%s; accepted: one of them", Section, prev)}
			}
			if fields == nil {
				fields = map[string]string{}
			}
			fields[name.Value] = field
			options.Content = append(options.Content, name, v.Content[j+1])
		}
	}
	section.Content = kept
	return fields, nil
}

// optionField names where option name was written.
func (c *Config) optionField(name string) string {
	if f, ok := c.optionFields[name]; ok {
		return Section + "." + f
	}
	return Section + ".options." + name
}

func (c *Config) validateOptions(src spec.Source) error {
	// Errors name the field as written, at the place the decoder saw it.
	errorf := func(k, format string, args ...any) error {
		p := src.At(Section + ".options." + k)
		return &spec.Error{File: p.File, Line: p.Line, Col: p.Col, Field: c.optionField(k), Msg: fmt.Sprintf(format, args...)}
	}
	for _, k := range sortedKeys(c.Options) {
		if !names.Word(k) {
			return errorf(k, "%q is not an option name; accepted: lower-case letters, digits and '-', starting with a letter", k)
		}
		if v := c.Options[k]; !optionValue.MatchString(v) {
			return errorf(k, "%q is not an option value; accepted: %s", v, acceptOptionValue)
		}
		// The mode option is what discovery shares: whatever the role.
		if v := c.Options[k]; k == ModeOption && !slices.Contains(MemberModes, v) {
			return errorf(k, "%q is not a member mode; accepted: %s", v, strings.Join(MemberModes, ", "))
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// CheckRole checks the settings against the role the image was built for
// (its role.json), as the role declares it, with no role known by name:
//   - the role is the image's;
//   - each option is one the role declares: a boot option with one of
//     its values, or a build option with the image's choice;
//   - a role with vips gets at least one VIP;
//   - the accounts its credentials list are given.
func (c *Config) CheckRole(ri imagemeta.RoleInfo) error {
	if c.Role != ri.Role {
		return fmt.Errorf("field %q: the user-data says %s but this is the %s image; boot the %s image or fix the seed", Section+".role", c.Role, ri.Role, c.Role)
	}
	for _, k := range sortedKeys(c.Options) {
		v, field := c.Options[k], c.optionField(k)
		if o, ok := ri.BootOption(k); ok {
			if !slices.Contains(o.Values, v) {
				return fmt.Errorf("field %q: %s is not accepted by role %s; accepted: %s", field, v, ri.Role, strings.Join(o.Values, ", "))
			}
			continue
		}
		if built, ok := ri.Options[k]; ok {
			if v != built {
				return fmt.Errorf("field %q: the user-data says %s but this image was built with %s=%s; accepted: %s (or build the image with --set %s.%s=%s)", field, v, k, built, built, ri.Role, k, v)
			}
			continue
		}
		return fmt.Errorf("field %q: role %s has no option %s; accepted: %s", field, ri.Role, k, strings.Join(roleOptionNames(ri), ", "))
	}
	if ri.VIPs && len(c.VIPs) == 0 {
		return fmt.Errorf("field %q: role %s holds the cluster's VIPs (vips: true in its role file) and needs at least one; accepted: a list of {address, prefix, interface}", Section+".vips", ri.Role)
	}
	d := c.Database
	if d == nil {
		d = &Database{}
	}
	for _, cred := range ri.Credentials {
		switch cred {
		case imagemeta.CredentialDatabase:
			if d.User == "" || d.Password == "" {
				return fmt.Errorf("field %q: role %s needs the application's database account; accepted: user and password", Section+".database", ri.Role)
			}
		case imagemeta.CredentialReplication:
			if d.ReplicationUser == "" || d.ReplicationPassword == "" {
				return fmt.Errorf("field %q: role %s needs the replication account; accepted: replication_user and replication_password", Section+".database", ri.Role)
			}
		default:
			return fmt.Errorf("role.json: credentials: %q is not known to this agent; accepted: %s", cred, strings.Join(imagemeta.Credentials, ", "))
		}
	}
	return nil
}

// roleOptionNames lists the options a node of role ri may set.
func roleOptionNames(ri imagemeta.RoleInfo) []string {
	var out []string
	for _, o := range ri.BootOptions {
		out = append(out, o.Name)
	}
	for k := range ri.Options {
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	slices.Sort(out)
	return out
}

// CompleteFromRole fills the options the settings leave out: a boot
// option's default, a build option's choice of the image. Call it after
// CheckRole.
func (c *Config) CompleteFromRole(ri imagemeta.RoleInfo) {
	set := func(k, v string) {
		if _, ok := c.Options[k]; ok || v == "" {
			return
		}
		if c.Options == nil {
			c.Options = map[string]string{}
		}
		c.Options[k] = v
	}
	for _, o := range ri.BootOptions {
		set(o.Name, o.Default)
	}
	for _, k := range sortedKeys(ri.Options) {
		set(k, ri.Options[k])
	}
}

// Mode is the node's member mode: its mode option, "" without one.
func (c *Config) Mode() string { return c.Options[ModeOption] }
