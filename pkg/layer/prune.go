package layer

import (
	"archive/tar"
	"fmt"
	"path"
	"strings"
)

// PruneFilter drops every entry that a prune glob names, and everything
// below it, as `rm -rf ROOT/GLOB` in a POSIX shell did before pruning moved
// into Go: a glob is an absolute path whose components match one name each
// ('*' and '?' never match '/', see path.Match), and a wildcard at the
// start of a component does not match a leading '.'. So /var/lib/mysql/*
// empties /var/lib/mysql (except dot files) and keeps the folder itself.
//
// It works on entry names only: a symlink in the tree is never followed,
// so a glob cannot reach outside the root. A glob that path.Match cannot
// read is an error.
func PruneFilter(globs []string) (Filter, error) {
	if len(globs) == 0 {
		return nil, nil
	}
	pats := make([][]string, 0, len(globs))
	for _, g := range globs {
		if !strings.HasPrefix(g, "/") || path.Clean(g) != g || g == "/" {
			return nil, fmt.Errorf("prune glob %q: must be a clean absolute path other than /", g)
		}
		comps := strings.Split(g[1:], "/")
		for _, c := range comps {
			if _, err := path.Match(c, ""); err != nil {
				return nil, fmt.Errorf("prune glob %q: %w", g, err)
			}
		}
		pats = append(pats, comps)
	}
	return func(name string, _ *tar.Header) bool {
		names := strings.Split(name, "/")
		for _, p := range pats {
			if pruned(p, names) {
				return false
			}
		}
		return true
	}, nil
}

// pruned says whether glob components p match names or one of its parents.
func pruned(p, names []string) bool {
	if len(names) < len(p) {
		return false
	}
	for i, c := range p {
		n := names[i]
		if strings.HasPrefix(n, ".") && !strings.HasPrefix(c, ".") {
			return false
		}
		if ok, _ := path.Match(c, n); !ok {
			return false
		}
	}
	return true
}

// AllOf keeps the entries that every one of filters keeps; nil filters
// are passed over.
func AllOf(filters ...Filter) Filter {
	var fs []Filter
	for _, f := range filters {
		if f != nil {
			fs = append(fs, f)
		}
	}
	switch len(fs) {
	case 0:
		return nil
	case 1:
		return fs[0]
	}
	return func(name string, h *tar.Header) bool {
		for _, f := range fs {
			if !f(name, h) {
				return false
			}
		}
		return true
	}
}
