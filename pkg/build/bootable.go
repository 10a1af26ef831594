package build

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/imgforge/imgforge/pkg/units"

	"github.com/klauspost/pgzip"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/debian"
	"github.com/imgforge/imgforge/pkg/layer"
	"github.com/imgforge/imgforge/pkg/rootfs"
)

const (
	initramfsStage = "initramfs-v2"
	rootfsStage    = "rootfs-v1"
)

// bootRecord is what the cache keeps of a base's boot files.
type bootRecord struct {
	KernelVersion string `json:"kernel_version"`
	Kernel        string `json:"kernel"`
	Initrd        string `json:"initrd"`
	Bootloader    string `json:"bootloader"`
	// ISOLINUX, when the image has it: the ISO's BIOS boot.
	Isolinux string `json:"isolinux,omitempty"`
	Ldlinux  string `json:"ldlinux,omitempty"`
	IsoMBR   string `json:"iso_mbr,omitempty"`
}

// rootRecord is what the cache keeps of a role's bootable root.
type rootRecord struct {
	Squashfs string      `json:"squashfs"`
	Hash     string      `json:"hash"`
	Verity   boot.Verity `json:"verity"`
}

// Bootable is a role's root filesystem and boot files, ready for a disk.
type Bootable struct {
	Kernel, Initrd, Bootloader string // blob paths
	Isolinux, Ldlinux, IsoMBR  string // blob paths; empty: no BIOS boot
	KernelVersion              string
	Squashfs, Hash             string // blob paths
	Verity                     boot.Verity
}

const (
	kernelPrefix = "boot/vmlinuz-"
	sdBootPath   = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	// ISOLINUX, from Debian's isolinux and syslinux-common.
	isolinuxPath = "usr/lib/ISOLINUX/isolinux.bin"
	isoMBRPath   = "usr/lib/ISOLINUX/isohdpfx.bin"
	ldlinuxPath  = "usr/lib/syslinux/modules/bios/ldlinux.c32"
)

// Bootable builds (or finds) the boot files and the verified root of im.
func (b *Builder) Bootable(ctx context.Context, im *Image) (*Bootable, error) {
	br, err := b.bootFiles(ctx, im)
	if err != nil {
		return nil, err
	}
	rr, err := b.rootfs(ctx, im)
	if err != nil {
		return nil, err
	}
	c := b.o.Cache
	bt := &Bootable{
		Kernel: c.BlobPath(br.Kernel), Initrd: c.BlobPath(br.Initrd), Bootloader: c.BlobPath(br.Bootloader),
		KernelVersion: br.KernelVersion, Squashfs: c.BlobPath(rr.Squashfs), Hash: c.BlobPath(rr.Hash), Verity: rr.Verity,
	}
	if br.Isolinux != "" {
		bt.Isolinux, bt.Ldlinux, bt.IsoMBR = c.BlobPath(br.Isolinux), c.BlobPath(br.Ldlinux), c.BlobPath(br.IsoMBR)
	}
	return bt, nil
}

// bootFiles makes the initramfs in the base (the kernel and the boot
// machinery are the base's, so every role shares it) and picks out the
// kernel and systemd-boot.
func (b *Builder) bootFiles(ctx context.Context, im *Image) (bootRecord, error) {
	p := im.Plan
	var sums []string
	for _, f := range boot.InitramfsFiles() {
		sums = append(sums, f.Path, digestOf(f.Data))
	}
	key := cache.Key(initramfsStage, im.Keys["base"], sums, b.o.Rootless)
	st := b.o.Progress.Start(p.Role, "initramfs")
	var rec bootRecord
	if b.o.Cache.Get(initramfsStage, key, &rec) && b.verifyAll(initramfsStage, key, nonEmpty(rec.Kernel, rec.Initrd, rec.Bootloader, rec.Isolinux, rec.Ldlinux, rec.IsoMBR)...) {
		st.Done("cached " + short(rec.Initrd))
		return rec, nil
	}
	base := im.Layers[0].Record
	if err := b.verify(base.Tar); err != nil {
		st.Fail()
		_ = b.o.Cache.Delete(baseStage, im.Keys["base"])
		return rec, fmt.Errorf("the cached base is damaged (%w); run the build again to rebuild it", err)
	}
	files, err := extract(b.o.Cache.BlobPath(base.Tar), func(name string) bool {
		return strings.HasPrefix(name, kernelPrefix) || name == sdBootPath || name == isolinuxPath || name == isoMBRPath || name == ldlinuxPath
	})
	if err != nil {
		return rec, err
	}
	var kernels []string
	for name := range files {
		if strings.HasPrefix(name, kernelPrefix) {
			kernels = append(kernels, strings.TrimPrefix(name, kernelPrefix))
		}
	}
	sort.Strings(kernels)
	if len(kernels) == 0 {
		st.Fail()
		return rec, fmt.Errorf("image %s has no kernel (/boot/vmlinuz-*): add linux-image-%s to its packages", p.Image, p.Architecture)
	}
	if files[sdBootPath] == nil {
		st.Fail()
		return rec, fmt.Errorf("image %s has no %s: add systemd-boot-efi to its packages", p.Image, sdBootPath)
	}
	rec.KernelVersion = kernels[len(kernels)-1]
	st.Update("mkinitramfs " + rec.KernelVersion)

	tmp, err := b.o.Cache.TempDir("initramfs-")
	if err != nil {
		return rec, err
	}
	defer removeAllQuiet(tmp)
	up := map[string]string{}
	var cmds [][]string
	for i, f := range boot.InitramfsFiles() {
		local := filepath.Join(tmp, fmt.Sprintf("in-%d", i))
		if err := os.WriteFile(local, f.Data, 0o644); err != nil {
			return rec, err
		}
		up[local] = f.Path
		cmds = append(cmds, []string{"chmod", fmt.Sprintf("%o", f.Mode), f.Path})
	}
	cmds = append(cmds, []string{"mkinitramfs", "-o", "/tmp/imgforge-initrd.img", rec.KernelVersion})
	out := filepath.Join(tmp, "initrd.img")
	ch := &debian.Chroot{
		On: b.o.Cache.BlobPath(base.Tar), Upload: up,
		Commands: cmds,
		Download: map[string]string{"/tmp/imgforge-initrd.img": out},
		Suite:    p.Distribution.Suite, Sources: p.Distribution.Sources, Epoch: p.SourceDateEpoch,
		TempDir: tmp, Rootless: b.o.Rootless, Log: st.LogWriter(b.o.Log), Command: b.o.Mmdebstrap,
	}
	if err := ch.Run(ctx); err != nil {
		st.Fail()
		return rec, fmt.Errorf("making the initramfs: %w", err)
	}
	initrd, err := os.ReadFile(out)
	if err != nil {
		return rec, fmt.Errorf("making the initramfs: %w", err)
	}
	type blob struct {
		dst  *string
		data []byte
	}
	blobs := []blob{{&rec.Initrd, initrd}, {&rec.Kernel, files[kernelPrefix+rec.KernelVersion]}, {&rec.Bootloader, files[sdBootPath]}}
	// ISOLINUX is optional: without it the ISO boots with UEFI only.
	if files[isolinuxPath] != nil && files[isoMBRPath] != nil && files[ldlinuxPath] != nil {
		blobs = append(blobs, blob{&rec.Isolinux, files[isolinuxPath]}, blob{&rec.Ldlinux, files[ldlinuxPath]}, blob{&rec.IsoMBR, files[isoMBRPath]})
	} else {
		b.o.Progress.Note(fmt.Sprintf("image %s has no ISOLINUX (/%s, /%s): its ISO boots with UEFI only; add isolinux and syslinux-common to its packages for BIOS", p.Image, isolinuxPath, ldlinuxPath))
	}
	for _, x := range blobs {
		if *x.dst, err = b.o.Cache.PutBlob(x.data); err != nil {
			return rec, err
		}
	}
	if err := b.o.Cache.Put(initramfsStage, key, rec); err != nil {
		return rec, err
	}
	st.Done(fmt.Sprintf("%s, initrd %s", rec.KernelVersion, units.Bytes(int64(len(initrd)))))
	return rec, nil
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// verifyAll checks blobs of a record, dropping the record when one is bad.
func (b *Builder) verifyAll(stage, key string, digests ...string) bool {
	for _, d := range digests {
		if err := b.verify(d); err != nil {
			b.o.Progress.Note(fmt.Sprintf("cache: %s entry %s is damaged (%v); rebuilding it", stage, short(key), err))
			_ = b.o.Cache.Delete(stage, key)
			return false
		}
	}
	return true
}

// rootfs flattens the image's layers into a squashfs and its hash tree.
func (b *Builder) rootfs(ctx context.Context, im *Image) (rootRecord, error) {
	p := im.Plan
	var layers []string
	for _, l := range im.Layers {
		layers = append(layers, l.Record.Blob)
	}
	key := cache.Key(rootfsStage, layers, p.SourceDateEpoch, rootfs.Options, p.BootExclude, p.BootInclude)
	st := b.o.Progress.Start(p.Role, "rootfs")
	var rec rootRecord
	if b.o.Cache.Get(rootfsStage, key, &rec) && b.verifyAll(rootfsStage, key, rec.Squashfs, rec.Hash) {
		st.Done("cached " + rec.Verity.RootHash[:12])
		return rec, nil
	}
	tmp, err := b.o.Cache.TempDir("rootfs-")
	if err != nil {
		return rec, err
	}
	defer removeAllQuiet(tmp)
	// The lowest layer is the base's uncompressed tar; the others are
	// small: unpack them beside it.
	paths := []string{b.o.Cache.BlobPath(im.Layers[0].Record.Tar)}
	for i, l := range im.Layers[1:] {
		dst := filepath.Join(tmp, fmt.Sprintf("layer-%d.tar", i+1))
		if err := gunzipTo(b.o.Cache.BlobPath(l.Record.Blob), dst); err != nil {
			return rec, err
		}
		paths = append(paths, dst)
	}
	st.Update("squashfs")
	sq := filepath.Join(tmp, "root.squashfs")
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(layer.Flatten(pw, paths, layer.GlobFilter(p.BootExclude, p.BootInclude))) }()
	err = rootfs.Squashfs(ctx, pr, sq, p.SourceDateEpoch)
	pr.CloseWithError(err)
	if err != nil {
		st.Fail()
		return rec, err
	}
	st.Update("dm-verity")
	hash := filepath.Join(tmp, "root.verity")
	v, err := rootfs.Verity(ctx, sq, hash, rootfs.Salt(key))
	if err != nil {
		st.Fail()
		return rec, err
	}
	rec.Verity = v
	for _, x := range []struct {
		dst *string
		src string
	}{{&rec.Squashfs, sq}, {&rec.Hash, hash}} {
		if *x.dst, err = b.moveBlob(x.src); err != nil {
			return rec, err
		}
	}
	if err := b.o.Cache.Put(rootfsStage, key, rec); err != nil {
		return rec, err
	}
	fi, err := os.Stat(b.o.Cache.BlobPath(rec.Squashfs))
	if err != nil {
		return rec, err
	}
	st.Done(fmt.Sprintf("squashfs %s, root hash %s", units.Bytes(fi.Size()), v.RootHash[:12]))
	return rec, nil
}

// moveBlob stores a file as a blob.
func (b *Builder) moveBlob(src string) (string, error) {
	f, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer f.Close()
	w, err := b.o.Cache.NewBlob()
	if err != nil {
		return "", err
	}
	defer w.Abort()
	if _, err := io.Copy(w, f); err != nil {
		return "", err
	}
	d, _, err := w.Commit()
	return d, err
}

func gunzipTo(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := pgzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("reading layer %s: %w", src, err)
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, zr); err != nil {
		out.Close()
		return fmt.Errorf("reading layer %s: %w", src, err)
	}
	return out.Close()
}

// extract reads the regular files want picks from a tar, following hard
// links within it.
func extract(tarPath string, want func(string) bool) (map[string][]byte, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", tarPath, err)
		}
		name := layer.Clean(h.Name)
		if !want(name) {
			continue
		}
		switch h.Typeflag {
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				return nil, err
			}
			out[name] = data
		case tar.TypeLink:
			out[name] = out[layer.Clean(h.Linkname)]
		}
	}
}
