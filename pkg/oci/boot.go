package oci

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// BootFile is one file of a boot artifact.
type BootFile struct {
	Name string // its title: vmlinuz, initrd.img, overlay.cpio, root.img, manifest.json
	Path string
}

// BootFiles finds the files of the boot artifact in a build's output
// folder dir (OUTPUT/ROLE): manifest.json, and the PXE set's kernel,
// initramfs and root image (the squashfs, then its hash tree), and
// overlay.cpio and the slots' signed UKIs (Secure Boot), in pxe/ or
// beside it. All but overlay.cpio and the UKIs must be there.
func BootFiles(dir string) ([]BootFile, error) {
	var out []BootFile
	for _, n := range []string{imagemeta.BootManifest, imagemeta.BootKernel, imagemeta.BootInitrd, imagemeta.BootRoot, imagemeta.BootOverlay, imagemeta.BootUKI("a"), imagemeta.BootUKI("b")} {
		found := ""
		for _, p := range []string{filepath.Join(dir, "pxe", n), filepath.Join(dir, n)} {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				found = p
				break
			}
		}
		if found == "" {
			if n == imagemeta.BootOverlay || imagemeta.BootMediaTypes[n] == imagemeta.BootUKIMediaType {
				continue // optional: UKIs are there for Secure Boot images
			}
			return nil, fmt.Errorf("%s has no %s (build the role with the pxe format)", dir, n)
		}
		out = append(out, BootFile{Name: n, Path: found})
	}
	return out, nil
}

// hashedFile is a blob in a file, hashed once.
type hashedFile struct {
	path   string
	digest v1.Hash
	size   int64
	mt     types.MediaType
}

func newHashedFile(path string, mt types.MediaType) (*hashedFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, n, err := v1.SHA256(f)
	if err != nil {
		return nil, fmt.Errorf("hashing %s: %w", path, err)
	}
	return &hashedFile{path: path, digest: h, size: n, mt: mt}, nil
}

func (f *hashedFile) Digest() (v1.Hash, error)             { return f.digest, nil }
func (f *hashedFile) DiffID() (v1.Hash, error)             { return f.digest, nil }
func (f *hashedFile) Size() (int64, error)                 { return f.size, nil }
func (f *hashedFile) MediaType() (types.MediaType, error)  { return f.mt, nil }
func (f *hashedFile) Compressed() (io.ReadCloser, error)   { return os.Open(f.path) }
func (f *hashedFile) Uncompressed() (io.ReadCloser, error) { return os.Open(f.path) }

// rawManifest is a manifest to PUT as it is.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// emptyConfig is the OCI empty descriptor's media type and content.
const emptyConfig = "application/vnd.oci.empty.v1+json"

// BootManifest is the OCI manifest of a boot artifact of files, whose
// subject is the image described by subject (see package imagemeta).
func BootManifest(subject v1.Descriptor, files []BootFile) (*v1.Manifest, []v1.Layer, error) {
	cfg := static.NewLayer([]byte("{}"), emptyConfig)
	cd, _ := cfg.Digest()
	m := &v1.Manifest{
		SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: imagemeta.BootArtifactType,
		Config:  v1.Descriptor{MediaType: emptyConfig, Digest: cd, Size: 2, Data: []byte("{}")},
		Subject: &v1.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
	}
	layers := []v1.Layer{cfg}
	for _, f := range files {
		mt, ok := imagemeta.BootMediaTypes[f.Name]
		if !ok {
			return nil, nil, fmt.Errorf("%s is not a file of a boot artifact", f.Name)
		}
		l, err := newHashedFile(f.Path, types.MediaType(mt))
		if err != nil {
			return nil, nil, err
		}
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: l.mt, Digest: l.digest, Size: l.size,
			Annotations: map[string]string{imagemeta.BootTitleAnnotation: f.Name}})
		layers = append(layers, l)
	}
	return m, layers, nil
}

// PushBoot pushes files as the boot artifact of the image subject, which
// was pushed to ref (REGISTRY/REPO:TAG), tagged TAG-boot. It returns the
// artifact's reference with its digest.
func PushBoot(ctx context.Context, ref string, subject v1.Descriptor, files []BootFile, opts ...remote.Option) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	tag, ok := r.(name.Tag)
	if !ok {
		return "", fmt.Errorf("image reference %q: give a tag: the boot artifact is tagged TAG%s", ref, imagemeta.BootTagSuffix)
	}
	return PushBootTag(ctx, tag, subject, files, opts...)
}

// PushBootTag is PushBoot to a parsed tag (one made with name.Insecure
// may be reached over plain HTTP).
func PushBootTag(ctx context.Context, tag name.Tag, subject v1.Descriptor, files []BootFile, opts ...remote.Option) (string, error) {
	bt := tag.Context().Tag(tag.TagStr() + imagemeta.BootTagSuffix)
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	m, layers, err := BootManifest(subject, files)
	if err != nil {
		return "", err
	}
	for _, l := range layers {
		if err := remote.WriteLayer(tag.Context(), l, opts...); err != nil {
			return "", fmt.Errorf("pushing the boot artifact's blobs to %s: %w", tag.Context(), err)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if err := remote.Put(bt, rawManifest{b: b, mt: types.OCIManifestSchema1}, opts...); err != nil {
		return "", fmt.Errorf("pushing the boot artifact %s: %w", bt, err)
	}
	h, _, err := v1.SHA256(strings.NewReader(string(b)))
	if err != nil {
		return "", err
	}
	return bt.Context().Digest(h.String()).String(), nil
}
