//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/qemu"
)

// onImage copies the embedded roles into dir/roles (making dir) and puts role on the
// image definition image (`image: NAME` in its YAML, as a user would);
// it returns the roles folder.
func onImage(t testing.TB, dir, role, image string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	roles := filepath.Join(dir, "roles")
	copyTree(t, filepath.Join(repo, "roles"), roles)
	p := filepath.Join(roles, role+".yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "\nimage:") {
		t.Fatalf("%s already names an image", p)
	}
	if err := os.WriteFile(p, append(data, []byte("image: "+image+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	return roles
}

// TestBootCloudImage builds lb on the cloud image (images/cloud.yaml,
// Debian's cloud kernel) and boots its raw disk under QEMU: the cloud
// kernel has no AHCI driver, so the NoCloud seed is a virtio disk here.
// haproxy must answer, as on the default image.
func TestBootCloudImage(t *testing.T) {
	needBootToServices(t)
	t.Parallel()
	f := cold(t, 0) // its cache holds the .deb files already
	dir := t.TempDir()
	roles := onImage(t, dir, "lb", "cloud")
	out := filepath.Join(dir, "out")
	withSlot(t, func() { mustBuild(t, f.cache, out, "--roles", roles, "--format", "raw", "lb") })
	m, err := imagemeta.ReadManifest(filepath.Join(out, "lb", imagemeta.ManifestName))
	if err != nil {
		t.Fatal(err)
	}
	if m.Image != "cloud" || !strings.HasSuffix(m.Disk.KernelVersion, "-cloud-amd64") {
		t.Fatalf("built on image %q with kernel %q, want cloud and a -cloud-amd64 kernel", m.Image, m.Disk.KernelVersion)
	}
	raw := filepath.Join(out, "lb", "lb.raw")
	t.Logf("lb on the cloud image: raw disk allocated %.1f MB, root squashfs %.1f MiB (default image: %.1f MB)",
		float64(duBytes(t, raw))/1e6, float64(m.Disk.Verity.DataBlocks*4096)/(1<<20), float64(duBytes(t, filepath.Join(f.out, "lb", "lb.raw")))/1e6)

	ctx, cancel := bootContext()
	defer cancel()
	start := time.Now()
	vm, ports := boot(t, ctx, bootOpts{name: "lb-cloud", guest: []int{8404}, seedVirtio: true,
		disks: []qemu.Disk{{Path: raw, Snapshot: true}}})
	waitMultiUser(t, ctx, vm, start, "lb on the cloud image")
	if err := eventually(ctx, httpCheck(ports[0], "/health", "")); err != nil {
		t.Fatal(err)
	}
	t.Logf("lb on the cloud image: haproxy answered after %.0fs", time.Since(start).Seconds())
}
