package sbom

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"strconv"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// CycloneDXVersion is the CycloneDX specification version of the BOMs
// written here.
const CycloneDXVersion = cdx.SpecVersion1_6

// NewCycloneDX returns the CycloneDX BOM of in: the image as the
// metadata's component, an operating-system component for the
// distribution (what syft reads the release from), and one library
// component per Debian package with its package URL, declared licence
// and the .deb's SHA-256. Like New it uses no clock and no randomness:
// the serial number is derived from the image's name and digest.
func NewCycloneDX(in Input) *cdx.BOM {
	bom := &cdx.BOM{
		BOMFormat:    cdx.BOMFormat,
		SpecVersion:  CycloneDXVersion,
		Version:      1,
		SerialNumber: serialNumber(in.Name, in.ImageDigest),
		Metadata: &cdx.Metadata{
			Timestamp: in.Created.UTC().Format(time.RFC3339),
			Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
				Type: cdx.ComponentTypeApplication, Name: "imgforge", Version: toolVersion(in.Tool),
			}}},
			Component: &cdx.Component{
				BOMRef: "image", Type: cdx.ComponentTypeContainer, Name: in.Name, Version: in.ImageDigest,
			},
		},
	}
	id := in.Distro.ID
	if id == "" {
		id = "debian"
	}
	comps := []cdx.Component{{
		BOMRef: "os:" + in.Distro.Qualifier(), Type: cdx.ComponentTypeOS, Name: id, Version: in.Distro.VersionID,
		Description: "the distribution the packages are from",
	}}
	used := map[string]bool{"image": true, comps[0].BOMRef: true}
	for _, p := range sortedPackages(in.Packages) {
		purl := PURL(p, in.Distro)
		c := cdx.Component{
			BOMRef: uniqueRef(purl, used), Type: cdx.ComponentTypeLibrary, Name: p.Name, Version: p.Version,
			Description: p.Description, PackageURL: purl,
		}
		if s := supplier(p.Maintainer); s != NoAssertion {
			c.Supplier = &cdx.OrganizationalEntity{Name: s[len("Organization: "):]}
		}
		if d := Declared(in.Copyright[p.Name]); d != NoAssertion {
			c.Licenses = &cdx.Licenses{{Expression: d}}
		}
		if sum := in.Checksums[DebKey(p)]; sum != "" {
			c.Hashes = &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: sum}}
		}
		if p.Homepage != "" {
			c.ExternalReferences = &[]cdx.ExternalReference{{URL: p.Homepage, Type: cdx.ERTypeWebsite}}
		}
		comps = append(comps, c)
	}
	bom.Components = &comps
	return bom
}

// WriteCycloneDX writes bom to w as JSON indented by two spaces, with
// the $schema of its version. Nothing is written if bom cannot be
// encoded.
func WriteCycloneDX(w io.Writer, bom *cdx.BOM) error {
	var buf bytes.Buffer
	enc := cdx.NewBOMEncoder(&buf, cdx.BOMFileFormatJSON).SetPretty(true).SetEscapeHTML(false)
	if err := enc.EncodeVersion(bom, bom.SpecVersion); err != nil {
		return fmt.Errorf("encoding cyclonedx bom: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("writing cyclonedx bom: %w", err)
	}
	return nil
}

// serialNumber is a URN with a UUID (version 5 form) derived from the
// image's name and digest.
func serialNumber(name, digest string) string {
	h := sha256.Sum256([]byte("imgforge cyclonedx\x00" + name + "\x00" + digest))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// toolVersion is the version in the tool string the builder gives:
// "0.1.0" of "imgforge 0.1.0".
func toolVersion(tool string) string {
	c := creator(tool)
	if len(c) > len("Tool: imgforge-") {
		return c[len("Tool: imgforge-"):]
	}
	return ""
}

// uniqueRef returns ref, or ref with the first free suffix "#2", "#3",
// ... if ref is taken, and marks the result as used.
func uniqueRef(ref string, used map[string]bool) string {
	candidate := ref
	for n := 2; used[candidate]; n++ {
		candidate = ref + "#" + strconv.Itoa(n)
	}
	used[candidate] = true
	return candidate
}
