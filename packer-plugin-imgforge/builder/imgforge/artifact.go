package imgforge

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

var _ packersdk.Artifact = (*Artifact)(nil)

// Artifact is one role's output folder: every file imgforge wrote there,
// each with its sha256 digest as SHA256SUMS lists it.
type Artifact struct {
	result  *imagemeta.Result
	files   []string          // sorted
	digests map[string]string // file -> "sha256:..."
}

func newArtifact(r *imagemeta.Result) (*Artifact, error) {
	a := &Artifact{result: r, digests: map[string]string{}}
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

// State answers "role", "image_digest", "plan_digest", "dir" and
// "digests" (file -> sha256 digest).
func (a *Artifact) State(name string) interface{} {
	switch name {
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
