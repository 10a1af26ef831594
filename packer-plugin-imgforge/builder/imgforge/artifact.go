package imgforge

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	registryimage "github.com/hashicorp/packer-plugin-sdk/packer/registry/image"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

var _ packersdk.Artifact = (*Artifact)(nil)

// Artifact is one role's output folder: every file imgforge wrote there,
// each with its sha256 digest as SHA256SUMS lists it.
type Artifact struct {
	result  *imagemeta.Result
	files   []string          // sorted
	digests map[string]string // file -> "sha256:..."
	// manifest is the folder's manifest.json.
	manifest *imagemeta.Manifest
}

// ProviderName is the provider of the artefact in HCP Packer's registry.
const ProviderName = "imgforge"

// generatedDataNames are the names of the builder's generated data, which
// post-processors read as build.NAME.
var generatedDataNames = []string{"Role", "ImageDigest", "PlanDigest", "RootHash", "OutputDir"}

func newArtifact(r *imagemeta.Result) (*Artifact, error) {
	a := &Artifact{result: r, digests: map[string]string{}}
	m, err := imagemeta.ReadManifest(filepath.Join(r.Dir, imagemeta.ManifestName))
	if err != nil {
		return nil, fmt.Errorf("reading the outputs of %s: %w", r.Role, err)
	}
	a.manifest = m
	for _, o := range r.Artifacts {
		if o.Format == "sha256sums" {
			a.digests[o.Path] = o.Digest
		}
	}
	sums, err := imagemeta.ReadSums(r.Dir)
	if err != nil {
		return nil, fmt.Errorf("reading the outputs of %s: %w", r.Role, err)
	}
	for name, sum := range sums {
		a.digests[filepath.Join(r.Dir, filepath.FromSlash(name))] = "sha256:" + sum
	}
	for p := range a.digests {
		a.files = append(a.files, p)
	}
	sort.Strings(a.files)
	return a, nil
}

// BuilderId is BuilderID.
func (*Artifact) BuilderId() string { return BuilderID }

// Files lists every file of the output folder.
func (a *Artifact) Files() []string { return a.files }

// Id is the OCI image digest, which names the build.
func (a *Artifact) Id() string { return a.result.ImageDigest }

// String lists every file with its digest.
func (a *Artifact) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "imgforge role %s, image %s, in %s:", a.result.Role, a.result.ImageDigest, a.result.Dir)
	for _, f := range a.files {
		fmt.Fprintf(&b, "\n  %s %s", a.digests[f], f)
	}
	return b.String()
}

// rootHash is the dm-verity root hash of the image's root file system,
// or "" when no bootable format was built.
func (a *Artifact) rootHash() string {
	if a.manifest == nil || a.manifest.Disk == nil {
		return ""
	}
	return a.manifest.Disk.Verity.RootHash
}

// generatedData is the builder's generated data (generatedDataNames), which
// post-processors read as build.ImageDigest, build.RootHash, ...
func (a *Artifact) generatedData() map[string]interface{} {
	return map[string]interface{}{
		"Role":        a.result.Role,
		"ImageDigest": a.result.ImageDigest,
		"PlanDigest":  a.result.PlanDigest,
		"RootHash":    a.rootHash(),
		"OutputDir":   a.result.Dir,
	}
}

// registryImage is the artefact's metadata for HCP Packer: the image
// digest as its ID, and labels that say what it is.
func (a *Artifact) registryImage() (*registryimage.Image, error) {
	labels := map[string]interface{}{
		"role":        a.result.Role,
		"plan_digest": a.result.PlanDigest,
	}
	if h := a.rootHash(); h != "" {
		labels["root_hash"] = h
	}
	if m := a.manifest; m != nil {
		labels["image"] = m.Image
		labels["imgforge_version"] = strings.TrimPrefix(m.Tool, "imgforge ")
		var formats []string
		for _, o := range m.Outputs {
			if !slices.Contains(formats, o.Format) {
				formats = append(formats, o.Format)
			}
		}
		labels["formats"] = strings.Join(formats, ",")
		if m.Disk != nil && m.Disk.KernelVersion != "" {
			labels["kernel_version"] = m.Disk.KernelVersion
		}
	}
	return registryimage.FromArtifact(a,
		registryimage.WithProvider(ProviderName),
		registryimage.WithID(a.result.ImageDigest),
		registryimage.SetLabels(labels),
	)
}

// State answers "role", "image_digest", "plan_digest", "root_hash", "dir",
// "digests" (file -> sha256 digest), "generated_data" (the builder's
// generated data) and HCP Packer's registry metadata
// (registryimage.ArtifactStateURI).
func (a *Artifact) State(name string) interface{} {
	switch name {
	case registryimage.ArtifactStateURI:
		img, err := a.registryImage()
		if err != nil {
			return nil
		}
		return img
	case "generated_data":
		return a.generatedData()
	case "root_hash":
		return a.rootHash()
	case "role":
		return a.result.Role
	case "image_digest":
		return a.result.ImageDigest
	case "plan_digest":
		return a.result.PlanDigest
	case "dir":
		return a.result.Dir
	case "digests":
		return maps.Clone(a.digests)
	}
	return nil
}

// Destroy removes the role's output folder.
func (a *Artifact) Destroy() error { return os.RemoveAll(a.result.Dir) }
