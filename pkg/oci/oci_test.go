package oci

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"maps"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

var created = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// makeLayer writes files as a gzip-compressed layer blob in dir, the way
// the build cache holds them, and describes it.
func makeLayer(t *testing.T, dir, blobName, comment string, files map[string]string) Layer {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, p := range slices.Sorted(maps.Keys(files)) {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: 0o644, Size: int64(len(files[p])), ModTime: created, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, files[p]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gb bytes.Buffer
	zw := gzip.NewWriter(&gb)
	if _, err := zw.Write(tb.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, blobName)
	if err := os.WriteFile(p, gb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return Layer{Path: p, Digest: sha(gb.Bytes()), DiffID: sha(tb.Bytes()), Size: int64(gb.Len()), Comment: comment}
}

func testLayers(t *testing.T) []Layer {
	t.Helper()
	dir := t.TempDir()
	return []Layer{
		makeLayer(t, dir, "base.tar.gz", "base: debian bookworm: apt", map[string]string{"etc/os-release": "ID=debian\n", "etc/hostname": "localhost\n"}),
		makeLayer(t, dir, "role.tar.gz", "role web: haproxy", map[string]string{"usr/sbin/haproxy": "binary", "etc/haproxy/haproxy.cfg": "global\n"}),
		makeLayer(t, dir, "overlay.tar.gz", "imgforge overlay: 1 files", map[string]string{"etc/imgforge/role.json": `{"role":"web"}`}),
	}
}

func testSpec(layers []Layer) Spec {
	return Spec{
		Layers:       layers,
		Architecture: "amd64",
		Created:      created,
		Labels: map[string]string{
			"org.opencontainers.image.title": "imgforge web",
			"dev.imgforge.role":              "web",
		},
		ExposedPorts: []string{"80/tcp", "443/tcp", "53/udp"},
		Entrypoint:   []string{"/sbin/init"},
		StopSignal:   "SIGRTMIN+3",
		Env:          []string{"PATH=/usr/sbin:/usr/bin", "container=oci"},
	}
}

func layerDigests(t *testing.T, img v1.Image) (digests, diffIDs []string) {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		id, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
		diffIDs = append(diffIDs, id.String())
	}
	return digests, diffIDs
}

func TestImage(t *testing.T) {
	layers := testLayers(t)
	for _, tc := range []struct {
		name string
		spec Spec
	}{
		{"three layers, everything set", testSpec(layers)},
		{"one layer, nothing else", Spec{Layers: layers[:1], Architecture: "arm64", Created: created}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.spec
			img, err := Image(s)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(img); err != nil {
				t.Fatalf("validate.Image: %v", err)
			}

			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.Architecture != s.Architecture || cf.OS != "linux" {
				t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, s.Architecture)
			}
			if !cf.Created.Equal(s.Created) {
				t.Errorf("created %v, want %v", cf.Created.Time, s.Created)
			}
			if !maps.Equal(cf.Config.Labels, s.Labels) {
				t.Errorf("labels %v, want %v", cf.Config.Labels, s.Labels)
			}
			if !slices.Equal(cf.Config.Entrypoint, s.Entrypoint) {
				t.Errorf("entrypoint %q, want %q", cf.Config.Entrypoint, s.Entrypoint)
			}
			if cf.Config.StopSignal != s.StopSignal {
				t.Errorf("stop signal %q, want %q", cf.Config.StopSignal, s.StopSignal)
			}
			if !slices.Equal(cf.Config.Env, s.Env) {
				t.Errorf("env %q, want %q", cf.Config.Env, s.Env)
			}
			var ports []string
			for p := range cf.Config.ExposedPorts {
				ports = append(ports, p)
			}
			slices.Sort(ports)
			wantPorts := slices.Sorted(slices.Values(s.ExposedPorts))
			if !slices.Equal(ports, wantPorts) {
				t.Errorf("exposed ports %q, want %q", ports, wantPorts)
			}
			if len(s.ExposedPorts) == 0 && cf.Config.ExposedPorts != nil {
				t.Errorf("exposed ports %v, want none", cf.Config.ExposedPorts)
			}
			var wantDiffIDs, wantDigests, wantComments []string
			for _, l := range s.Layers {
				wantDiffIDs = append(wantDiffIDs, l.DiffID)
				wantDigests = append(wantDigests, l.Digest)
				wantComments = append(wantComments, l.Comment)
			}
			var diffIDs []string
			for _, d := range cf.RootFS.DiffIDs {
				diffIDs = append(diffIDs, d.String())
			}
			if cf.RootFS.Type != "layers" || !slices.Equal(diffIDs, wantDiffIDs) {
				t.Errorf("rootfs %s %q, want layers %q", cf.RootFS.Type, diffIDs, wantDiffIDs)
			}
			var comments []string
			for _, h := range cf.History {
				comments = append(comments, h.Comment)
				if !h.Created.Equal(s.Created) || h.CreatedBy != "imgforge" || h.EmptyLayer {
					t.Errorf("history entry %+v", h)
				}
			}
			if !slices.Equal(comments, wantComments) {
				t.Errorf("history comments %q, want %q", comments, wantComments)
			}

			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.SchemaVersion != 2 || m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
				t.Errorf("manifest %d %s, config %s; want OCI", m.SchemaVersion, m.MediaType, m.Config.MediaType)
			}
			if mt, err := img.MediaType(); err != nil || mt != types.OCIManifestSchema1 {
				t.Errorf("MediaType() = %s, %v", mt, err)
			}
			if len(s.Labels) == 0 {
				if len(m.Annotations) != 0 {
					t.Errorf("annotations %v, want none", m.Annotations)
				}
			} else if !maps.Equal(m.Annotations, s.Labels) {
				t.Errorf("annotations %v, want the labels %v", m.Annotations, s.Labels)
			}
			var digests []string
			for i, l := range m.Layers {
				digests = append(digests, l.Digest.String())
				if l.MediaType != types.OCILayer {
					t.Errorf("layer %d media type %s, want %s", i, l.MediaType, types.OCILayer)
				}
				if l.Size != s.Layers[i].Size {
					t.Errorf("layer %d size %d, want %d", i, l.Size, s.Layers[i].Size)
				}
			}
			if !slices.Equal(digests, wantDigests) {
				t.Errorf("layers %q, want %q", digests, wantDigests)
			}
			// The config descriptor names the config's bytes.
			raw, err := img.RawConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if m.Config.Digest.String() != sha(raw) || m.Config.Size != int64(len(raw)) {
				t.Errorf("config descriptor %s %d does not match the config", m.Config.Digest, m.Config.Size)
			}

			// Building again gives the same image.
			again, err := Image(s)
			if err != nil {
				t.Fatal(err)
			}
			d1, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			d2, err := again.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if d1 != d2 {
				t.Errorf("two builds of the same spec differ: %s, %s", d1, d2)
			}
		})
	}
}

// TestImageWrongLayer checks that validation, on which the other tests
// rely, sees a layer that does not match what Spec says of it.
func TestImageWrongLayer(t *testing.T) {
	good := testLayers(t)
	other := good[1]
	for _, tc := range []struct {
		name   string
		modify func(l *Layer)
	}{
		{"wrong digest", func(l *Layer) { l.Digest = other.Digest }},
		{"wrong diff id", func(l *Layer) { l.DiffID = other.DiffID }},
		{"wrong size", func(l *Layer) { l.Size++ }},
		{"not gzip", func(l *Layer) {
			p := filepath.Join(t.TempDir(), "plain")
			if err := os.WriteFile(p, []byte("not gzip"), 0o644); err != nil {
				t.Fatal(err)
			}
			l.Path, l.Digest, l.Size = p, sha([]byte("not gzip")), 8
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := good[0]
			tc.modify(&l)
			img, err := Image(Spec{Layers: []Layer{l}, Architecture: "amd64", Created: created})
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(img); err == nil {
				t.Error("validate.Image passed")
			}
		})
	}
}

func TestImageBadDigests(t *testing.T) {
	good := testLayers(t)[0]
	for _, tc := range []struct {
		name, digest, diffID, want string
	}{
		{"empty digest", "", good.DiffID, "layer digest"},
		{"digest without algorithm", strings.TrimPrefix(good.Digest, "sha256:"), good.DiffID, "layer digest"},
		{"short digest", "sha256:abc", good.DiffID, "layer digest"},
		{"bad diff id", good.Digest, "sha256:xyz", "layer diff id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := good
			l.Digest, l.DiffID = tc.digest, tc.diffID
			if _, err := LayerFromFile(l); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LayerFromFile: %v, want an error about the %s", err, tc.want)
			}
			if _, err := Image(Spec{Layers: []Layer{good, l}}); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Image: %v, want an error about the %s", err, tc.want)
			}
		})
	}
}

func TestLayerFromFile(t *testing.T) {
	l := testLayers(t)[2]
	fl, err := LayerFromFile(l)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Layer(fl); err != nil {
		t.Errorf("validate.Layer: %v", err)
	}
	rc, err := fl.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil || h.Name != "etc/imgforge/role.json" {
		t.Errorf("first entry %v, %v", h, err)
	}
	if err := rc.Close(); err != nil {
		t.Error(err)
	}
	if mt, _ := fl.MediaType(); mt != types.OCILayer {
		t.Errorf("media type %s", mt)
	}
	if sz, _ := fl.Size(); sz != l.Size {
		t.Errorf("size %d, want %d", sz, l.Size)
	}

	missing := l
	missing.Path = filepath.Join(t.TempDir(), "gone")
	fl, err = LayerFromFile(missing)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fl.Compressed(); err == nil {
		t.Error("Compressed of a missing file succeeded")
	}
	if _, err := fl.Uncompressed(); err == nil {
		t.Error("Uncompressed of a missing file succeeded")
	}
}

func TestWriteLayout(t *testing.T) {
	layers := testLayers(t)
	for _, tc := range []struct {
		name   string
		layers []Layer
	}{
		{"three layers", layers},
		// The same blob twice (two identical layers) must not damage it.
		{"a layer twice", []Layer{layers[0], layers[1], layers[0]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before [][]byte
			for _, l := range tc.layers {
				b, err := os.ReadFile(l.Path)
				if err != nil {
					t.Fatal(err)
				}
				before = append(before, b)
			}
			img, err := Image(Spec{Layers: tc.layers, Architecture: "amd64", Created: created, Labels: map[string]string{"a": "b"}})
			if err != nil {
				t.Fatal(err)
			}
			want, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "oci")
			if err := WriteLayout(context.Background(), dir, img, "web", tc.layers); err != nil {
				t.Fatal(err)
			}

			// The source blobs are intact.
			for i, l := range tc.layers {
				b, err := os.ReadFile(l.Path)
				if err != nil || !bytes.Equal(b, before[i]) {
					t.Fatalf("source blob %s changed by WriteLayout (%d bytes now, %v)", l.Path, len(b), err)
				}
			}

			ii, err := layout.ImageIndexFromPath(dir)
			if err != nil {
				t.Fatal(err)
			}
			im, err := ii.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(im.Manifests) != 1 {
				t.Fatalf("index has %d manifests, want 1", len(im.Manifests))
			}
			desc := im.Manifests[0]
			if desc.Digest != want {
				t.Errorf("index names %s, want %s", desc.Digest, want)
			}
			if desc.MediaType != types.OCIManifestSchema1 {
				t.Errorf("index entry media type %s", desc.MediaType)
			}
			if got := desc.Annotations["org.opencontainers.image.ref.name"]; got != "web" {
				t.Errorf("ref.name annotation %q, want web", got)
			}
			back, err := ii.Image(desc.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(back); err != nil {
				t.Errorf("validate.Image of the layout's image: %v", err)
			}
			if d, err := back.Digest(); err != nil || d != want {
				t.Errorf("layout image digest %s, %v; want %s", d, err, want)
			}

			// Layer blobs are hard links to the cache's files.
			for _, l := range tc.layers {
				src, err := os.Stat(l.Path)
				if err != nil {
					t.Fatal(err)
				}
				dst, err := os.Stat(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(l.Digest, "sha256:")))
				if err != nil {
					t.Fatal(err)
				}
				if !os.SameFile(src, dst) {
					t.Errorf("blob %s is not a hard link to %s", l.Digest, l.Path)
				}
			}

			// The layout holds exactly the manifest, the config and the layers.
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			wantBlobs := []string{want.Hex, m.Config.Digest.Hex}
			for _, l := range tc.layers {
				wantBlobs = append(wantBlobs, strings.TrimPrefix(l.Digest, "sha256:"))
			}
			slices.Sort(wantBlobs)
			wantBlobs = slices.Compact(wantBlobs)
			entries, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
			if err != nil {
				t.Fatal(err)
			}
			var blobs []string
			for _, e := range entries {
				blobs = append(blobs, e.Name())
			}
			if !slices.Equal(blobs, wantBlobs) {
				t.Errorf("blobs %q, want %q", blobs, wantBlobs)
			}
			var ol struct {
				Version string `json:"imageLayoutVersion"`
			}
			b, err := os.ReadFile(filepath.Join(dir, "oci-layout"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &ol); err != nil || ol.Version != "1.0.0" {
				t.Errorf("oci-layout %s (%v)", b, err)
			}
		})
	}
}

func TestWriteLayoutMissingBlob(t *testing.T) {
	layers := testLayers(t)
	img, err := Image(Spec{Layers: layers, Architecture: "amd64", Created: created})
	if err != nil {
		t.Fatal(err)
	}
	gone := layers[1]
	gone.Path = filepath.Join(t.TempDir(), "gone")
	if err := WriteLayout(context.Background(), filepath.Join(t.TempDir(), "oci"), img, "web", []Layer{layers[0], gone, layers[2]}); err == nil {
		t.Error("WriteLayout with a missing layer file succeeded")
	}
}

func TestWriteDockerArchive(t *testing.T) {
	layers := testLayers(t)
	img, err := Image(testSpec(layers))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteDockerArchive(f, "imgforge/web:latest", img); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1, p2 := write("1.tar"), write("2.tar")
	b1, err := os.ReadFile(p1)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := os.ReadFile(p2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1, b2) {
		t.Error("two docker archives of the same image differ")
	}

	tag, err := name.NewTag("imgforge/web:latest")
	if err != nil {
		t.Fatal(err)
	}
	back, err := tarball.ImageFromPath(p1, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(back); err != nil {
		t.Errorf("validate.Image of the archive: %v", err)
	}
	wantCfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := back.ConfigName(); err != nil || got != wantCfg {
		t.Errorf("config %s, %v; want %s", got, err, wantCfg)
	}
	rawWant, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if rawGot, err := back.RawConfigFile(); err != nil || !bytes.Equal(rawGot, rawWant) {
		t.Errorf("config bytes differ (%v)", err)
	}
	wd, wi := layerDigests(t, img)
	gd, gi := layerDigests(t, back)
	if !slices.Equal(gd, wd) || !slices.Equal(gi, wi) {
		t.Errorf("layers %q / %q, want %q / %q", gd, gi, wd, wi)
	}
	// Another tag is not in the archive.
	other, err := name.NewTag("imgforge/db:latest")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tarball.ImageFromPath(p1, &other); err == nil {
		t.Error("the archive has a tag it was not given")
	}
}

func TestWriteDockerArchiveBadName(t *testing.T) {
	img, err := Image(Spec{Layers: testLayers(t)[:1], Architecture: "amd64", Created: created})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"", "Upper/Case:latest", "web:bad tag", "web@sha256:" + strings.Repeat("a", 64)} {
		var buf bytes.Buffer
		err := WriteDockerArchive(&buf, ref, img)
		if err == nil || !strings.Contains(err.Error(), `image name "`+ref+`"`) {
			t.Errorf("WriteDockerArchive(%q) = %v, want an error naming it", ref, err)
		}
		if buf.Len() != 0 {
			t.Errorf("WriteDockerArchive(%q) wrote %d bytes", ref, buf.Len())
		}
	}
}

// isolateKeychain keeps Push away from the user's docker credentials.
func isolateKeychain(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "auth.json"))
}

func TestPush(t *testing.T) {
	isolateKeychain(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	img, err := Image(testSpec(testLayers(t)))
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, ref, repo string }{
		{"tag", host + "/imgforge/web:latest", host + "/imgforge/web"},
		{"no tag", host + "/imgforge/db", host + "/imgforge/db"},
		{"digest", host + "/imgforge/dns@" + want.String(), host + "/imgforge/dns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			got, err := Push(ctx, tc.ref, img)
			if err != nil {
				t.Fatal(err)
			}
			if wantRef := tc.repo + "@" + want.String(); got != wantRef {
				t.Errorf("Push = %q, want %q", got, wantRef)
			}
			for _, r := range []string{tc.ref, got} {
				ref, err := name.ParseReference(r)
				if err != nil {
					t.Fatal(err)
				}
				pulled, err := remote.Image(ref, remote.WithContext(ctx))
				if err != nil {
					t.Fatalf("pulling %s: %v", r, err)
				}
				if d, err := pulled.Digest(); err != nil || d != want {
					t.Errorf("pulled %s: digest %s, %v; want %s", r, d, err, want)
				}
				if err := validate.Image(pulled); err != nil {
					t.Errorf("validate.Image of %s: %v", r, err)
				}
				m, err := pulled.Manifest()
				if err != nil {
					t.Fatal(err)
				}
				if m.MediaType != types.OCIManifestSchema1 || !reflect.DeepEqual(m.Annotations, testSpec(nil).Labels) {
					t.Errorf("pulled manifest %s %v", m.MediaType, m.Annotations)
				}
			}
		})
	}
}

func TestPushErrors(t *testing.T) {
	isolateKeychain(t)
	img, err := Image(Spec{Layers: testLayers(t)[:1], Architecture: "amd64", Created: created})
	if err != nil {
		t.Fatal(err)
	}
	// An address nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	for _, tc := range []struct {
		name, ref, want string
		ctx             func() (context.Context, context.CancelFunc)
		wantErr         error
	}{
		{name: "empty", ref: "", want: `image reference ""`},
		{name: "upper case", ref: "localhost:5000/Imgforge/Web:latest", want: `image reference "localhost:5000/Imgforge/Web:latest"`},
		{name: "bad tag", ref: "localhost:5000/web:no good", want: `image reference "localhost:5000/web:no good"`},
		{name: "bad digest", ref: "localhost:5000/web@sha256:123", want: `image reference "localhost:5000/web@sha256:123"`},
		{name: "nothing listening", ref: closed + "/imgforge/web:latest", want: "pushing " + closed + "/imgforge/web:latest"},
		{name: "cancelled", ref: closed + "/imgforge/web:latest", want: "pushing", wantErr: context.Canceled, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if tc.ctx != nil {
				ctx, cancel = tc.ctx()
			}
			defer cancel()
			got, err := Push(ctx, tc.ref, img, remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
			if err == nil {
				t.Fatalf("Push = %q, want an error", got)
			}
			if got != "" {
				t.Errorf("Push returned %q with its error", got)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %q does not wrap %v", err, tc.wantErr)
			}
		})
	}
}
