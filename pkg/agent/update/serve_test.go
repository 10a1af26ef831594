package update

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/serve"
)

// TestUpdateFromServe: imgforge serve, serving a build's output folder
// (the PXE set in pxe/, manifest.json and overlay.cpio beside it), is a
// source of the update.
func TestUpdateFromServe(t *testing.T) {
	v1, v2 := makeImage(t, "lb", 1), makeImage(t, "lb", 2)
	root := t.TempDir()
	pxe := filepath.Join(root, "lb", "pxe")
	if err := os.MkdirAll(pxe, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, dst := range map[string]string{
		KernelFile: pxe, InitrdFile: pxe, RootFile: pxe,
		ManifestFile: filepath.Join(root, "lb"), OverlayFile: filepath.Join(root, "lb"),
	} {
		if err := os.Rename(filepath.Join(v2.dir, f), filepath.Join(dst, f)); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(pxe, "boot.ipxe"), []byte("#!ipxe\n"), 0o644)
	// A set built with --format pxe alone: its manifest has the netboot's
	// command line, not the disk's.
	mf := filepath.Join(root, "lb", ManifestFile)
	m, err := imagemeta.ReadManifest(mf)
	if err != nil {
		t.Fatal(err)
	}
	var pxeWords []string
	for _, w := range strings.Fields(m.Disk.Cmdline) {
		switch {
		case strings.HasPrefix(w, "imgforge.root="):
			w = "imgforge.root=${imgforge-base}root.img"
		case strings.HasPrefix(w, "imgforge.verity="), strings.HasPrefix(w, "imgforge.state="), strings.HasPrefix(w, "imgforge.slot="):
			continue
		}
		pxeWords = append(pxeWords, w)
	}
	m.Disk.PXECmdline = strings.Join(append(pxeWords, "imgforge.size=4096"), " ")
	m.Disk.Cmdline = ""
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(mf, b, 0o644)
	s, err := serve.Listen(serve.Config{Root: root, HTTPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	disk, esp := makeDisk(t, v1)
	// The kernel set is compared with the originals in checkSlot.
	v2.dir = t.TempDir()
	for f, src := range map[string]string{KernelFile: pxe, InitrdFile: pxe, OverlayFile: filepath.Join(root, "lb")} {
		b, _ := os.ReadFile(filepath.Join(src, f))
		os.WriteFile(filepath.Join(v2.dir, f), b, 0o644)
	}
	res, err := update(t, "http://"+s.HTTPAddr().String()+"/sets/lb", disk, esp, "a")
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, disk, esp, "b", v2, res.Entry)
}
