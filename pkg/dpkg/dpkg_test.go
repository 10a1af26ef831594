package dpkg

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseStatusTestdata(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "status"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseStatus(f)
	if err != nil {
		t.Fatalf("ParseStatus: %v", err)
	}
	want := []Package{
		{
			Name: "base-files", Version: "12.4+deb12u5", Architecture: "amd64",
			Source: "base-files", SourceVersion: "12.4+deb12u5",
			Maintainer:    "Santiago Vila <sanvila@debian.org>",
			Description:   "Debian base system miscellaneous files",
			InstalledSize: 340,
		},
		{
			Name: "haproxy", Version: "2.6.12-1+deb12u1", Architecture: "amd64",
			Source: "haproxy", SourceVersion: "2.6.12-1+deb12u1",
			Homepage:      "http://www.haproxy.org/",
			Maintainer:    "Debian HAProxy Maintainers <team+haproxy@tracker.debian.org>",
			Description:   "fast and reliable load balancing reverse proxy",
			InstalledSize: 4262,
		},
		{
			Name: "libc6", Version: "2.36-9+deb12u4", Architecture: "amd64",
			Source: "glibc", SourceVersion: "2.36-9+deb12u4",
			Homepage:      "https://www.gnu.org/software/libc/libc.html",
			Maintainer:    "GNU Libc Maintainers <debian-glibc@lists.debian.org>",
			Description:   "GNU C Library: Shared libraries",
			InstalledSize: 12985,
		},
		{
			Name: "libcrypt1", Version: "1:4.4.33-2", Architecture: "amd64",
			Source: "libxcrypt", SourceVersion: "1:4.4.33-2",
			Homepage:      "https://github.com/besser82/libxcrypt",
			Maintainer:    "Marco d'Itri <md@linux.it>",
			Description:   "libcrypt shared library",
			InstalledSize: 233,
		},
		{
			Name: "libssl3", Version: "3.0.11-1~deb12u2+b1", Architecture: "amd64",
			Source: "openssl", SourceVersion: "3.0.11-1~deb12u2",
			Homepage:      "https://www.openssl.org/",
			Maintainer:    "Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>",
			Description:   "Secure Sockets Layer toolkit - shared libraries",
			InstalledSize: 6200,
		},
		{
			Name: "libstdc++6", Version: "12.2.0-14", Architecture: "i386",
			Source: "gcc-12", SourceVersion: "12.2.0-14",
			Homepage:      "http://gcc.gnu.org/",
			Maintainer:    "Debian GCC Maintainers <debian-gcc@lists.debian.org>",
			Description:   "GNU Standard C++ Library v3",
			InstalledSize: 2834,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseStatus(testdata/status):\n got %+v\nwant %+v", got, want)
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []Package
	}{
		{
			name:  "empty",
			input: "",
			want:  nil,
		},
		{
			name:  "only blank lines",
			input: "\n\n \n\t\n",
			want:  nil,
		},
		{
			name:  "no trailing newline",
			input: "Package: a\nStatus: install ok installed\nVersion: 1.0",
			want:  []Package{{Name: "a", Version: "1.0", Source: "a", SourceVersion: "1.0"}},
		},
		{
			name:  "crlf line endings",
			input: "Package: a\r\nStatus: install ok installed\r\nVersion: 1.0\r\nArchitecture: amd64\r\n\r\nPackage: b\r\nStatus: install ok installed\r\nVersion: 2\r\n",
			want: []Package{
				{Name: "a", Version: "1.0", Architecture: "amd64", Source: "a", SourceVersion: "1.0"},
				{Name: "b", Version: "2", Source: "b", SourceVersion: "2"},
			},
		},
		{
			name:  "source without version",
			input: "Package: libfoo1\nStatus: install ok installed\nVersion: 1.2-3+b1\nSource: foo\n",
			want:  []Package{{Name: "libfoo1", Version: "1.2-3+b1", Source: "foo", SourceVersion: "1.2-3+b1"}},
		},
		{
			name:  "source with version",
			input: "Package: libfoo1\nStatus: install ok installed\nVersion: 1.2-3+b1\nSource: foo (1.2-3)\n",
			want:  []Package{{Name: "libfoo1", Version: "1.2-3+b1", Source: "foo", SourceVersion: "1.2-3"}},
		},
		{
			name: "skips packages that are not installed",
			input: "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n" +
				"Package: half\nStatus: install reinstreq half-installed\nVersion: 1\n\n" +
				"Package: unpacked\nStatus: install ok unpacked\nVersion: 1\n\n" +
				"Package: absent\nStatus: purge ok not-installed\n\n" +
				"Package: held\nStatus: hold ok installed\nVersion: 3\n",
			want: []Package{{Name: "held", Version: "3", Source: "held", SourceVersion: "3"}},
		},
		{
			name: "sorted by name then architecture",
			input: "Package: zlib1g\nStatus: install ok installed\nVersion: 1\nArchitecture: i386\n\n" +
				"Package: zlib1g\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n" +
				"Package: adduser\nStatus: install ok installed\nVersion: 3\nArchitecture: all\n",
			want: []Package{
				{Name: "adduser", Version: "3", Architecture: "all", Source: "adduser", SourceVersion: "3"},
				{Name: "zlib1g", Version: "1", Architecture: "amd64", Source: "zlib1g", SourceVersion: "1"},
				{Name: "zlib1g", Version: "1", Architecture: "i386", Source: "zlib1g", SourceVersion: "1"},
			},
		},
		{
			name:  "field names are case-insensitive and values trimmed",
			input: "package:  a  \nSTATUS: install ok installed\nversion:\t1\ninstalled-size: 12\n",
			want:  []Package{{Name: "a", Version: "1", Source: "a", SourceVersion: "1", InstalledSize: 12}},
		},
		{
			name:  "description keeps only the synopsis",
			input: "Package: a\nStatus: install ok installed\nVersion: 1\nDescription: short\n long text\n .\n more\n",
			want:  []Package{{Name: "a", Version: "1", Source: "a", SourceVersion: "1", Description: "short"}},
		},
		{
			name:  "empty field value with continuation lines",
			input: "Package: a\nStatus: install ok installed\nVersion: 1\nConffiles:\n /etc/a 0123\n\t/etc/b 4567\n",
			want:  []Package{{Name: "a", Version: "1", Source: "a", SourceVersion: "1"}},
		},
		{
			name:  "whitespace-only line separates stanzas",
			input: "Package: a\nStatus: install ok installed\nVersion: 1\n \t \nPackage: b\nStatus: install ok installed\nVersion: 2\n",
			want: []Package{
				{Name: "a", Version: "1", Source: "a", SourceVersion: "1"},
				{Name: "b", Version: "2", Source: "b", SourceVersion: "2"},
			},
		},
		{
			name: "line of the maximum length",
			input: "Package: a\nStatus: install ok installed\nVersion: 1\nDescription: x\n" +
				" " + strings.Repeat("y", MaxLineLength-1) + "\n",
			want: []Package{{Name: "a", Version: "1", Source: "a", SourceVersion: "1", Description: "x"}},
		},
		{
			name: "line of the maximum length with crlf",
			input: "Package: a\r\nStatus: install ok installed\r\nVersion: 1\r\nDescription: x\r\n" +
				" " + strings.Repeat("y", MaxLineLength-1) + "\r\n",
			want: []Package{{Name: "a", Version: "1", Source: "a", SourceVersion: "1", Description: "x"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatus(strings.NewReader(tt.input))
			if err != nil {
				t.Fatalf("ParseStatus: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseStatus:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseStatusErrors(t *testing.T) {
	const ok = "Package: a\nStatus: install ok installed\nVersion: 1\n"
	tests := []struct {
		name    string
		input   string
		wantErr string  // substring of the error message
		wantIs  []error // errors the result must wrap
	}{
		{
			name:    "continuation before any field",
			input:   " orphan\n",
			wantErr: "dpkg status line 1: continuation line outside a field",
		},
		{
			name:    "continuation after blank line",
			input:   ok + "\n more\n",
			wantErr: "dpkg status line 5: continuation line outside a field",
		},
		{
			name:    "line without colon",
			input:   ok + "garbage\n",
			wantErr: `dpkg status line 4: expected "Field: value", found "garbage"`,
		},
		{
			name:    "empty field name",
			input:   ok + ": value\n",
			wantErr: `dpkg status line 4: invalid field name ""`,
		},
		{
			name:    "field name with space",
			input:   ok + "Bad Name: value\n",
			wantErr: `dpkg status line 4: invalid field name "Bad Name"`,
		},
		{
			name:    "duplicate field",
			input:   ok + "version: 2\n",
			wantErr: `dpkg status line 4: duplicate field "version" (first on line 3)`,
		},
		{
			name:    "missing package",
			input:   ok + "\nStatus: install ok installed\nVersion: 1\n",
			wantErr: "dpkg status line 5: stanza has no Package field",
		},
		{
			name:    "missing status",
			input:   ok + "\n\nPackage: b\nVersion: 1\n",
			wantErr: "dpkg status line 6: package b has no Status field",
		},
		{
			name:    "installed without version",
			input:   "Package: a\nStatus: install ok installed\n",
			wantErr: "dpkg status line 1: installed package a has no Version field",
		},
		{
			name:    "bad installed size",
			input:   ok + "Installed-Size: 12k\n",
			wantErr: `dpkg status line 4: Installed-Size field: strconv.ParseInt: parsing "12k": invalid syntax`,
			wantIs:  []error{strconv.ErrSyntax},
		},
		{
			name:    "negative installed size",
			input:   ok + "Installed-Size: -1\n",
			wantErr: "dpkg status line 4: Installed-Size field is negative: -1",
		},
		{
			name:    "source with unterminated version",
			input:   ok + "Source: foo (1.2\n",
			wantErr: `dpkg status line 4: Source field: invalid source version in "foo (1.2"`,
		},
		{
			name:    "source with empty version",
			input:   ok + "Source: foo ()\n",
			wantErr: `dpkg status line 4: Source field: invalid source version in "foo ()"`,
		},
		{
			name:    "source without name",
			input:   ok + "Source: (1.2)\n",
			wantErr: `dpkg status line 4: Source field: invalid source package name in "(1.2)"`,
		},
		{
			name:    "duplicate package",
			input:   ok + "Architecture: amd64\n\n" + ok + "Architecture: amd64\n",
			wantErr: "dpkg status line 6: package a:amd64 is listed twice (first in the stanza on line 1)",
		},
		{
			name:    "line too long",
			input:   ok + "Description: x\n " + strings.Repeat("y", MaxLineLength) + "\n",
			wantErr: "dpkg status line 5: line longer than 1048576 bytes",
			wantIs:  []error{bufio.ErrTooLong},
		},
		{
			name:    "line too long at end of input",
			input:   ok + "Description: x\n " + strings.Repeat("y", MaxLineLength),
			wantErr: "dpkg status line 5: line longer than 1048576 bytes",
			wantIs:  []error{bufio.ErrTooLong},
		},
		{
			name:    "line far too long",
			input:   ok + "Description: x\n " + strings.Repeat("y", 3*MaxLineLength) + "\n",
			wantErr: "dpkg status line 5: line longer than 1048576 bytes",
			wantIs:  []error{bufio.ErrTooLong},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatus(strings.NewReader(tt.input))
			if err == nil {
				t.Fatalf("ParseStatus = %+v, want error containing %q", got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseStatus error = %q, want it to contain %q", err, tt.wantErr)
			}
			for _, target := range tt.wantIs {
				if !errors.Is(err, target) {
					t.Errorf("ParseStatus error %q does not wrap %v", err, target)
				}
			}
		})
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestParseStatusReadError(t *testing.T) {
	sentinel := errors.New("disk on fire")
	_, err := ParseStatus(errReader{sentinel})
	if !errors.Is(err, sentinel) {
		t.Fatalf("ParseStatus error = %v, want it to wrap %v", err, sentinel)
	}
	if want := "dpkg status line 1: reading: disk on fire"; err.Error() != want {
		t.Errorf("ParseStatus error = %q, want %q", err, want)
	}
}

func FuzzParseStatus(f *testing.F) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join("testdata", e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("Package: a\nStatus: install ok installed\nVersion: 1\nSource: b (2)\nInstalled-Size: 3"))
	f.Add([]byte("Package: a\r\nStatus: hold ok installed\r\nVersion: 1\r\nDescription: x\r\n .\r\n\r\n \r\n"))
	f.Add([]byte("Package:\nStatus: installed\n\n\tcontinued\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		pkgs, err := ParseStatus(strings.NewReader(string(data)))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "dpkg status line ") {
				t.Fatalf("error %q does not name a line", err)
			}
			if pkgs != nil {
				t.Fatalf("ParseStatus returned packages and error %v", err)
			}
			return
		}
		sorted := slices.IsSortedFunc(pkgs, func(a, b Package) int {
			if c := strings.Compare(a.Name, b.Name); c != 0 {
				return c
			}
			return strings.Compare(a.Architecture, b.Architecture)
		})
		if !sorted {
			t.Fatalf("packages not sorted: %+v", pkgs)
		}
		for _, p := range pkgs {
			if p.Name == "" || p.Version == "" || p.Source == "" || p.SourceVersion == "" {
				t.Fatalf("package with empty required field: %+v", p)
			}
			if p.InstalledSize < 0 {
				t.Fatalf("negative installed size: %+v", p)
			}
		}
	})
}
