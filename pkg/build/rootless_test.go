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

// aptPartialOwners gives a fake root filesystem apt's partial folders as
// mmdebstrap leaves them. Without root (unshare mode) apt's sandbox user,
// _apt (42), can always reach the chroot, and gets both. With root and a
// private cache, mmdebstrap's own apt runs as root and leaves them root's,
// but for archives/partial after the role stage's apt-get install, which
// runs in the chroot.
func aptPartialOwners(bs *debian.Bootstrap) []tarEntry {
	archives, lists := 0, 0
	if bs.Rootless {
		archives, lists = 42, 42
	}
	if bs.On != "" {
		archives = 42
	}
	return []tarEntry{
		{name: "var/cache/apt/archives/partial/", typ: tar.TypeDir, uid: archives},
		{name: "var/lib/apt/lists/partial/", typ: tar.TypeDir, uid: lists},
	}
}

// TestRootlessSameImage: a build without root (mmdebstrap's unshare mode)
// writes the image and the manifest of a build with root, each with its
// own cache. Before, the mode was part of the base's and the initramfs'
// keys, which the manifest lists, and apt's partial folders belonged to
// _apt without root and to root with it.
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
		b, err := New(ctx, Options{Cache: c, OutputDir: out, Tools: &fakeTools{calls: map[string]int{}, extra: aptPartialOwners}, Rootless: rootless, Progress: NewProgress(func(Event) {}, time.Now)})
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
