package imgforge

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	registryimage "github.com/hashicorp/packer-plugin-sdk/packer/registry/image"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// TestNewArtifact reads an output folder as the builder writes it: the
// files of SHA256SUMS, written by imagemeta as the builder does, and
// SHA256SUMS itself from the result.
func TestNewArtifact(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"lb.raw": "disk", "manifest.json": "{}\n", "oci/index.json": "{}"}
	sums := map[string]string{}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(data))
		sums[name] = hex.EncodeToString(sum[:])
	}
	sumsFile := imagemeta.MarshalSums(sums)
	if err := os.WriteFile(filepath.Join(dir, imagemeta.SumsName), sumsFile, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(sumsFile)
	r := &imagemeta.Result{Role: "lb", ImageDigest: "sha256:c", PlanDigest: "sha256:b", Dir: dir, Artifacts: []imagemeta.Output{
		{Path: filepath.Join(dir, imagemeta.SumsName), Format: "sha256sums", Digest: "sha256:" + hex.EncodeToString(sum[:])},
	}}
	a, err := newArtifact(r)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "SHA256SUMS"), filepath.Join(dir, "lb.raw"), filepath.Join(dir, "manifest.json"), filepath.Join(dir, "oci", "index.json")}
	if got := a.Files(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	digests := a.State("digests").(map[string]string)
	for _, f := range want {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		if digests[f] != "sha256:"+hex.EncodeToString(s[:]) {
			t.Errorf("digest of %s: %s", f, digests[f])
		}
	}
	if a.Id() != "sha256:c" || a.State("plan_digest") != "sha256:b" {
		t.Errorf("Id %s, plan digest %v", a.Id(), a.State("plan_digest"))
	}

	if err := os.WriteFile(filepath.Join(dir, imagemeta.SumsName), []byte("xyz  lb.raw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := newArtifact(r); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a broken SHA256SUMS: %v", err)
	}
}

// TestArtifactMetadata: the artefact gives post-processors the image
// digest and the root hash as generated data, and HCP Packer its registry
// metadata; the builder's Prepare names the generated data.
func TestArtifactMetadata(t *testing.T) {
	tests := []struct {
		name     string
		manifest imagemeta.Manifest
		rootHash string
		labels   map[string]string
	}{
		{"bootable", imagemeta.Manifest{
			Role: "lb", Image: "debian-bookworm", Tool: "imgforge 0.1.0",
			Outputs: []imagemeta.Output{{Path: "oci", Format: "oci"}, {Path: "lb.raw", Format: "raw"}, {Path: "sbom.spdx.json", Format: "spdx-json"}},
			Disk:    &imagemeta.Disk{KernelVersion: "6.1.0-28-amd64", Verity: imagemeta.Verity{RootHash: "4f2a"}},
		}, "4f2a", map[string]string{
			"role": "lb", "plan_digest": "sha256:b", "root_hash": "4f2a", "image": "debian-bookworm",
			"imgforge_version": "0.1.0", "formats": "oci,raw,spdx-json", "kernel_version": "6.1.0-28-amd64",
		}},
		{"oci only", imagemeta.Manifest{Role: "lb", Image: "debian-bookworm", Tool: "imgforge 0.1.0", Outputs: []imagemeta.Output{{Path: "oci", Format: "oci"}}},
			"", map[string]string{"role": "lb", "plan_digest": "sha256:b", "image": "debian-bookworm", "imgforge_version": "0.1.0", "formats": "oci"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			mj, err := tt.manifest.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, imagemeta.ManifestName), mj, 0o644); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(mj)
			if err := os.WriteFile(filepath.Join(dir, imagemeta.SumsName), imagemeta.MarshalSums(map[string]string{imagemeta.ManifestName: hex.EncodeToString(sum[:])}), 0o644); err != nil {
				t.Fatal(err)
			}
			a, err := newArtifact(&imagemeta.Result{Role: "lb", ImageDigest: "sha256:c", PlanDigest: "sha256:b", Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			gd, ok := a.State("generated_data").(map[string]interface{})
			if !ok {
				t.Fatalf("generated_data is a %T", a.State("generated_data"))
			}
			want := map[string]interface{}{"Role": "lb", "ImageDigest": "sha256:c", "PlanDigest": "sha256:b", "RootHash": tt.rootHash, "OutputDir": dir}
			if !maps.Equal(gd, want) {
				t.Errorf("generated_data %v, want %v", gd, want)
			}
			for _, k := range generatedDataNames {
				if _, ok := gd[k]; !ok {
					t.Errorf("generated data lacks %s, which Prepare names", k)
				}
			}
			if a.State("root_hash") != tt.rootHash {
				t.Errorf("root_hash %v", a.State("root_hash"))
			}
			img, ok := a.State(registryimage.ArtifactStateURI).(*registryimage.Image)
			if !ok {
				t.Fatalf("registry metadata is a %T", a.State(registryimage.ArtifactStateURI))
			}
			if err := img.Validate(); err != nil {
				t.Fatal(err)
			}
			if img.ProviderName != "imgforge" || img.ImageID != "sha256:c" || !maps.Equal(img.Labels, tt.labels) {
				t.Errorf("registry image %+v labels %v\nwant labels %v", img, img.Labels, tt.labels)
			}
		})
	}
	if _, err := newArtifact(&imagemeta.Result{Role: "lb", Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "reading the manifest") {
		t.Errorf("a folder without manifest.json: %v", err)
	}
}

func TestPrepareGeneratedVars(t *testing.T) {
	b := &Builder{getenv: env("HOME", t.TempDir())}
	vars, _, err := b.Prepare(map[string]interface{}{"role": "lb", "output_dir": t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(vars, []string{"Role", "ImageDigest", "PlanDigest", "RootHash", "OutputDir"}) {
		t.Errorf("generated vars %v", vars)
	}
}
