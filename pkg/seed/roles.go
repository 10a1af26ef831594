package seed

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/spec"
)

// Roles are the role definitions a cluster's nodes are checked against
// and seeded from, by name. What a node's user-data holds comes from its
// role's file, never from its name:
//   - options: the role's options (its choices, its default); a boot
//     option that a role it discovers declares too follows that role's
//     nodes (the web nodes take the app nodes' runtime), which must agree;
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

// follows names the role whose nodes decide boot option o of role r: a
// role r discovers (not itself) that declares an option of the same name.
func (rs Roles) follows(r *spec.Role, o spec.Option) string {
	if !o.Boot {
		return ""
	}
	for _, d := range r.Discover {
		if dr := rs[d]; d != r.Name && dr != nil {
			if _, ok := option(dr, o.Name); ok {
				return d
			}
		}
	}
	return ""
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
// option of its role, the node's or the default, a following boot option
// the value of the role it follows (validated to be one).
func (c *Cluster) options(n ClusterNode) map[string]string {
	r := c.roles[n.Role]
	out := map[string]string{}
	for _, o := range r.Options {
		v := nodeOption(n, o)
		if d := c.roles.follows(r, o); d != "" {
			if w, ok := c.optionOf(d, o.Name); ok {
				v = w
			}
		}
		out[o.Name] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// optionOf is the value of option name on the nodes of role, which are
// validated to agree; false when the cluster has no node of the role.
func (c *Cluster) optionOf(role, name string) (string, bool) {
	o, _ := option(c.roles[role], name)
	for _, n := range c.Nodes {
		if n.Role == role {
			return nodeOption(n, o), true
		}
	}
	return "", false
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
// order: each node's options, one primary per role, the nodes a boot
// option follows agreeing, and VIPs for a role that holds them.
func (c *Cluster) validateRoles(src spec.Source) error {
	primaries := map[string]string{}
	type first struct{ node, value string }
	agreed := map[string]first{}    // role.option -> first node's value
	followed := map[string]string{} // role.option -> a role that follows it
	for _, n := range c.Nodes {
		r := c.roles[n.Role]
		for _, o := range r.Options {
			if d := c.roles.follows(r, o); d != "" {
				followed[d+"."+o.Name] = n.Role
			}
		}
	}
	for i, n := range c.Nodes {
		f := fmt.Sprintf("nodes[%d]", i)
		r := c.roles[n.Role]
		for _, k := range sortedKeys(n.Options) {
			v := n.Options[k]
			o, ok := option(r, k)
			if !ok {
				acc := "none for role " + n.Role
				if names := optionNames(r); len(names) > 0 {
					acc = strings.Join(names, ", ")
				}
				return src.Errorf(f+".options."+k, "unknown option for role %s; accepted: %s", n.Role, acc)
			}
			if d := c.roles.follows(r, o); d != "" {
				return src.Errorf(f+".options."+k, "is the %s nodes' %s, which imgforge seed gives the %s nodes; accepted: leave it out and set it on the %s nodes", d, k, n.Role, d)
			}
			if _, ok := o.Choices[v]; !ok {
				return src.Errorf(f+".options."+k, "%q is not accepted; accepted: %s", v, strings.Join(o.ChoiceNames(), ", "))
			}
		}
		for _, o := range r.Options {
			key := n.Role + "." + o.Name
			follower, ok := followed[key]
			if !ok {
				continue
			}
			v := nodeOption(n, o)
			if a, ok := agreed[key]; !ok {
				agreed[key] = first{n.Name, v}
			} else if a.value != v {
				return src.Errorf(f+".options."+o.Name, "%q, but %s node %s has %s; the %s nodes follow the %s nodes' %s; accepted: the same %s on every %s node", v, n.Role, a.node, a.value, follower, n.Role, o.Name, o.Name, n.Role)
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

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
