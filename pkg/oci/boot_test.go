package oci

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// TestPushBoot pushes an image and its boot artifact to an in-memory
// registry: the artifact is at TAG-boot, has the boot artifactType, one
// layer per file named by its title, and the image as its subject, so
// that the referrers API lists it.
func TestPushBoot(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true)))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/stack/lb:v2"
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Push(context.Background(), ref, img); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	os.MkdirAll(filepath.Join(out, "pxe"), 0o755)
	contents := map[string]string{"manifest.json": `{"role":"lb"}`, "pxe/vmlinuz": "kernel", "pxe/initrd.img": "initrd", "pxe/root.img": "root", "overlay.cpio": "overlay", "pxe/boot.ipxe": "#!ipxe",
		"pxe/imgforge-a.efi": "uki a", "pxe/imgforge-b.efi": "uki b"}
	for p, c := range contents {
		if err := os.WriteFile(filepath.Join(out, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, err := BootFiles(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 7 {
		t.Errorf("files %v", files)
	}
	subject, err := partial.Descriptor(img)
	if err != nil {
		t.Fatal(err)
	}
	got, err := PushBoot(context.Background(), ref, *subject, files)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, host+"/stack/lb@sha256:") {
		t.Errorf("pushed %s", got)
	}
	bootRef, err := name.ParseReference(ref + imagemeta.BootTagSuffix)
	if err != nil {
		t.Fatal(err)
	}
	repo := bootRef.Context()
	d, err := remote.Get(bootRef)
	if err != nil {
		t.Fatal(err)
	}
	if got != repo.Digest(d.Digest.String()).String() {
		t.Errorf("PushBoot said %s, the tag is %s", got, d.Digest)
	}
	var m v1.Manifest
	if err := json.Unmarshal(d.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != imagemeta.BootArtifactType || m.Subject == nil || m.Subject.Digest != subject.Digest || m.Config.MediaType != emptyConfig {
		t.Errorf("manifest %s", d.Manifest)
	}
	titles := map[string]string{}
	for _, l := range m.Layers {
		titles[l.Annotations[imagemeta.BootTitleAnnotation]] = string(l.MediaType)
		blob, err := remote.Layer(repo.Digest(l.Digest.String()))
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := blob.Compressed()
		b, _ := io.ReadAll(rc)
		rc.Close()
		name := l.Annotations[imagemeta.BootTitleAnnotation]
		want := contents[name]
		if want == "" {
			want = contents["pxe/"+name]
		}
		if string(b) != want {
			t.Errorf("%s holds %q, want %q", name, b, want)
		}
	}
	for n, mt := range imagemeta.BootMediaTypes {
		if titles[n] != mt {
			t.Errorf("layer %s has media type %q, want %q", n, titles[n], mt)
		}
	}
	idx, err := remote.Referrers(repo.Digest(subject.Digest.String()))
	if err != nil {
		t.Fatal(err)
	}
	im, _ := idx.IndexManifest()
	// (go-containerregistry's registry reports the config's media type
	// as the referrer's artifactType, not the manifest's artifactType.)
	if len(im.Manifests) != 1 || im.Manifests[0].Digest != d.Digest {
		t.Errorf("referrers of the image: %+v", im.Manifests)
	}
	if _, err := PushBoot(context.Background(), host+"/stack/lb@"+subject.Digest.String(), *subject, files); err == nil {
		t.Error("a boot artifact pushed to a digest reference")
	}
	os.Remove(filepath.Join(out, "pxe/vmlinuz"))
	if _, err := BootFiles(out); err == nil || !strings.Contains(err.Error(), "no vmlinuz") {
		t.Errorf("a folder without a kernel: %v", err)
	}
}
