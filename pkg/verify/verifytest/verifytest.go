// Package verifytest makes small bootable images and their manifests for
// the tests of package verify and of its callers: a real squashfs root
// (tar2sqfs) and hash tree (veritysetup), fake kernel, initrd and
// bootloader bytes, and a manifest.json written with package imagemeta's
// Manifest, the type the builder writes and verify reads.
package verifytest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/internal/testtool"
	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/disk"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/rootfs"
)

// Epoch is the SOURCE_DATE_EPOCH of the images.
const Epoch = 1700000000

// BaseCmdline is the images' own kernel command line.
const BaseCmdline = "console=ttyS0"

// VolumeID is the ISO's volume ID.
const VolumeID = "IMGFORGE_TEST"

// Image is a test image and its manifest.
type Image struct {
	Path     string // the image: DIR/test.raw or DIR/test.iso
	Manifest string // DIR/manifest.json
	// RootOffset is where the squashfs starts in the image, in bytes.
	RootOffset int64
	// ESPOffset is where the ESP starts in the image, in bytes.
	ESPOffset int64
	// RootBOffset and StateOffset are where slot B's root partition and
	// the state partition start in a raw image, in bytes.
	RootBOffset, StateOffset int64
}

// SlotSize is a raw image's slot size.
const SlotSize = 2 << 20

// ImageDigest is the manifests' image digest: the raw image's slot A
// is labelled test_0123456789ab.
const ImageDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// NeedTools skips the test when a tool the images or their checks need
// is missing.
func NeedTools(t testing.TB, iso bool) {
	t.Helper()
	tools := []string{"tar2sqfs", "sqfs2tar", "veritysetup", "fsck.vfat", "mke2fs", "e2fsck"}
	if iso {
		tools = append(tools, "xorriso")
	}
	for _, name := range tools {
		if _, err := exec.LookPath(name); err != nil {
			t.Skipf("%s is not installed", name)
		}
	}
}

// root makes the squashfs and its hash tree in dir.
func root(t testing.TB, dir string) (sq, hash string, v boot.Verity) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(Epoch, 0)
	for _, d := range []string{"etc/", "usr/", "usr/bin/", "var/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime}); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"etc/hostname", []byte("imgforge\n")},
		{"etc/os-release", []byte("ID=debian\n")},
		{"usr/bin/imgforge", bytes.Repeat([]byte("imgforge test binary "), 20000)},
		{"usr/bin/random-ish", pseudoRandom(300 << 10)},
	} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o755, Size: int64(len(f.data)), ModTime: mtime}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sq, hash = filepath.Join(dir, "root.squashfs"), filepath.Join(dir, "root.verity")
	if err := rootfs.Squashfs(ctx, &buf, sq, Epoch); err != nil {
		t.Fatal(err)
	}
	v, err := rootfs.Verity(ctx, sq, hash, rootfs.Salt("verifytest"))
	if err != nil {
		t.Fatal(err)
	}
	return sq, hash, v
}

func pseudoRandom(n int) []byte {
	out := make([]byte, 0, n+32)
	sum := sha256.Sum256([]byte("verifytest"))
	for len(out) < n {
		out = append(out, sum[:]...)
		sum = sha256.Sum256(sum[:])
	}
	return out[:n]
}

func espFiles(t testing.TB, cmdline string, uki bool) []boot.File {
	s := boot.Slot{Name: "a", Gen: 1, Title: "imgforge test", Cmdline: cmdline, Kernel: []byte("fake kernel"), Initrd: []byte("fake initrd")}
	if uki {
		var err error
		if s.UKI, err = boot.UKI(testtool.TinyEFI(0x1000, 0x200), s.Kernel, [][]byte{s.Initrd}, cmdline, []byte("ID=debian\n")); err != nil {
			t.Fatal(err)
		}
	}
	return boot.ESP([]byte("fake systemd-boot"), s)
}

// Raw writes a raw disk, test.raw, and its manifest.json into dir.
func Raw(t testing.TB, dir string) Image { return raw(t, dir, false) }

// RawUKI is Raw with the ESP of a Secure Boot build: slot A's entry
// starts a unified kernel image that holds the command line (unsigned:
// verify reads it, the firmware checks the signature).
func RawUKI(t testing.TB, dir string) Image { return raw(t, dir, true) }

func raw(t testing.TB, dir string, uki bool) Image {
	t.Helper()
	NeedTools(t, false)
	sq, hash, v := root(t, dir)
	l := disk.Layout{
		Size: 128 << 20, ESPSize: 40 << 20, SlotSize: SlotSize, Root: sq, Verity: hash,
		RootHash: v.RootHash, Label: imagemeta.SlotLabel("test", imagemeta.Version(ImageDigest)), Seed: "verifytest", Epoch: Epoch,
	}
	ids, err := l.IDs()
	if err != nil {
		t.Fatal(err)
	}
	pl, err := l.Place()
	if err != nil {
		t.Fatal(err)
	}
	l.State = filepath.Join(dir, "state.ext4")
	if err := disk.MakeState(context.Background(), l.State, pl.StateSize(), ids.StateFS, Epoch); err != nil {
		t.Fatal(err)
	}
	cmdline := boot.Cmdline(BaseCmdline, v, boot.Devices{
		Root: "PARTUUID=" + strings.ToLower(ids.Root), Verity: "PARTUUID=" + strings.ToLower(ids.Verity), State: "PARTUUID=" + strings.ToLower(ids.State),
		Slot: "a",
	})
	l.ESPFiles = espFiles(t, cmdline, uki)
	im := Image{Path: filepath.Join(dir, "test.raw"), Manifest: filepath.Join(dir, "manifest.json")}
	if _, err := disk.WriteRaw(context.Background(), im.Path, l); err != nil {
		t.Fatal(err)
	}
	im.ESPOffset, im.RootOffset = int64(pl.ESP[0])*512, int64(pl.Root[0])*512
	im.RootBOffset, im.StateOffset = int64(pl.RootB[0])*512, int64(pl.State[0])*512
	// Until WriteRaw does it itself, its ESP gets what go-diskfs misses.
	f, err := os.OpenFile(im.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := disk.FixFAT(f, im.ESPOffset, Epoch); err != nil {
		t.Fatal(err)
	}
	f.Close()
	writeManifest(t, im, "raw", &imagemeta.Disk{KernelVersion: "6.1.0-test-amd64", Verity: v, Cmdline: cmdline, Partitions: ids, Layout: l.Info(), ESPFiles: boot.Digests(l.ESPFiles)})
	return im
}

// ISO writes a hybrid ISO, test.iso, and its manifest.json into dir.
// The manifest's disk section is as a build of the ISO alone writes it:
// the verity parameters and iso_cmdline.
func ISO(t testing.TB, dir string) Image {
	t.Helper()
	NeedTools(t, true)
	sq, hash, v := root(t, dir)
	img := filepath.Join(dir, "root.img")
	concat(t, img, sq, hash)
	im := Image{Path: filepath.Join(dir, "test.iso"), Manifest: filepath.Join(dir, "manifest.json")}
	cmdline := disk.ISOCmdline(BaseCmdline, v, VolumeID, nil)
	l := disk.ISOLayout{VolumeID: VolumeID, ESPFiles: espFiles(t, cmdline, false), RootImage: img, Epoch: Epoch,
		BIOS: &disk.BIOSBoot{Isolinux: pseudoRandom(4096), Ldlinux: pseudoRandom(1000), MBR: make([]byte, 512),
			Kernel: []byte("fake kernel"), Initrd: []byte("fake initrd"), Overlay: []byte("fake overlay cpio"), Cmdline: cmdline}}
	if err := disk.WriteISO(context.Background(), im.Path, l); err != nil {
		t.Fatal(err)
	}
	iso, err := os.ReadFile(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	head, _ := os.ReadFile(sq)
	im.RootOffset = int64(bytes.Index(iso, head[:4096]))
	writeManifest(t, im, "iso", &imagemeta.Disk{KernelVersion: "6.1.0-test-amd64", Verity: v, ISOCmdline: cmdline, ISOESPFiles: boot.Digests(l.ESPFiles)})
	return im
}

func concat(t testing.TB, dst string, srcs ...string) {
	t.Helper()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	for _, s := range srcs {
		in, err := os.Open(s)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(out, in)
		in.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

func writeManifest(t testing.TB, im Image, format string, d *imagemeta.Disk) {
	t.Helper()
	m := &imagemeta.Manifest{Role: "test", ImageDigest: ImageDigest, Outputs: []imagemeta.Output{{Path: filepath.Base(im.Path), Format: format}}, Disk: d}
	im.write(t, m)
	im.UpdateDigest(t)
}

func (im Image) write(t testing.TB, m *imagemeta.Manifest) {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(im.Manifest, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// EditManifest changes the manifest with edit.
func (im Image) EditManifest(t testing.TB, edit func(*imagemeta.Manifest)) {
	t.Helper()
	m, err := imagemeta.ReadManifest(im.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	edit(m)
	im.write(t, m)
}

// UpdateDigest records the image's current size and sha256 in the
// manifest, as after a change to the image that only a later check
// should find.
func (im Image) UpdateDigest(t testing.TB) {
	t.Helper()
	f, err := os.Open(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	im.EditManifest(t, func(m *imagemeta.Manifest) {
		for i := range m.Outputs {
			if m.Outputs[i].Path == filepath.Base(im.Path) {
				m.Outputs[i].Size, m.Outputs[i].Digest = n, "sha256:"+hex.EncodeToString(h.Sum(nil))
			}
		}
	})
}

// Flip inverts the byte at off of the image.
func (im Image) Flip(t testing.TB, off int64) {
	t.Helper()
	f, err := os.OpenFile(im.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// Copy copies the image and its manifest into dir, keeping holes.
func (im Image) Copy(t testing.TB, dir string) Image {
	t.Helper()
	out := im
	out.Path, out.Manifest = filepath.Join(dir, filepath.Base(im.Path)), filepath.Join(dir, "manifest.json")
	for src, dst := range map[string]string{im.Path: out.Path, im.Manifest: out.Manifest} {
		if b, err := exec.Command("cp", "--sparse=always", src, dst).CombinedOutput(); err != nil {
			t.Fatalf("copying %s: %v: %s", src, err, b)
		}
	}
	return out
}
