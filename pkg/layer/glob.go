package layer

import (
	"archive/tar"
	"regexp"
	"strings"
)

// GlobFilter keeps the entries that no exclude glob matches, or that an
// include glob matches too. Globs match the whole absolute path ("/usr/...")
// the way dpkg's path-exclude does: '*' matches any run of characters,
// '/' included, and '?' one character.
func GlobFilter(exclude, include []string) Filter {
	ex, in := globsRe(exclude), globsRe(include)
	if ex == nil {
		return nil
	}
	return func(name string, _ *tar.Header) bool {
		p := "/" + name
		return !ex.MatchString(p) || (in != nil && in.MatchString(p))
	}
}

func globsRe(globs []string) *regexp.Regexp {
	if len(globs) == 0 {
		return nil
	}
	var alts []string
	for _, g := range globs {
		var b strings.Builder
		for _, r := range g {
			switch r {
			case '*':
				b.WriteString(".*")
			case '?':
				b.WriteString(".")
			default:
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		alts = append(alts, b.String())
	}
	return regexp.MustCompile("^(?:" + strings.Join(alts, "|") + ")$")
}
