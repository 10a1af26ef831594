package sbom

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/imgforge/imgforge/internal/testtool"
)

// syftPath is the syft that `make syft-tool` builds.
func syftPath(t *testing.T) string {
	t.Helper()
	p, err := testtool.Path("syft", "SYFT")
	if err != nil {
		t.Skip(err)
	}
	return p
}

// TestSyftReads has the real syft read our SPDX and CycloneDX SBOMs, as
// grype does before a scan: it must find every package, identify the
// release as Debian 12 (the vulnerability namespace), and keep the
// declared licences.
func TestSyftReads(t *testing.T) {
	syft := syftPath(t)
	in := testInput(t)
	var want []string
	for _, p := range in.Packages {
		want = append(want, p.Name+" "+p.Version)
	}
	slices.Sort(want)
	dir := t.TempDir()
	for _, f := range []struct {
		name  string
		write func(*bytes.Buffer) error
	}{
		{"lb.spdx.json", func(b *bytes.Buffer) error { return New(in).WriteJSON(b) }},
		{"lb.cdx.json", func(b *bytes.Buffer) error { return WriteCycloneDX(b, NewCycloneDX(in)) }},
	} {
		t.Run(f.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := f.write(&b); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, f.name)
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(syft, "convert", path, "-o", "syft-json", "-q")
			// No update check: tests reach nothing beyond this machine.
			// A home of its own: no user configuration is read.
			cmd.Env = append(os.Environ(), "SYFT_CHECK_FOR_APP_UPDATE=false", "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_CACHE_HOME="+dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("syft convert: %v: %s", err, stderr.Bytes())
			}
			var doc struct {
				Distro struct {
					ID        string `json:"id"`
					VersionID string `json:"versionID"`
				} `json:"distro"`
				Artifacts []struct {
					Name     string `json:"name"`
					Version  string `json:"version"`
					Type     string `json:"type"`
					PURL     string `json:"purl"`
					Licenses []struct {
						Value string `json:"value"`
					} `json:"licenses"`
				} `json:"artifacts"`
			}
			if err := json.Unmarshal(out, &doc); err != nil {
				t.Fatalf("syft's output: %v", err)
			}
			if doc.Distro.ID != "debian" || doc.Distro.VersionID != "12" {
				t.Errorf("syft read the release as %q %q, want debian 12", doc.Distro.ID, doc.Distro.VersionID)
			}
			var got []string
			for _, a := range doc.Artifacts {
				if a.Type != "deb" {
					continue
				}
				got = append(got, a.Name+" "+a.Version)
				if a.Name == "libssl3" && (len(a.Licenses) == 0 || a.Licenses[0].Value != "(LicenseRef-Artistic OR GPL-1.0-or-later) AND Apache-2.0") {
					t.Errorf("libssl3: syft read the licences %+v", a.Licenses)
				}
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("syft found the deb packages\n%q\nwant\n%q", got, want)
			}
		})
	}
}
