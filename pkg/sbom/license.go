package sbom

import (
	"bufio"
	"bytes"
	"slices"
	"strings"
)

// Licenses returns the licences a Debian machine-readable copyright file
// (https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/)
// declares for the package's files, as SPDX license expressions, sorted
// and without repeats: one per distinct License field of its Files
// paragraphs ("GPL-2+ or Artistic" gives "(GPL-2.0-or-later OR
// LicenseRef-Artistic)"). Debian's short names are turned into SPDX
// identifiers where they name one; any other name becomes a LicenseRef.
// It returns nil for a file that is not machine-readable (no Format field
// in its first paragraph) or names no licence.
func Licenses(copyright []byte) []string {
	paras := paragraphs(copyright)
	if len(paras) == 0 || !strings.Contains(paras[0]["format"], "copyright-format") && !strings.Contains(strings.ToLower(paras[0]["format"]), "dep5") {
		return nil
	}
	var out []string
	for _, p := range paras[1:] {
		if _, ok := p["files"]; !ok {
			continue // a stand-alone License paragraph: a licence's text
		}
		if expr := expression(p["license"]); expr != "" && !slices.Contains(out, expr) {
			out = append(out, expr)
		}
	}
	slices.Sort(out)
	return out
}

// Declared is the SPDX licenseDeclared of a package with the copyright
// file copyright: the AND of its Licenses, or NOASSERTION when nothing
// can be read from it.
func Declared(copyright []byte) string {
	l := Licenses(copyright)
	if len(l) == 0 {
		return NoAssertion
	}
	return strings.Join(l, " AND ")
}

// paragraphs splits a deb822 file into paragraphs of fields, named in
// lower case; a field's value is its first line (a License field's short
// name; the text follows on continuation lines, which are skipped).
func paragraphs(data []byte) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		switch {
		case line == "":
			if len(cur) > 0 {
				out = append(out, cur)
				cur = map[string]string{}
			}
		case line[0] == ' ' || line[0] == '\t' || line[0] == '#':
			// a continuation line, or a comment
		default:
			k, v, ok := strings.Cut(line, ":")
			if ok && !strings.ContainsAny(k, " \t") {
				cur[strings.ToLower(k)] = strings.TrimSpace(v)
			}
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// expression turns a License field's first line, Debian's syntax, into an
// SPDX license expression: "or" and "and" (also ", and" and ",") join
// licence names; "X with Y exception" becomes one LicenseRef.
func expression(s string) string {
	words := strings.Fields(strings.ReplaceAll(s, ",", " , "))
	var terms []string // names and operators, in order
	var name []string
	flush := func() {
		if len(name) > 0 {
			terms = append(terms, licenseID(strings.Join(name, " ")))
			name = nil
		}
	}
	for _, w := range words {
		switch strings.ToLower(w) {
		case "or", "and":
			flush()
			if n := len(terms); n > 0 && terms[n-1] != " OR " && terms[n-1] != " AND " {
				terms = append(terms, " "+strings.ToUpper(w)+" ")
			}
		case ",":
			// "A, and B" or "A, B": the word after decides; a lone
			// comma joins with OR, as in a list of alternatives.
			flush()
		default:
			if len(name) == 0 && len(terms) > 0 && terms[len(terms)-1] != " OR " && terms[len(terms)-1] != " AND " {
				terms = append(terms, " OR ")
			}
			name = append(name, w)
		}
	}
	flush()
	for len(terms) > 0 && (terms[len(terms)-1] == " OR " || terms[len(terms)-1] == " AND ") {
		terms = terms[:len(terms)-1]
	}
	if len(terms) == 0 {
		return ""
	}
	expr := strings.Join(terms, "")
	if len(terms) > 1 {
		expr = "(" + expr + ")"
	}
	return expr
}

// debianLicenses are the short names of Debian's copyright format whose
// SPDX identifier differs from them.
var debianLicenses = map[string]string{
	"gpl-1": "GPL-1.0-only", "gpl-1+": "GPL-1.0-or-later",
	"gpl-2": "GPL-2.0-only", "gpl-2+": "GPL-2.0-or-later", "gpl-2.0": "GPL-2.0-only", "gpl-2.0+": "GPL-2.0-or-later",
	"gpl-3": "GPL-3.0-only", "gpl-3+": "GPL-3.0-or-later", "gpl-3.0": "GPL-3.0-only", "gpl-3.0+": "GPL-3.0-or-later",
	"lgpl-2": "LGPL-2.0-only", "lgpl-2+": "LGPL-2.0-or-later", "lgpl-2.0": "LGPL-2.0-only", "lgpl-2.0+": "LGPL-2.0-or-later",
	"lgpl-2.1": "LGPL-2.1-only", "lgpl-2.1+": "LGPL-2.1-or-later",
	"lgpl-3": "LGPL-3.0-only", "lgpl-3+": "LGPL-3.0-or-later", "lgpl-3.0": "LGPL-3.0-only", "lgpl-3.0+": "LGPL-3.0-or-later",
	"agpl-3": "AGPL-3.0-only", "agpl-3+": "AGPL-3.0-or-later",
	"gfdl-1.2": "GFDL-1.2-only", "gfdl-1.2+": "GFDL-1.2-or-later", "gfdl-1.3": "GFDL-1.3-only", "gfdl-1.3+": "GFDL-1.3-or-later",
	"expat": "MIT", "bsd-2-clause": "BSD-2-Clause", "bsd-3-clause": "BSD-3-Clause", "bsd-4-clause": "BSD-4-Clause",
	"apache-2": "Apache-2.0", "apache-2.0": "Apache-2.0", "mpl-1.1": "MPL-1.1", "mpl-2.0": "MPL-2.0",
	"isc": "ISC", "zlib": "Zlib", "cc0-1.0": "CC0-1.0", "cc0": "CC0-1.0", "openssl": "OpenSSL", "curl": "curl",
	"python-2.0": "Python-2.0", "psf-2": "PSF-2.0", "artistic-2.0": "Artistic-2.0", "mit": "MIT", "x11": "X11",
	"unicode-dfs-2016": "Unicode-DFS-2016", "bsl-1.0": "BSL-1.0", "ofl-1.1": "OFL-1.1", "wtfpl": "WTFPL",
	"unlicense": "Unlicense", "0bsd": "0BSD", "epl-1.0": "EPL-1.0", "epl-2.0": "EPL-2.0", "cddl-1.0": "CDDL-1.0",
	"sleepycat": "Sleepycat", "ijg": "IJG", "libpng": "Libpng", "libtiff": "libtiff", "ntp": "NTP", "beerware": "Beerware",
	"ruby": "Ruby", "php-3.01": "PHP-3.01", "php-3.0": "PHP-3.0", "postgresql": "PostgreSQL", "vim": "Vim",
}

// licenseID is the SPDX identifier of a Debian licence short name, or
// LicenseRef-NAME with '+' spelt "-plus" and every other character SPDX
// does not allow made '-'.
func licenseID(name string) string {
	if id := debianLicenses[strings.ToLower(name)]; id != "" {
		return id
	}
	return "LicenseRef-" + sanitizeID(strings.ReplaceAll(name, "+", "-plus"))
}

// ParseOSRelease reads ID and VERSION_ID from an os-release file
// (/usr/lib/os-release). Values may be quoted; other lines are ignored.
func ParseOSRelease(data []byte) Distro {
	var d Distro
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			d.ID = v
		case "VERSION_ID":
			d.VersionID = v
		}
	}
	return d
}
