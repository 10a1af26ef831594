package build

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/debian"
)

// unshareTools is fakeTools whose base has apt's partial folders as
// mmdebstrap leaves them: _apt's (uid 42) in unshare mode, where apt's
// sandbox user can always reach the chroot, and root's in root mode with
// a private cache, where mmdebstrap lets apt download as root.
type unshareTools struct{ *fakeTools }

func (u unshareTools) Bootstrap(ctx context.Context, bs *debian.Bootstrap) error {
	if bs.On != "" {
		return u.fakeTools.Bootstrap(ctx, bs)
	}
	u.called("base")
	owner := 0
	if bs.Rootless {
		owner = 42
	}
	entries := append(baseEntries(bs.Packages),
		tarEntry{name: "var/cache/apt/archives/partial/", typ: tar.TypeDir, uid: owner},
		tarEntry{name: "var/lib/apt/lists/partial/", typ: tar.TypeDir, uid: owner})
	return writeTar(bs.Output, entries)
}

// TestRootlessSameImage: a build without root (mmdebstrap's unshare mode)
// writes the image and the manifest of a build with root, each with its
// own cache. Before, the mode was part of the base's and the initramfs'
// keys, which the manifest lists, and apt's partial folders in the base
// belonged to _apt without root and to root with it.
func TestRootlessSameImage(t *testing.T) {
	ctx := context.Background()
	var digests, manifests []string
	for _, rootless := range []bool{false, true} {
		c, err := cache.Open(ctx, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		out := t.TempDir()
		b, err := New(ctx, Options{Cache: c, OutputDir: out, Tools: unshareTools{newFakeTools()}, Rootless: rootless, Progress: NewProgress(func(Event) {}, time.Now)})
		if err != nil {
			t.Fatal(err)
		}
		p := fakePlan("worker_processes 1;\n")
		b.releases[p.Distribution.Sources[0]] = "sha256:5555"
		im, err := b.Layers(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Bootable(ctx, im); err != nil {
			t.Fatal(err)
		}
		res, err := b.writeOutputs(ctx, im)
		if err != nil {
			t.Fatal(err)
		}
		m, err := os.ReadFile(filepath.Join(out, p.Role, "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		digests, manifests = append(digests, res.ImageDigest), append(manifests, string(m))
	}
	if digests[0] != digests[1] {
		t.Errorf("image %s with root, %s without", digests[0], digests[1])
	}
	if manifests[0] != manifests[1] {
		t.Errorf("the manifests differ with and without root:\n%s", lineDiffs(manifests[0], manifests[1]))
	}
}

// lineDiffs lists the lines where a and b differ.
func lineDiffs(a, b string) string {
	la, lb := bytes.Split([]byte(a), []byte("\n")), bytes.Split([]byte(b), []byte("\n"))
	var out bytes.Buffer
	for i := range max(len(la), len(lb)) {
		var x, y []byte
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if !bytes.Equal(x, y) {
			out.WriteString("- " + string(x) + "\n+ " + string(y) + "\n")
		}
	}
	return out.String()
}
