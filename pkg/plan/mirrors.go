package plan

import (
	"bufio"
	"bytes"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/imgforge/imgforge/pkg/spec"
)

// The mirrors used when neither the image, the caller nor the host names one.
const (
	DefaultMirror         = "http://deb.debian.org/debian"
	DefaultSecurityMirror = "http://deb.debian.org/debian-security"
)

// Mirrors are the Debian archive and security archive a host uses.
type Mirrors struct {
	Debian   string
	Security string
}

// DetectMirrors reads the apt sources of the host whose root is root
// (etc/apt/sources.list and etc/apt/sources.list.d/*.list and *.sources)
// and returns the first Debian archive and security archive it names.
// Sources that are not Debian archives (their URI does not end in /debian
// or /debian-security), and URIs that spec.CheckMirror refuses (a file:
// or cdrom: source, a user and password, a query), are passed over.
func DetectMirrors(root fs.FS) Mirrors {
	var m Mirrors
	var uris []string
	if b, err := fs.ReadFile(root, "etc/apt/sources.list"); err == nil {
		uris = append(uris, listURIs(b)...)
	}
	entries, _ := fs.ReadDir(root, "etc/apt/sources.list.d")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := fs.ReadFile(root, path.Join("etc/apt/sources.list.d", n))
		if err != nil {
			continue
		}
		switch {
		case strings.HasSuffix(n, ".list"):
			uris = append(uris, listURIs(b)...)
		case strings.HasSuffix(n, ".sources"):
			uris = append(uris, deb822URIs(b)...)
		}
	}
	for _, u := range uris {
		u = strings.TrimSuffix(u, "/")
		if spec.CheckMirror(u) != nil {
			continue
		}
		switch {
		case m.Security == "" && strings.HasSuffix(u, "/debian-security"):
			m.Security = u
		case m.Debian == "" && strings.HasSuffix(u, "/debian"):
			m.Debian = u
		}
	}
	return m
}

// listURIs reads one-line-style sources: "deb [opts] URI suite comps".
func listURIs(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		i := 1
		if strings.HasPrefix(f[i], "[") {
			for i < len(f) && !strings.HasSuffix(f[i], "]") {
				i++
			}
			i++
		}
		if i < len(f) {
			out = append(out, f[i])
		}
	}
	return out
}

// deb822URIs reads deb822-style sources, keeping stanzas of Types: deb
// that are not Enabled: no.
func deb822URIs(b []byte) []string {
	var out []string
	for _, stanza := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n\n") {
		fields := map[string]string{}
		for _, line := range strings.Split(stanza, "\n") {
			if strings.HasPrefix(line, "#") || strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t") {
				continue
			}
			k, v, ok := strings.Cut(line, ":")
			if ok {
				fields[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
		if !strings.Contains(" "+fields["types"]+" ", " deb ") || strings.EqualFold(fields["enabled"], "no") {
			continue
		}
		out = append(out, strings.Fields(fields["uris"])...)
	}
	return out
}
