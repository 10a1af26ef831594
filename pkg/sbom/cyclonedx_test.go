package sbom

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func encodeCDX(t *testing.T, in Input) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteCycloneDX(&buf, NewCycloneDX(in)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCycloneDXGolden(t *testing.T) {
	got := encodeCDX(t, testInput(t))
	golden := filepath.Join("testdata", "lb.cdx.json")
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
	// Whatever the order of the packages, the same bytes.
	in := testInput(t)
	slices.Reverse(in.Packages)
	if !bytes.Equal(encodeCDX(t, in), got) {
		t.Error("the package order changed the BOM")
	}
}

// TestCycloneDXFields checks what scanners read: the spec version, the
// operating-system component, and per package the purl with the distro,
// the licence and the hash.
func TestCycloneDXFields(t *testing.T) {
	var bom struct {
		BOMFormat    string `json:"bomFormat"`
		SpecVersion  string `json:"specVersion"`
		SerialNumber string `json:"serialNumber"`
		Metadata     struct {
			Timestamp string `json:"timestamp"`
			Tools     struct {
				Components []struct{ Name, Version string } `json:"components"`
			} `json:"tools"`
		} `json:"metadata"`
		Components []struct {
			BOMRef   string `json:"bom-ref"`
			Type     string `json:"type"`
			Name     string `json:"name"`
			Version  string `json:"version"`
			PURL     string `json:"purl"`
			Licenses []struct {
				Expression string `json:"expression"`
			} `json:"licenses"`
			Hashes []struct{ Alg, Content string } `json:"hashes"`
		} `json:"components"`
	}
	if err := json.Unmarshal(encodeCDX(t, testInput(t)), &bom); err != nil {
		t.Fatal(err)
	}
	if bom.BOMFormat != "CycloneDX" || bom.SpecVersion != "1.6" || !strings.HasPrefix(bom.SerialNumber, "urn:uuid:") || bom.Metadata.Timestamp != "2024-01-02T03:04:05Z" {
		t.Errorf("header: %s %s %s %s", bom.BOMFormat, bom.SpecVersion, bom.SerialNumber, bom.Metadata.Timestamp)
	}
	if tc := bom.Metadata.Tools.Components; len(tc) != 1 || tc[0].Name != "imgforge" || tc[0].Version != "0.1.0" {
		t.Errorf("tools: %+v, want imgforge 0.1.0", tc)
	}
	if c := bom.Components[0]; c.Type != "operating-system" || c.Name != "debian" || c.Version != "12" {
		t.Errorf("first component %+v, want the operating system debian 12", c)
	}
	refs := map[string]bool{}
	for _, c := range bom.Components[1:] {
		if refs[c.BOMRef] {
			t.Errorf("bom-ref %s twice", c.BOMRef)
		}
		refs[c.BOMRef] = true
		if c.Type != "library" || !strings.Contains(c.PURL, "distro=debian-12") {
			t.Errorf("component %s: type %s purl %s", c.Name, c.Type, c.PURL)
		}
		switch c.Name {
		case "libssl3":
			if len(c.Licenses) != 1 || c.Licenses[0].Expression != "(LicenseRef-Artistic OR GPL-1.0-or-later) AND Apache-2.0" {
				t.Errorf("libssl3 licences %+v", c.Licenses)
			}
		case "haproxy":
			if len(c.Hashes) != 1 || c.Hashes[0].Alg != "SHA-256" || len(c.Hashes[0].Content) != 64 {
				t.Errorf("haproxy hashes %+v", c.Hashes)
			}
		case "libc6":
			if len(c.Licenses) != 0 {
				t.Errorf("libc6: licences %+v from a file that is not machine-readable", c.Licenses)
			}
		}
	}
	if len(bom.Components) != 1+len(testPackages(t)) {
		t.Errorf("%d components, want the OS and %d packages", len(bom.Components), len(testPackages(t)))
	}
}
