package plan

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/imgforge/imgforge/pkg/spec"
)

// FuzzDetectMirrors feeds arbitrary apt source files to the host mirror
// detection: it must never panic, and what it returns must come from the
// input and pass spec.CheckMirror.
func FuzzDetectMirrors(f *testing.F) {
	f.Add("deb http://deb.debian.org/debian bookworm main\n", "Types: deb\nURIs: http://x/debian-security\n")
	f.Add("deb [arch=amd64 signed-by=/k.gpg] http://m/debian/ b main", "Types: deb deb-src\nEnabled: no\n")
	f.Add("deb [", "\n\n\n")
	f.Fuzz(func(t *testing.T, list, sources string) {
		m := DetectMirrors(fstest.MapFS{
			"etc/apt/sources.list":                  {Data: []byte(list)},
			"etc/apt/sources.list.d/debian.sources": {Data: []byte(sources)},
		})
		for _, u := range []string{m.Debian, m.Security} {
			if u != "" && !strings.Contains(list+sources, u) {
				t.Fatalf("mirror %q is not in the input", u)
			}
			if u != "" && spec.CheckMirror(u) != nil {
				t.Fatalf("mirror %q does not pass spec.CheckMirror", u)
			}
		}
	})
}
