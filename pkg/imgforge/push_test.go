package imgforge

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/oci"
	"github.com/imgforge/imgforge/pkg/plan"
)

// TestBootFiles: push --boot-from takes the bootable artefacts of a
// build only when that build is of the image pushed.
func TestBootFiles(t *testing.T) {
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pxe"), 0o755)
	for _, f := range []string{"pxe/vmlinuz", "pxe/initrd.img", "pxe/root.img"} {
		os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644)
	}
	for _, tc := range []struct{ digest, err string }{
		{d.String(), ""},
		{"sha256:" + strings.Repeat("0", 64), "not of the one pushed"},
	} {
		b, _ := (&imagemeta.Manifest{Role: "lb", ImageDigest: tc.digest}).Marshal()
		os.WriteFile(filepath.Join(dir, imagemeta.ManifestName), b, 0o644)
		files, err := bootFiles(dir, img)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.digest, err, tc.err)
			}
			continue
		}
		if err != nil || len(files) != 4 {
			t.Errorf("%v %v", files, err)
		}
	}
}

// testBuild writes what imgforge build writes for a role that push
// reads: OUTPUT/ROLE/oci (an OCI layout of one random image) and
// OUTPUT/ROLE/manifest.json naming it. It returns OUTPUT and the image.
func testBuild(t *testing.T, role string) (string, v1.Image) {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	dir := filepath.Join(out, role)
	if err := oci.WriteLayout(context.Background(), filepath.Join(dir, "oci"), img, role, nil); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	b, _ := (&imagemeta.Manifest{Role: role, ImageDigest: d.String()}).Marshal()
	if err := os.WriteFile(filepath.Join(dir, imagemeta.ManifestName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out, img
}

// testRegistry runs go-containerregistry's registry on addr (a loopback
// address) over plain HTTP and returns its host:port.
func testRegistry(t *testing.T, addr string) string {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listening on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return ln.Addr().String()
}

func TestParseRefs(t *testing.T) {
	const accepted = "accepted: REGISTRY/REPO[:TAG], such as registry.example.com/stack/lb:2025-01"
	for _, tc := range []struct {
		refs []string
		want string // "": accepted
	}{
		{[]string{"registry.example.com/stack/lb:2025-01"}, ""},
		{[]string{"registry.example.com/stack/lb:2025-01", "registry.example.com/stack/lb", "other.example.com:5000/lb:latest"}, ""},
		{[]string{"bad ref!!"}, `REF "bad ref!!": not an image reference; ` + accepted + " ("},
		{[]string{"registry.example.com/stack/lb:ok", "registry.example.com/Stack/lb:x"}, `REF "registry.example.com/Stack/lb:x": not an image reference; ` + accepted},
		{[]string{"registry.example.com/stack/lb@sha256:" + strings.Repeat("a", 64)}, "not an image reference: a digest cannot be pushed to; " + accepted},
		{[]string{""}, `REF "": not an image reference; ` + accepted},
		{nil, "not an image reference: none given; " + accepted},
	} {
		_, err := ParseRefs(tc.refs, false)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.refs, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrRef) || strings.Contains(err.Error(), "\n")):
			t.Errorf("%q: error %v\nwant one line containing %q", tc.refs, err, tc.want)
		}
	}
}

// TestPushRefFirst: a bad reference is refused before anything else is
// done, even with Build (which would run mmdebstrap first).
func TestPushRefFirst(t *testing.T) {
	cacheFile := filepath.Join(t.TempDir(), "not-a-folder")
	os.WriteFile(cacheFile, nil, 0o644)
	_, err := Push(context.Background(), PushRequest{Refs: []string{"bad ref!!"}, Build: &BuildRequest{CacheDir: cacheFile}}, &plan.Plan{Role: "lb"})
	if !errors.Is(err, ErrRef) {
		t.Errorf("Push: %v, want the reference refused", err)
	}
}

// TestPushFromLayout pushes the image of a build's output folder (not a
// rebuild) under two tags, with its boot artefacts.
func TestPushFromLayout(t *testing.T) {
	host := testRegistry(t, "127.0.0.1:0")
	out, img := testBuild(t, "lb")
	want, _ := img.Digest()
	pxe := filepath.Join(out, "lb", "pxe")
	os.MkdirAll(pxe, 0o755)
	for _, f := range []string{"vmlinuz", "initrd.img", "root.img"} {
		os.WriteFile(filepath.Join(pxe, f), []byte(f), 0o644)
	}
	refs := []string{host + "/stack/lb:2025-01", host + "/stack/lb:latest", host + "/mirror/lb"}
	res, err := Push(context.Background(), PushRequest{Refs: refs, OutputDir: out, BootFrom: out}, &plan.Plan{Role: "lb"})
	if err != nil {
		t.Fatal(err)
	}
	wantRes := &PushResult{
		Role: "lb", Digest: want.String(), Source: filepath.Join(out, "lb", "oci"),
		Refs: []string{host + "/stack/lb@" + want.String(), host + "/stack/lb@" + want.String(), host + "/mirror/lb@" + want.String()},
		Tags: []string{refs[0], refs[1], host + "/mirror/lb:latest"},
	}
	boot := res.Boot
	res.Boot = nil
	if !reflect.DeepEqual(res, wantRes) {
		t.Errorf("Push = %+v\nwant %+v", res, wantRes)
	}
	if len(boot) != 3 || !strings.HasPrefix(boot[0], host+"/stack/lb@sha256:") || !strings.HasPrefix(boot[2], host+"/mirror/lb@sha256:") || boot[0] == res.Refs[0] {
		t.Fatalf("boot artifacts %q", boot)
	}
	for _, r := range append(refs, host+"/stack/lb:2025-01-boot", host+"/mirror/lb:latest-boot") {
		ref, err := name.ParseReference(r)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Get(ref)
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		if strings.HasSuffix(r, "-boot") {
			if "@"+desc.Digest.String() != boot[0][strings.Index(boot[0], "@"):] {
				t.Errorf("%s is %s, want %s", r, desc.Digest, boot[0])
			}
			continue
		}
		if desc.Digest != want {
			t.Errorf("%s is %s, want %s", r, desc.Digest, want)
		}
		pulled, err := desc.Image()
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(pulled); err != nil {
			t.Errorf("validate.Image(%s): %v", r, err)
		}
	}
}

func TestPushLayoutErrors(t *testing.T) {
	host := testRegistry(t, "127.0.0.1:0")
	out, _ := testBuild(t, "lb")
	other, _ := testBuild(t, "lb")
	// A manifest.json of another build beside this build's layout.
	mismatch := t.TempDir()
	os.CopyFS(filepath.Join(mismatch, "lb"), os.DirFS(filepath.Join(out, "lb")))
	b, _ := os.ReadFile(filepath.Join(other, "lb", imagemeta.ManifestName))
	os.WriteFile(filepath.Join(mismatch, "lb", imagemeta.ManifestName), b, 0o644)
	noManifest := t.TempDir()
	os.CopyFS(filepath.Join(noManifest, "lb"), os.DirFS(filepath.Join(out, "lb")))
	os.Remove(filepath.Join(noManifest, "lb", imagemeta.ManifestName))
	for _, tc := range []struct{ out, want string }{
		{t.TempDir(), "/lb/oci: no OCI image here; build one with imgforge build lb --format oci --output-dir "},
		{mismatch, "/lb/oci holds image sha256:"},
		{noManifest, "reading the build's manifest: "},
	} {
		_, err := Push(context.Background(), PushRequest{Refs: []string{host + "/stack/lb:x"}, OutputDir: tc.out}, &plan.Plan{Role: "lb"})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.out, err, tc.want)
		}
	}
	if ref, _ := name.ParseReference(host + "/stack/lb:x"); ref == nil {
		t.Fatal("bad test reference")
	} else if _, err := remote.Head(ref); err == nil {
		t.Error("something was pushed")
	}
}

// TestPushInsecure: a registry that speaks plain HTTP on an address
// go-containerregistry does not take for local (127.0.0.2) is reached
// with Insecure only.
func TestPushInsecure(t *testing.T) {
	host := testRegistry(t, "127.0.0.2:0")
	out, img := testBuild(t, "lb")
	want, _ := img.Digest()
	req := PushRequest{Refs: []string{host + "/stack/lb:v1"}, OutputDir: out, Remote: []remote.Option{remote.WithRetryBackoff(remote.Backoff{Steps: 1})}}
	if _, err := Push(context.Background(), req, &plan.Plan{Role: "lb"}); err == nil || !strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		t.Fatalf("without Insecure: %v, want a refusal of plain HTTP", err)
	}
	req.Insecure = true
	res, err := Push(context.Background(), req, &plan.Plan{Role: "lb"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Refs[0] != host+"/stack/lb@"+want.String() {
		t.Errorf("pushed %q", res.Refs)
	}
}
