package dpkg

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// IndexDigests reads an apt Packages index (a repository's
// dists/SUITE/COMPONENT/binary-ARCH/Packages, as apt keeps it in
// /var/lib/apt/lists) and returns the SHA256 field of the stanzas whose
// "NAME VERSION ARCH" is in want, keyed by that string. Stanzas not in
// want, and fields other than Package, Version, Architecture and SHA256,
// are skipped without being checked: the index is apt's, verified by apt
// against the release file.
func IndexDigests(r io.Reader, want map[string]bool) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineLength+2)
	var name, version, arch, sum string
	end := func() {
		if name != "" && sum != "" {
			if k := name + " " + version + " " + arch; want[k] {
				out[k] = sum
			}
		}
		name, version, arch, sum = "", "", "", ""
	}
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			end()
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			name = v
		case "Version":
			version = v
		case "Architecture":
			arch = v
		case "SHA256":
			sum = strings.ToLower(v)
		}
	}
	end()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading a Packages index: %w", err)
	}
	return out, nil
}
