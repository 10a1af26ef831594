// Package names holds the rules for the names imgforge gives things:
// definitions (roles, images, options), clusters, roles and nodes. It is a
// leaf: the builder, seeds, serve and the on-node agent all check names
// with it, so a name one accepts the others accept too.
package names

import "regexp"

// MaxRole is the longest role name: a node's role travels in its
// certificate inside every gossip message, which memberlist caps at 512
// bytes.
const MaxRole = 32

var (
	word = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)
	node = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
)

// Word reports whether s is the name of a definition (an image, an
// option, a choice, a suite): a lower-case letter, then up to 62
// lower-case letters, digits and '-'.
func Word(s string) bool { return word.MatchString(s) }

// Cluster reports whether s is a cluster name: a Word.
func Cluster(s string) bool { return word.MatchString(s) }

// Role reports whether s is a role name: a Word of at most MaxRole
// characters (the name of its role file, roles/NAME.yaml).
func Role(s string) bool { return len(s) <= MaxRole && word.MatchString(s) }

// Node reports whether s is a node name: one DNS label of lower-case
// letters, digits and '-', 1 to 63 characters, not starting or ending
// with '-'.
func Node(s string) bool { return node.MatchString(s) }
