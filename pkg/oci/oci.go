// Package oci assembles imgforge's layers into an OCI image with
// go-containerregistry and writes it out: an OCI image layout, a
// docker-archive tarball, or a registry. Layers come from files that are
// already compressed (the build cache); nothing is recompressed here.
package oci

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgforge/imgforge/pkg/ctxio"
)

// Layer is a gzip-compressed layer blob in a file.
type Layer struct {
	Path    string // the compressed blob
	Digest  string // sha256 of the compressed blob
	DiffID  string // sha256 of the uncompressed tar
	Size    int64  // of the compressed blob
	Comment string // for the image history, e.g. "base: debian bookworm"
}

type fileLayer struct {
	l              Layer
	digest, diffID v1.Hash
}

func (f *fileLayer) Digest() (v1.Hash, error)            { return f.digest, nil }
func (f *fileLayer) DiffID() (v1.Hash, error)            { return f.diffID, nil }
func (f *fileLayer) Size() (int64, error)                { return f.l.Size, nil }
func (f *fileLayer) MediaType() (types.MediaType, error) { return types.OCILayer, nil }
func (f *fileLayer) Compressed() (io.ReadCloser, error)  { return os.Open(f.l.Path) }
func (f *fileLayer) Uncompressed() (io.ReadCloser, error) {
	fh, err := os.Open(f.l.Path)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(fh)
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("reading layer %s: %w", f.l.Digest, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, fh}, nil
}

// LayerFromFile makes a v1.Layer from a compressed blob whose digests are known.
func LayerFromFile(l Layer) (v1.Layer, error) {
	d, err := v1.NewHash(l.Digest)
	if err != nil {
		return nil, fmt.Errorf("layer digest %q: %w", l.Digest, err)
	}
	id, err := v1.NewHash(l.DiffID)
	if err != nil {
		return nil, fmt.Errorf("layer diff id %q: %w", l.DiffID, err)
	}
	return &fileLayer{l: l, digest: d, diffID: id}, nil
}

// Spec is what the image is made of and says about itself.
type Spec struct {
	Layers       []Layer
	Architecture string
	Created      time.Time
	Labels       map[string]string // config labels; also the manifest's annotations
	ExposedPorts []string          // "80/tcp"
	Entrypoint   []string
	StopSignal   string
	Env          []string
}

// Image assembles the image Spec describes.
func Image(s Spec) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var adds []mutate.Addendum
	for _, l := range s.Layers {
		fl, err := LayerFromFile(l)
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.Addendum{
			Layer:     fl,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: s.Created}, CreatedBy: "imgforge", Comment: l.Comment},
		})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("adding layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = s.Architecture
	cf.OS = "linux"
	cf.Created = v1.Time{Time: s.Created}
	cf.Config.Labels = s.Labels
	cf.Config.Entrypoint = s.Entrypoint
	cf.Config.StopSignal = s.StopSignal
	cf.Config.Env = s.Env
	if len(s.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range s.ExposedPorts {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("writing config: %w", err)
	}
	return mutate.Annotations(img, s.Labels).(v1.Image), nil
}

// WriteLayout writes img as an OCI image layout in dir (which must not
// exist yet), named refName (org.opencontainers.image.ref.name). Layer
// blobs are hard-linked from their files when the file system allows.
// It stops with ctx's error once ctx is done, within one buffer of a
// layer's copy.
func WriteLayout(ctx context.Context, dir string, img v1.Image, refName string, layers []Layer) error {
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	for _, l := range layers {
		dst := filepath.Join(blobs, trimAlgo(l.Digest))
		if err := linkOrCopy(ctx, l.Path, dst); err != nil {
			return fmt.Errorf("writing layer %s: %w", l.Digest, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": refName})); err != nil {
		return fmt.Errorf("writing OCI layout %s: %w", dir, err)
	}
	return nil
}

// WriteDockerArchive writes img as a `docker save` style tarball tagged ref.
func WriteDockerArchive(w io.Writer, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image name %q: %w", ref, err)
	}
	if err := tarball.Write(tag, img, w); err != nil {
		return fmt.Errorf("writing docker archive: %w", err)
	}
	return nil
}

func trimAlgo(d string) string {
	if len(d) > 7 && d[:7] == "sha256:" {
		return d[7:]
	}
	return d
}

func linkOrCopy(ctx context.Context, src, dst string) error {
	// dst exists when an image has the same layer twice; it may then be a
	// link to src, which the copy below would truncate.
	os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := ctxio.Copy(ctx, out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	return out.Close()
}

// Push writes img to the registry at ref, with credentials from the
// default keychain (docker config, credential helpers).
func Push(ctx context.Context, ref string, img v1.Image, opts ...remote.Option) (string, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	return PushRef(ctx, r, img, opts...)
}

// PushRef is Push to a parsed reference (one made with name.Insecure
// may be reached over plain HTTP).
func PushRef(ctx context.Context, r name.Reference, img v1.Image, opts ...remote.Option) (string, error) {
	opts = append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}, opts...)
	if err := remote.Write(r, img, opts...); err != nil {
		return "", fmt.Errorf("pushing %s: %w", r, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return r.Context().Digest(d.String()).String(), nil
}
