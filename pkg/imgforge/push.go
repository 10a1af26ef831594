package imgforge

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgforge/imgforge/pkg/build"
	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/oci"
	"github.com/imgforge/imgforge/pkg/plan"
)

// PushRequest says which image of a role push sends, and where.
type PushRequest struct {
	// Refs are the references to push the image to, each
	// REGISTRY/REPO[:TAG] (TAG defaults to latest): several tags, in one
	// repository or several. Check them first with ParseRefs.
	Refs []string
	// OutputDir is a build's output folder (imgforge build --output-dir):
	// the image pushed is the OCI layout OUTPUT/ROLE/oci, the one its
	// manifest.json names and imgforge verify checks.
	OutputDir string
	// Build, when set, builds the image (or takes it from the cache)
	// instead of reading OutputDir; its Plans, OutputDir and Formats are
	// not used.
	Build *BuildRequest
	// BootFrom, when set, is an output folder holding a build of the
	// same image with the pxe format: its bootable artefacts (OUTPUT/ROLE:
	// manifest.json and the PXE set) are pushed as each reference's boot
	// artifact, tagged TAG-boot (see imagemeta.BootArtifactType), for
	// imgforge-agent update.
	BootFrom string
	// Insecure lets the references' registries be reached over plain
	// HTTP (registries on localhost and 127.0.0.1 always may).
	Insecure bool
	// Remote are further options for the registry client (a transport,
	// credentials); the default keychain's credentials are always tried.
	Remote []remote.Option
}

// PushResult is what Push pushed.
type PushResult struct {
	Role string `json:"role"`
	// Digest is the image's digest.
	Digest string `json:"digest"`
	// Source is the OCI layout the image came from, or "build".
	Source string `json:"source"`
	// Refs are the pushed references, each with the digest
	// (REGISTRY/REPO@sha256:...), in the order of PushRequest.Refs.
	Refs []string `json:"refs"`
	// Tags are PushRequest.Refs as tags (REGISTRY/REPO:TAG).
	Tags []string `json:"tags"`
	// Boot are the pushed boot artifacts, tagged TAG-boot, each with its
	// digest (REGISTRY/REPO@sha256:...), in the order of Refs.
	Boot []string `json:"boot,omitempty"`
	// Signatures are the pushed cosign signature and attestation images of
	// a signed build (tagged sha256-HEX.sig and .att in each repository),
	// each with its digest.
	Signatures []string `json:"signatures,omitempty"`
}

// ErrRef is the error of a reference that ParseRefs refuses.
var ErrRef = errors.New("not an image reference")

// ParseRefs checks refs as push targets: each must be a reference with a
// tag or none (REGISTRY/REPO[:TAG], such as
// registry.example.com/stack/lb:2025-01), not a digest. It does no I/O.
func ParseRefs(refs []string, insecure bool) ([]name.Tag, error) {
	if len(refs) == 0 {
		return nil, fmt.Errorf("%w: none given; accepted: REGISTRY/REPO[:TAG], such as registry.example.com/stack/lb:2025-01", ErrRef)
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	tags := make([]name.Tag, 0, len(refs))
	for _, s := range refs {
		t, err := name.NewTag(s, opts...)
		if err != nil {
			if _, derr := name.NewDigest(s); derr == nil {
				return nil, fmt.Errorf("REF %q: %w: a digest cannot be pushed to; accepted: REGISTRY/REPO[:TAG], such as registry.example.com/stack/lb:2025-01", s, ErrRef)
			}
			return nil, fmt.Errorf("REF %q: %w; accepted: REGISTRY/REPO[:TAG], such as registry.example.com/stack/lb:2025-01 (%w)", s, ErrRef, err)
		}
		tags = append(tags, t)
	}
	return tags, nil
}

// Push pushes the image of p's role to every reference of req.Refs: the
// image in req.OutputDir/ROLE/oci, or, with req.Build, the image built
// from (or found in) the cache. It checks the references before anything
// else, and the image's boot artefacts (req.BootFrom) before it sends a
// byte.
func Push(ctx context.Context, req PushRequest, p *plan.Plan) (*PushResult, error) {
	tags, err := ParseRefs(req.Refs, req.Insecure)
	if err != nil {
		return nil, err
	}
	res := &PushResult{Role: p.Role}
	var (
		img  v1.Image
		sigs *oci.Signatures
	)
	if req.Build != nil {
		res.Source = "build"
		if img, err = buildImage(ctx, *req.Build, p); err != nil {
			return nil, err
		}
	} else {
		dir := filepath.Join(req.OutputDir, p.Role)
		res.Source = filepath.Join(dir, "oci")
		if img, sigs, err = LayoutImage(dir); err != nil {
			return nil, err
		}
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	res.Digest = d.String()
	var files []oci.BootFile
	if req.BootFrom != "" {
		if files, err = bootFiles(filepath.Join(req.BootFrom, p.Role), img); err != nil {
			return nil, err
		}
	}
	subject, err := partial.Descriptor(img)
	if err != nil {
		return nil, err
	}
	for _, t := range tags {
		pushed, err := oci.PushRef(ctx, t, img, req.Remote...)
		if err != nil {
			return nil, err
		}
		res.Refs = append(res.Refs, pushed)
		res.Tags = append(res.Tags, t.Name())
		if sigs != nil {
			pushed, err := sigs.Push(ctx, t.Context(), req.Remote...)
			if err != nil {
				return nil, err
			}
			res.Signatures = append(res.Signatures, pushed...)
		}
		if files != nil {
			b, err := oci.PushBootTag(ctx, t, *subject, files, req.Remote...)
			if err != nil {
				return nil, err
			}
			res.Boot = append(res.Boot, b)
		}
	}
	return res, nil
}

// buildImage builds (or finds in the cache) the image of p.
func buildImage(ctx context.Context, req BuildRequest, p *plan.Plan) (v1.Image, error) {
	c, err := cache.Open(ctx, req.CacheDir)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	b, err := build.New(ctx, build.Options{
		Cache: c, Progress: req.Progress, Log: req.Log, Rootless: req.Rootless, ToolVersion: "imgforge " + Version,
	})
	if err != nil {
		return nil, err
	}
	im, err := b.Layers(ctx, p)
	if err != nil {
		return nil, err
	}
	img, _, err := b.OCIImage(im)
	return img, err
}

// LayoutImage is the image of a role's build in dir (OUTPUT/ROLE): the
// one image of the OCI layout dir/oci, which must be the image that
// dir/manifest.json names.
func LayoutImage(dir string) (v1.Image, *oci.Signatures, error) {
	lp := filepath.Join(dir, "oci")
	if _, err := os.Stat(filepath.Join(lp, "index.json")); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%s: no OCI image here; build one with imgforge build %s --format oci --output-dir %s, or push with --build", lp, filepath.Base(dir), filepath.Dir(dir))
	}
	idx, err := layout.ImageIndexFromPath(lp)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the OCI layout %s: %w", lp, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, nil, fmt.Errorf("reading the OCI layout %s: %w", lp, err)
	}
	// One image, and with a signed build its cosign signature and
	// attestations (named by their tags).
	var images []v1.Descriptor
	for _, m := range im.Manifests {
		if !oci.IsSignatureTag(m.Annotations[oci.RefNameAnnotation]) {
			images = append(images, m)
		}
	}
	if len(images) != 1 || !images[0].MediaType.IsImage() {
		return nil, nil, fmt.Errorf("the OCI layout %s holds %d manifests besides signatures; imgforge build writes one image", lp, len(images))
	}
	d := images[0].Digest
	m, err := imagemeta.ReadManifest(filepath.Join(dir, imagemeta.ManifestName))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the build's manifest: %w", err)
	}
	if m.ImageDigest != d.String() {
		return nil, nil, fmt.Errorf("the OCI layout %s holds image %s, but %s names %s: build the role again into %s", lp, d, filepath.Join(dir, imagemeta.ManifestName), m.ImageDigest, filepath.Dir(dir))
	}
	img, err := idx.Image(d)
	if err != nil {
		return nil, nil, fmt.Errorf("reading image %s of the OCI layout %s: %w", d, lp, err)
	}
	sigs, err := oci.LayoutSignatures(idx, d)
	if errors.Is(err, oci.ErrNotSigned) {
		return img, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading the signatures of the OCI layout %s: %w", lp, err)
	}
	return img, sigs, nil
}

// bootFiles finds the boot artifact's files in dir, a build's output
// folder, and checks that they are of img.
func bootFiles(dir string, img v1.Image) ([]oci.BootFile, error) {
	files, err := oci.BootFiles(dir)
	if err != nil {
		return nil, err
	}
	m, err := imagemeta.ReadManifest(filepath.Join(dir, imagemeta.ManifestName))
	if err != nil {
		return nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	if m.ImageDigest != d.String() {
		return nil, fmt.Errorf("%s: the build there is of image %s, not of the one pushed (%s): build it again into that folder", dir, m.ImageDigest, d)
	}
	return files, nil
}
