package seed

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/spec"
)

// Roles are the role definitions a cluster's nodes are checked against
// and seeded from, by name. What a node's user-data holds comes from its
// role's file, never from its name:
//   - options: the role's options (its choices, its default);
//   - the member mode (an option named mode): one primary per role at most;
//   - VIPs, for a role with vips: true (which needs at least one), whose
//     nodes are also the default gossip join list;
//   - the TLS pair, for a role that renders one (from: tls-cert, tls-key);
//   - the database accounts its credentials list.
type Roles map[string]*spec.Role

// LoadRoles loads and validates every role of a catalog.
func LoadRoles(cat *spec.Catalog) (Roles, error) {
	out := Roles{}
	for _, name := range cat.RoleNames() {
		r, _, err := cat.Role(name)
		if err != nil {
			return nil, err
		}
		out[name] = r
	}
	return out, nil
}

// names lists the roles in order.
func (rs Roles) names() []string {
	out := make([]string, 0, len(rs))
	for k := range rs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// option returns role r's option called name.
func option(r *spec.Role, name string) (spec.Option, bool) {
	for _, o := range r.Options {
		if o.Name == name {
			return o, true
		}
	}
	return spec.Option{}, false
}

// optionNames lists role r's options.
func optionNames(r *spec.Role) []string {
	var out []string
	for _, o := range r.Options {
		out = append(out, o.Name)
	}
	return out
}

// rendersTLS reports whether role r renders the TLS pair.
func rendersTLS(r *spec.Role) bool {
	for _, s := range r.Render {
		for _, f := range s.Files {
			if slices.Contains(spec.RenderFrom, f.From) {
				return true
			}
		}
	}
	return false
}

// nodeOption is node n's value of option o of its role: the cluster
// file's, or the default.
func nodeOption(n ClusterNode, o spec.Option) string {
	if v := n.Options[o.Name]; v != "" {
		return v
	}
	return o.Default
}

// options are node n's options as its user-data carries them: every
// option of its role, the node's or the default.
func (c *Cluster) options(n ClusterNode) map[string]string {
	r := c.roles[n.Role]
	out := map[string]string{}
	for _, o := range r.Options {
		out[o.Name] = nodeOption(n, o)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// mode is node n's member mode: its mode option, "" without one.
func (c *Cluster) mode(n ClusterNode) string {
	if o, ok := option(c.roles[n.Role], config.ModeOption); ok {
		return nodeOption(n, o)
	}
	return ""
}

// needs reports whether role r lists credential cred.
func needs(r *spec.Role, cred string) bool { return slices.Contains(r.Credentials, cred) }

// validateRoles checks what the nodes' roles decide, in the nodes'
// order: each node's options, one primary per role, and VIPs for a role
// that holds them.
func (c *Cluster) validateRoles(src spec.Source) error {
	primaries := map[string]string{}
	for i, n := range c.Nodes {
		f := fmt.Sprintf("nodes[%d]", i)
		r := c.roles[n.Role]
		for _, k := range slices.Sorted(maps.Keys(n.Options)) {
			v := n.Options[k]
			o, ok := option(r, k)
			if !ok {
				acc := "none for role " + n.Role
				if names := optionNames(r); len(names) > 0 {
					acc = strings.Join(names, ", ")
				}
				return src.Errorf(f+".options."+k, "unknown option for role %s; accepted: %s", n.Role, acc)
			}
			if _, ok := o.Choices[v]; !ok {
				return src.Errorf(f+".options."+k, "%q is not accepted; accepted: %s", v, strings.Join(o.ChoiceNames(), ", "))
			}
		}
		if c.mode(n) == config.ModePrimary {
			if other, ok := primaries[n.Role]; ok {
				return src.Errorf(f+".options."+config.ModeOption, "a second %s primary (also %s); accepted: one primary, the other %s nodes with %s: %s", n.Role, other, n.Role, config.ModeOption, config.ModeReplica)
			}
			primaries[n.Role] = n.Name
		}
	}
	for _, n := range c.Nodes {
		if c.roles[n.Role].VIPs && len(c.VIPs) == 0 {
			return src.Errorf("vips", "the %s nodes hold the cluster's VIPs (vips: true in their role file) and need at least one; accepted: a list of {address}", n.Role)
		}
	}
	return nil
}
