// Package sbom writes the software bills of materials of images: SPDX 2.3
// JSON (sbom.spdx.json) and CycloneDX 1.6 JSON (sbom.cdx.json), both made
// from one Input. Both say what scanners such as syft and grype read: a
// package URL per Debian package with distro=debian-VERSION (the
// vulnerability namespace), the declared licences read from the packages'
// machine-readable copyright files, and the .deb files' SHA-256.
package sbom

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/imgforge/imgforge/pkg/dpkg"
)

// SPDX constants used in the documents written by this package.
const (
	SPDXVersion = "SPDX-2.3"
	DataLicense = "CC0-1.0"
	DocumentID  = "SPDXRef-DOCUMENT"
	ImageID     = "SPDXRef-Image"
	NoAssertion = "NOASSERTION"

	// NamespacePrefix is the start of every document namespace.
	NamespacePrefix = "https://imgforge.invalid/spdx/"
)

// Document is the subset of an SPDX 2.3 JSON document that imgforge emits.
type Document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      CreationInfo   `json:"creationInfo"`
	Packages          []Package      `json:"packages"`
	Relationships     []Relationship `json:"relationships"`
}

// CreationInfo records when and by what a Document was created.
type CreationInfo struct {
	Created  string   `json:"created"` // RFC 3339, UTC, whole seconds
	Creators []string `json:"creators"`
}

// Package is an SPDX package: the image itself or one Debian package in it.
type Package struct {
	SPDXID                string        `json:"SPDXID"`
	Name                  string        `json:"name"`
	VersionInfo           string        `json:"versionInfo,omitempty"`
	Supplier              string        `json:"supplier,omitempty"`
	DownloadLocation      string        `json:"downloadLocation"`
	FilesAnalyzed         bool          `json:"filesAnalyzed"`
	LicenseConcluded      string        `json:"licenseConcluded,omitempty"`
	LicenseDeclared       string        `json:"licenseDeclared,omitempty"`
	CopyrightText         string        `json:"copyrightText,omitempty"`
	Homepage              string        `json:"homepage,omitempty"`
	Checksums             []Checksum    `json:"checksums,omitempty"`
	PrimaryPackagePurpose string        `json:"primaryPackagePurpose,omitempty"`
	ExternalRefs          []ExternalRef `json:"externalRefs,omitempty"`
}

// Checksum is a digest of a package's file (the .deb).
type Checksum struct {
	Algorithm string `json:"algorithm"` // "SHA256"
	Value     string `json:"checksumValue"`
}

// ExternalRef is a reference from a Package to an outside identifier,
// such as a package URL.
type ExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

// Relationship links two SPDX elements, e.g. "SPDXRef-Image CONTAINS ...".
type Relationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

// Input is what the SBOMs of an image are made from.
type Input struct {
	// Name is the image's name (the role), ImageDigest its OCI digest
	// ("sha256:...").
	Name, ImageDigest string
	// Created is the creation time, typically SOURCE_DATE_EPOCH.
	Created time.Time
	// Tool is imgforge's version as the builder gives it: "imgforge
	// 0.1.0" or "0.1.0".
	Tool string
	// Packages are the installed Debian packages.
	Packages []dpkg.Package
	// Distro is the distribution the packages are from, e.g. {"debian",
	// "12"}, read from the image's os-release (see ParseOSRelease).
	Distro Distro
	// Copyright maps a package name to its /usr/share/doc/NAME/copyright.
	Copyright map[string][]byte
	// Checksums maps DebKey(p) to the SHA-256 (hex) of the package's
	// .deb, as the archive's Packages index lists it.
	Checksums map[string]string
}

// Distro names a distribution release as os-release does: ID and
// VERSION_ID.
type Distro struct{ ID, VersionID string }

// Qualifier is the purl distro qualifier: "debian-12", or "debian" when
// the version is not known.
func (d Distro) Qualifier() string {
	id := d.ID
	if id == "" {
		id = "debian"
	}
	if d.VersionID == "" {
		return id
	}
	return id + "-" + d.VersionID
}

// DebKey is the key of a package in Input.Checksums: "NAME VERSION ARCH".
func DebKey(p dpkg.Package) string { return p.Name + " " + p.Version + " " + p.Architecture }

// creator is the SPDX creator of the tool version tool: "Tool:
// imgforge-0.1.0" for "imgforge 0.1.0" or "0.1.0".
func creator(tool string) string {
	f := strings.Fields(tool)
	if len(f) > 0 && f[0] == "imgforge" {
		f = f[1:]
	}
	if len(f) == 0 {
		return "Tool: imgforge"
	}
	return "Tool: imgforge-" + f[0]
}

// New returns the SPDX document of in. It uses no clock and no
// randomness: the same Input always produces the same document, whatever
// the order of its packages.
func New(in Input) *Document {
	name, imageDigest := in.Name, in.ImageDigest
	doc := &Document{
		SPDXVersion:       SPDXVersion,
		DataLicense:       DataLicense,
		SPDXID:            DocumentID,
		Name:              name,
		DocumentNamespace: Namespace(name, imageDigest),
		CreationInfo: CreationInfo{
			Created:  in.Created.UTC().Format(time.RFC3339),
			Creators: []string{creator(in.Tool)},
		},
		Packages: []Package{{
			SPDXID:                ImageID,
			Name:                  name,
			VersionInfo:           imageDigest,
			DownloadLocation:      NoAssertion,
			FilesAnalyzed:         false,
			PrimaryPackagePurpose: "CONTAINER",
		}},
		Relationships: []Relationship{{
			SPDXElementID:      DocumentID,
			RelationshipType:   "DESCRIBES",
			RelatedSPDXElement: ImageID,
		}},
	}

	sorted := sortedPackages(in.Packages)
	used := map[string]bool{DocumentID: true, ImageID: true}
	for _, p := range sorted {
		id := uniqueID(debID(p), used)
		pk := Package{
			SPDXID:           id,
			Name:             p.Name,
			VersionInfo:      p.Version,
			Supplier:         supplier(p.Maintainer),
			DownloadLocation: NoAssertion,
			FilesAnalyzed:    false,
			LicenseConcluded: NoAssertion,
			LicenseDeclared:  Declared(in.Copyright[p.Name]),
			CopyrightText:    NoAssertion,
			Homepage:         p.Homepage,
			ExternalRefs: []ExternalRef{{
				ReferenceCategory: "PACKAGE-MANAGER",
				ReferenceType:     "purl",
				ReferenceLocator:  PURL(p, in.Distro),
			}},
		}
		if sum := in.Checksums[DebKey(p)]; sum != "" {
			pk.Checksums = []Checksum{{Algorithm: "SHA256", Value: sum}}
		}
		doc.Packages = append(doc.Packages, pk)
		doc.Relationships = append(doc.Relationships, Relationship{
			SPDXElementID:      ImageID,
			RelationshipType:   "CONTAINS",
			RelatedSPDXElement: id,
		})
	}
	return doc
}

// sortedPackages is pkgs in a fixed order, whatever their order in.
func sortedPackages(pkgs []dpkg.Package) []dpkg.Package {
	sorted := slices.Clone(pkgs)
	slices.SortStableFunc(sorted, func(a, b dpkg.Package) int {
		return slices.Compare(
			[]string{a.Name, a.Architecture, a.Version, a.Source, a.SourceVersion},
			[]string{b.Name, b.Architecture, b.Version, b.Source, b.SourceVersion})
	})
	return sorted
}

// WriteJSON writes d to w as JSON indented by two spaces, followed by a
// newline. Nothing is written if d cannot be encoded.
func (d *Document) WriteJSON(w io.Writer) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep '&' in package URLs readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return fmt.Errorf("encoding spdx document: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("writing spdx document: %w", err)
	}
	return nil
}

// Namespace returns the document namespace of the SBOM of the image called
// name with the given digest: NamespacePrefix, then the path-escaped name,
// "-" and the digest without its "sha256:" prefix.
func Namespace(name, imageDigest string) string {
	return NamespacePrefix + url.PathEscape(name) + "-" + strings.TrimPrefix(imageDigest, "sha256:")
}

// PURL returns the package URL of a Debian package of the release d, e.g.
// "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc".
// The distro qualifier with the version is what syft and grype read to
// pick the vulnerability namespace (debian:distro:debian:12).
func PURL(p dpkg.Package, d Distro) string {
	var b strings.Builder
	b.WriteString("pkg:deb/debian/")
	b.WriteString(purlEscape(p.Name))
	if p.Version != "" {
		b.WriteString("@")
		b.WriteString(purlEscape(p.Version))
	}
	// Qualifiers, sorted by key as the purl specification requires.
	b.WriteString("?")
	if p.Architecture != "" {
		b.WriteString("arch=")
		b.WriteString(purlEscape(p.Architecture))
		b.WriteString("&")
	}
	b.WriteString("distro=")
	b.WriteString(purlEscape(d.Qualifier()))
	if p.Source != "" && p.Source != p.Name {
		b.WriteString("&upstream=")
		b.WriteString(purlEscape(p.Source))
	}
	return b.String()
}

// purlEscape percent-encodes s for use in a package URL: everything but
// ASCII letters, digits, '.', '-', '_', '~' and ':' is encoded, so a '+' in
// a Debian version becomes "%2B".
func purlEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isAlnum(c) || strings.IndexByte(".-_~:", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// debID returns the SPDX identifier of a Debian package before
// de-duplication: "SPDXRef-Package-deb-<name>-<arch>" with characters that
// SPDX does not allow replaced by '-'.
func debID(p dpkg.Package) string {
	s := p.Name
	if p.Architecture != "" {
		s += "-" + p.Architecture
	}
	return "SPDXRef-Package-deb-" + sanitizeID(s)
}

// sanitizeID replaces every byte other than ASCII letters, digits, '.' and
// '-' with '-'.
func sanitizeID(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !isAlnum(c) && c != '.' && c != '-' {
			b[i] = '-'
		}
	}
	return string(b)
}

// uniqueID returns id, or id with the first free suffix "-2", "-3", ... if
// id is taken, and marks the result as used.
func uniqueID(id string, used map[string]bool) string {
	candidate := id
	for n := 2; used[candidate]; n++ {
		candidate = fmt.Sprintf("%s-%d", id, n)
	}
	used[candidate] = true
	return candidate
}

// supplier returns the SPDX supplier for a Debian Maintainer field:
// "Organization: <name>" without the e-mail address, or NOASSERTION.
func supplier(maintainer string) string {
	name, _, _ := strings.Cut(maintainer, "<")
	name = strings.Join(strings.Fields(name), " ")
	if name == "" {
		return NoAssertion
	}
	return "Organization: " + name
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
