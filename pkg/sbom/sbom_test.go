package sbom

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/dpkg"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const testDigest = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

var testCreated = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func testPackages(t *testing.T) []dpkg.Package {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "dpkg", "testdata", "status"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pkgs, err := dpkg.ParseStatus(f)
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

var debian12 = Distro{ID: "debian", VersionID: "12"}

// testInput is the input of the golden SBOMs: the packages of
// ../dpkg/testdata/status, the copyright files of testdata/copyright and
// a .deb checksum for two of them.
func testInput(t *testing.T) Input {
	t.Helper()
	in := Input{Name: "lb", ImageDigest: testDigest, Created: testCreated, Tool: "imgforge 0.1.0", Packages: testPackages(t),
		Distro: debian12, Copyright: map[string][]byte{}, Checksums: map[string]string{}}
	ents, err := os.ReadDir(filepath.Join("testdata", "copyright"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("testdata", "copyright", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		in.Copyright[e.Name()] = b
	}
	for _, p := range in.Packages {
		if p.Name == "haproxy" || p.Name == "libc6" {
			sum := sha256.Sum256([]byte(DebKey(p)))
			in.Checksums[DebKey(p)] = hex.EncodeToString(sum[:])
		}
	}
	return in
}

func encode(t *testing.T, d *Document) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := d.WriteJSON(&buf); err != nil {
		t.Fatalf("WriteJSON: %v", err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	got := encode(t, New(testInput(t)))
	golden := filepath.Join("testdata", "lb.spdx.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/sbom -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run go test ./pkg/sbom -update if the change is intended):\n%s", golden, got)
	}
}

func TestDeterministic(t *testing.T) {
	in := testInput(t)
	pkgs := in.Packages
	first := encode(t, New(in))

	reversed := slices.Clone(pkgs)
	slices.Reverse(reversed)
	tests := []struct {
		name string
		pkgs []dpkg.Package
		when time.Time
	}{
		{name: "same input", pkgs: pkgs, when: testCreated},
		{name: "reversed packages", pkgs: reversed, when: testCreated},
		{name: "other time zone", pkgs: pkgs, when: testCreated.In(time.FixedZone("X", 5*3600))},
		{name: "sub-second time", pkgs: pkgs, when: testCreated.Add(999 * time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testInput(t)
			in.Packages, in.Created = tt.pkgs, tt.when
			got := encode(t, New(in))
			if !bytes.Equal(got, first) {
				t.Errorf("output differs from the first run:\n%s", got)
			}
		})
	}
}

func TestHeader(t *testing.T) {
	// The builder gives its version as "imgforge VERSION" (issue 16:
	// the creator was "Tool: imgforge-imgforge 0.1.0").
	d := New(Input{Name: "registry.example/lb:1", ImageDigest: testDigest, Created: time.Unix(1700000000, 0), Tool: "imgforge 1.2.3"})
	tests := []struct {
		field, got, want string
	}{
		{"spdxVersion", d.SPDXVersion, "SPDX-2.3"},
		{"dataLicense", d.DataLicense, "CC0-1.0"},
		{"SPDXID", d.SPDXID, "SPDXRef-DOCUMENT"},
		{"name", d.Name, "registry.example/lb:1"},
		{"documentNamespace", d.DocumentNamespace,
			"https://imgforge.invalid/spdx/registry.example%2Flb:1-9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		{"created", d.CreationInfo.Created, "2023-11-14T22:13:20Z"},
		{"creators", d.CreationInfo.Creators[0], "Tool: imgforge-1.2.3"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.field, tt.got, tt.want)
		}
	}
	for tool, want := range map[string]string{"1.2.3": "Tool: imgforge-1.2.3", "imgforge 0.1.0": "Tool: imgforge-0.1.0", "": "Tool: imgforge"} {
		if got := New(Input{Tool: tool}).CreationInfo.Creators[0]; got != want {
			t.Errorf("creator of tool %q = %q, want %q", tool, got, want)
		}
	}
	if len(d.Packages) != 1 || d.Packages[0].PrimaryPackagePurpose != "CONTAINER" || d.Packages[0].VersionInfo != testDigest {
		t.Errorf("packages of an image without debs = %+v, want only the image", d.Packages)
	}
	if len(d.Relationships) != 1 {
		t.Errorf("relationships of an image without debs = %+v, want only DESCRIBES", d.Relationships)
	}
}

func TestPURL(t *testing.T) {
	tests := []struct {
		name   string
		pkg    dpkg.Package
		distro Distro
		want   string
	}{
		{
			name:   "debian 12",
			pkg:    dpkg.Package{Name: "haproxy", Version: "2.6.12-1+deb12u1", Architecture: "amd64", Source: "haproxy"},
			distro: debian12,
			want:   "pkg:deb/debian/haproxy@2.6.12-1%2Bdeb12u1?arch=amd64&distro=debian-12",
		},
		{
			name: "source equals name",
			pkg:  dpkg.Package{Name: "haproxy", Version: "2.6.12-1+deb12u1", Architecture: "amd64", Source: "haproxy"},
			want: "pkg:deb/debian/haproxy@2.6.12-1%2Bdeb12u1?arch=amd64&distro=debian",
		},
		{
			name: "different source",
			pkg:  dpkg.Package{Name: "libc6", Version: "2.36-9+deb12u4", Architecture: "amd64", Source: "glibc"},
			want: "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian&upstream=glibc",
		},
		{
			name: "epoch and tilde",
			pkg:  dpkg.Package{Name: "libcrypt1", Version: "1:4.4.33-2~bpo1", Architecture: "amd64", Source: "libxcrypt"},
			want: "pkg:deb/debian/libcrypt1@1:4.4.33-2~bpo1?arch=amd64&distro=debian&upstream=libxcrypt",
		},
		{
			name: "plus in name",
			pkg:  dpkg.Package{Name: "libstdc++6", Version: "12.2.0-14", Architecture: "i386", Source: "gcc-12"},
			want: "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?arch=i386&distro=debian&upstream=gcc-12",
		},
		{
			name: "no architecture",
			pkg:  dpkg.Package{Name: "a", Version: "1", Source: "a"},
			want: "pkg:deb/debian/a@1?distro=debian",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PURL(tt.pkg, tt.distro); got != tt.want {
				t.Errorf("PURL = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSupplier(t *testing.T) {
	tests := []struct {
		maintainer, want string
	}{
		{"GNU Libc Maintainers <debian-glibc@lists.debian.org>", "Organization: GNU Libc Maintainers"},
		{"Marco d'Itri <md@linux.it>", "Organization: Marco d'Itri"},
		{"Jane  Doe", "Organization: Jane Doe"},
		{"<nobody@example.org>", "NOASSERTION"},
		{"", "NOASSERTION"},
	}
	for _, tt := range tests {
		if got := supplier(tt.maintainer); got != tt.want {
			t.Errorf("supplier(%q) = %q, want %q", tt.maintainer, got, tt.want)
		}
	}
}

func TestPackageIDs(t *testing.T) {
	pkgs := []dpkg.Package{
		{Name: "libstdc++6", Architecture: "amd64", Version: "1"},
		{Name: "libstdc--6", Architecture: "amd64", Version: "1"},
		{Name: "libstdc-+6", Architecture: "amd64", Version: "1"},
		{Name: "libstdc--6-amd64", Architecture: "2", Version: "1"},
		{Name: "nodejs", Version: "1"},
		{Name: "x_y", Architecture: "arm64", Version: "1"},
	}
	d := New(Input{Name: "lb", ImageDigest: testDigest, Created: testCreated, Packages: pkgs})
	var got []string
	for _, p := range d.Packages[1:] {
		got = append(got, p.Name+" "+p.SPDXID)
	}
	want := []string{
		"libstdc++6 SPDXRef-Package-deb-libstdc--6-amd64",
		"libstdc-+6 SPDXRef-Package-deb-libstdc--6-amd64-2",
		"libstdc--6 SPDXRef-Package-deb-libstdc--6-amd64-3",
		// Its natural ID was already handed out as a suffixed one.
		"libstdc--6-amd64 SPDXRef-Package-deb-libstdc--6-amd64-2-2",
		"nodejs SPDXRef-Package-deb-nodejs",
		"x_y SPDXRef-Package-deb-x-y-arm64",
	}
	if !slices.Equal(got, want) {
		t.Errorf("package IDs:\n got %q\nwant %q", got, want)
	}
	checkValid(t, encode(t, d))
}

func TestValid(t *testing.T) {
	checkValid(t, encode(t, New(testInput(t))))
}

var idPattern = regexp.MustCompile(`^SPDXRef-[A-Za-z0-9.-]+$`)

// checkValid checks that data is a JSON SPDX document whose element IDs are
// well formed and unique and whose relationships refer to existing elements.
func checkValid(t *testing.T, data []byte) {
	t.Helper()
	if !json.Valid(data) {
		t.Fatalf("output is not valid JSON:\n%s", data)
	}
	var doc struct {
		SPDXID            string `json:"SPDXID"`
		SPDXVersion       string `json:"spdxVersion"`
		DocumentNamespace string `json:"documentNamespace"`
		Packages          []struct {
			SPDXID           string `json:"SPDXID"`
			Name             string `json:"name"`
			DownloadLocation string `json:"downloadLocation"`
		} `json:"packages"`
		Relationships []struct {
			Element string `json:"spdxElementId"`
			Type    string `json:"relationshipType"`
			Related string `json:"relatedSpdxElement"`
		} `json:"relationships"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.DocumentNamespace == "" {
		t.Errorf("bad header: version %q, namespace %q", doc.SPDXVersion, doc.DocumentNamespace)
	}
	ids := map[string]bool{doc.SPDXID: true}
	for _, p := range doc.Packages {
		if !idPattern.MatchString(p.SPDXID) {
			t.Errorf("package %q has malformed SPDXID %q", p.Name, p.SPDXID)
		}
		if ids[p.SPDXID] {
			t.Errorf("SPDXID %q is not unique", p.SPDXID)
		}
		ids[p.SPDXID] = true
		if p.Name == "" || p.DownloadLocation == "" {
			t.Errorf("package %q lacks a required field", p.SPDXID)
		}
	}
	contained := map[string]bool{}
	for _, r := range doc.Relationships {
		if !ids[r.Element] || !ids[r.Related] {
			t.Errorf("relationship %s %s %s refers to a missing element", r.Element, r.Type, r.Related)
		}
		if r.Type == "CONTAINS" {
			contained[r.Related] = true
		}
	}
	for _, p := range doc.Packages[1:] {
		if !contained[p.SPDXID] {
			t.Errorf("package %s is not contained in the image", p.SPDXID)
		}
	}
}
