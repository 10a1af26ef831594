package sbom

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLicenses(t *testing.T) {
	const head = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\n"
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"one", head + "Files: *\nCopyright: me\nLicense: GPL-2+\n", []string{"GPL-2.0-or-later"}},
		{"text after the name", head + "Files: *\nCopyright: me\nLicense: Expat\n Permission is hereby granted\n .\n License: not a field\n", []string{"MIT"}},
		{"repeats and order", head + "Files: *\nLicense: LGPL-2.1+\n\nFiles: a/*\nLicense: BSD-3-clause\n\nFiles: b/*\nLicense: LGPL-2.1+\n", []string{"BSD-3-Clause", "LGPL-2.1-or-later"}},
		{"or", head + "Files: *\nLicense: Artistic or GPL-1+\n", []string{"(LicenseRef-Artistic OR GPL-1.0-or-later)"}},
		{"and, comma", head + "Files: *\nLicense: GPL-2+, and LGPL-2+\n", []string{"(GPL-2.0-or-later AND LGPL-2.0-or-later)"}},
		{"exception", head + "Files: *\nLicense: GPL-2+ with OpenSSL exception\n", []string{"LicenseRef-GPL-2-plus-with-OpenSSL-exception"}},
		{"stand-alone licence paragraphs do not count", head + "Files: *\nLicense: ISC\n\nLicense: GPL-3\n text\n", []string{"ISC"}},
		{"case of field names", "format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nfiles: *\nlicense: zlib\n", []string{"Zlib"}},
		{"CRLF", strings.ReplaceAll(head+"Files: *\nLicense: MPL-2.0\n", "\n", "\r\n"), []string{"MPL-2.0"}},
		{"dep5 draft", "Format-Specification: http://svn.debian.org/wsvn/dep/web/deps/dep5.mdwn?op=file&rev=135\n\nFiles: *\nLicense: GPL-2\n", nil},
		{"not machine-readable", "This is the Debian prepackaged version of the GNU C Library.\n\nLicense: LGPL-2.1\n", nil},
		{"no licence", head + "Files: *\nCopyright: me\n", nil},
		{"empty", "", nil},
	} {
		if got := Licenses([]byte(tc.file)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestDeclared reads real copyright files of Debian 12 packages.
func TestDeclared(t *testing.T) {
	for pkg, want := range map[string]string{
		"libssl3": "(LicenseRef-Artistic OR GPL-1.0-or-later) AND Apache-2.0",
		"haproxy": "GPL-2.0-or-later AND LGPL-2.1-only AND LicenseRef-GPL-2-plus-with-OpenSSL-exception AND MPL-2.0",
		"libc6":   NoAssertion, // not machine-readable
		"missing": NoAssertion,
	} {
		b, _ := os.ReadFile(filepath.Join("testdata", "copyright", pkg))
		if got := Declared(b); got != want {
			t.Errorf("%s: %q, want %q", pkg, got, want)
		}
	}
}

func TestParseOSRelease(t *testing.T) {
	const bookworm = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
`
	if got := ParseOSRelease([]byte(bookworm)); got != debian12 || got.Qualifier() != "debian-12" {
		t.Errorf("%+v (%s), want debian 12", got, got.Qualifier())
	}
	if got := (Distro{}).Qualifier(); got != "debian" {
		t.Errorf("unknown release: %q, want debian", got)
	}
}

func FuzzLicenses(f *testing.F) {
	for _, n := range []string{"libssl3", "haproxy", "libc6"} {
		b, err := os.ReadFile(filepath.Join("testdata", "copyright", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, l := range Licenses(data) {
			if l == "" || strings.Contains(l, "  ") || strings.HasSuffix(l, " ") {
				t.Fatalf("malformed expression %q", l)
			}
			for _, w := range strings.Fields(strings.Trim(l, "()")) {
				if w != "OR" && w != "AND" && !idPattern.MatchString("SPDXRef-"+strings.TrimPrefix(w, "LicenseRef-")) {
					t.Fatalf("expression %q holds %q", l, w)
				}
			}
		}
	})
}
