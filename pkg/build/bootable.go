package build

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/ctxio"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/units"

	"github.com/klauspost/pgzip"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/debian"
	"github.com/imgforge/imgforge/pkg/layer"
	"github.com/imgforge/imgforge/pkg/rootfs"
)

const (
	// initramfs-v3: the initrd is padded to a multiple of 4 bytes (see
	// boot.PadInitrd).
	// initramfs-v4: the record keeps systemd's EFI stub, for unified
	// kernel images (Secure Boot).
	initramfsStage = "initramfs-v4"
	// rootfs-v2: the root holds the base and role layers only; the
	// overlay layer is its own image (overlayImageStage).
	rootfsStage       = "rootfs-v2"
	overlayImageStage = "overlayimg-v1"
)

// bootRecord is what the cache keeps of a base's boot files.
type bootRecord struct {
	KernelVersion string `json:"kernel_version"`
	Kernel        string `json:"kernel"`
	Initrd        string `json:"initrd"`
	Bootloader    string `json:"bootloader"`
	// Stub is systemd's EFI stub (linuxx64.efi.stub), the start of a
	// unified kernel image; empty when the image has none.
	Stub string `json:"stub,omitempty"`
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

// overlayImageRecord is what the cache keeps of a role's overlay image:
// the cpio (the boot entry's second initrd) that holds it, and its verity
// (its hash tree follows its data, so HashStart is its data blocks).
type overlayImageRecord struct {
	Cpio   string      `json:"cpio"`
	Verity boot.Verity `json:"verity"`
}

// Bootable is a role's root filesystem and boot files, ready for a disk.
// The root holds the base and the role; imgforge's own files (the overlay
// layer: templates, units, the agent) are a small image of their own that
// the initramfs stacks over it, so that editing them leaves the big root
// byte for byte the same.
type Bootable struct {
	Kernel, Initrd, Bootloader string // blob paths
	Stub                       string // blob path; empty: no EFI stub
	Isolinux, Ldlinux, IsoMBR  string // blob paths; empty: no BIOS boot
	KernelVersion              string
	Squashfs, Hash             string // blob paths
	Verity                     boot.Verity
	Overlay                    string // blob path of the overlay image's cpio
	OverlayVerity              boot.Verity
}

const (
	kernelPrefix = "boot/vmlinuz-"
	sdBootPath   = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	stubPath     = "usr/lib/systemd/boot/efi/linuxx64.efi.stub"
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
	or, err := b.overlayImage(ctx, im)
	if err != nil {
		return nil, err
	}
	c := b.o.Cache
	bt := &Bootable{
		Kernel: c.BlobPath(br.Kernel), Initrd: c.BlobPath(br.Initrd), Bootloader: c.BlobPath(br.Bootloader),
		KernelVersion: br.KernelVersion, Squashfs: c.BlobPath(rr.Squashfs), Hash: c.BlobPath(rr.Hash), Verity: rr.Verity,
		Overlay: c.BlobPath(or.Cpio), OverlayVerity: or.Verity,
	}
	if br.Stub != "" {
		bt.Stub = c.BlobPath(br.Stub)
	}
	if br.Isolinux != "" {
		bt.Isolinux, bt.Ldlinux, bt.IsoMBR = c.BlobPath(br.Isolinux), c.BlobPath(br.Ldlinux), c.BlobPath(br.IsoMBR)
	}
	return bt, nil
}

// initramfsKey is what the boot files are made of: the base (which holds
// the kernel and the boot machinery, so every role shares them) and
// imgforge's initramfs hooks.
type initramfsKey struct {
	Base  string   // the base's key
	Files []string // path, then digest, of each of boot.InitramfsFiles
	// Unshare is always false, as baseKey.Unshare.
	Unshare bool
	// BaseRecord is the base Base names.
	BaseRecord layerRecord `key:"-"`
	// Plan names the image in errors; the suite, sources and epoch it
	// gives the chroot are in Base.
	Plan *plan.Plan `key:"-"`
}

func (b *Builder) initramfsStage() stage[initramfsKey, bootRecord] {
	return stage[initramfsKey, bootRecord]{
		name: "initramfs", version: initramfsStage, run: b.runInitramfs,
		blobs: func(r bootRecord) []string {
			return nonEmpty(r.Kernel, r.Initrd, r.Bootloader, r.Stub, r.Isolinux, r.Ldlinux, r.IsoMBR)
		},
		cached: func(r bootRecord) string { return short(r.Initrd) },
	}
}

// bootFiles makes the initramfs in the base (the kernel and the boot
// machinery are the base's, so every role shares it) and picks out the
// kernel and systemd-boot.
func (b *Builder) bootFiles(ctx context.Context, im *Image) (bootRecord, error) {
	rec, _, err := runStage(ctx, b, im.Plan.Role, b.initramfsStage(), b.initramfsKey(im))
	return rec, err
}

func (b *Builder) initramfsKey(im *Image) initramfsKey {
	var sums []string
	for _, f := range boot.InitramfsFiles() {
		sums = append(sums, f.Path, digestOf(f.Data))
	}
	return initramfsKey{Base: im.baseKey, Files: sums, BaseRecord: im.base, Plan: im.Plan}
}

func (b *Builder) runInitramfs(ctx context.Context, st *Stage, k initramfsKey, _ string) (bootRecord, string, error) {
	p, base := k.Plan, k.BaseRecord
	var rec bootRecord
	if err := b.verify(ctx, base.Tar); err != nil {
		if !errors.Is(err, cache.ErrCorrupt) {
			return rec, "", err
		}
		_ = b.o.Cache.Delete(baseStage, k.Base)
		return rec, "", fmt.Errorf("the cached base is damaged (%w); run the build again to rebuild it", err)
	}
	files, err := extract(ctx, b.o.Cache.BlobPath(base.Tar), func(name string) bool {
		return strings.HasPrefix(name, kernelPrefix) || name == sdBootPath || name == stubPath || name == isolinuxPath || name == isoMBRPath || name == ldlinuxPath
	})
	if err != nil {
		return rec, "", err
	}
	var kernels []string
	for name := range files {
		if strings.HasPrefix(name, kernelPrefix) {
			kernels = append(kernels, strings.TrimPrefix(name, kernelPrefix))
		}
	}
	sort.Strings(kernels)
	if len(kernels) == 0 {
		return rec, "", fmt.Errorf("image %s has no kernel (/boot/vmlinuz-*): add linux-image-%s to its packages", p.Image, p.Architecture)
	}
	if files[sdBootPath] == nil {
		return rec, "", fmt.Errorf("image %s has no %s: add systemd-boot-efi to its packages", p.Image, sdBootPath)
	}
	rec.KernelVersion = kernels[len(kernels)-1]
	st.Update("mkinitramfs " + rec.KernelVersion)

	tmp, err := b.o.Cache.TempDir("initramfs-")
	if err != nil {
		return rec, "", err
	}
	defer removeAllQuiet(tmp)
	up := map[string]string{}
	var cmds [][]string
	for i, f := range boot.InitramfsFiles() {
		local := filepath.Join(tmp, fmt.Sprintf("in-%d", i))
		if err := os.WriteFile(local, f.Data, 0o644); err != nil {
			return rec, "", err
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
		TempDir: tmp, Rootless: b.o.Rootless, Log: st.LogWriter(b.o.Log),
	}
	if err := b.o.Tools.Chroot(ctx, ch); err != nil {
		return rec, "", fmt.Errorf("making the initramfs: %w", err)
	}
	initrd, err := os.ReadFile(out)
	if err != nil {
		return rec, "", fmt.Errorf("making the initramfs: %w", err)
	}
	type blob struct {
		dst  *string
		data []byte
	}
	blobs := []blob{{&rec.Initrd, boot.PadInitrd(initrd)}, {&rec.Kernel, files[kernelPrefix+rec.KernelVersion]}, {&rec.Bootloader, files[sdBootPath]}}
	if files[stubPath] != nil {
		blobs = append(blobs, blob{&rec.Stub, files[stubPath]})
	}
	// ISOLINUX is optional: without it the ISO boots with UEFI only.
	if files[isolinuxPath] != nil && files[isoMBRPath] != nil && files[ldlinuxPath] != nil {
		blobs = append(blobs, blob{&rec.Isolinux, files[isolinuxPath]}, blob{&rec.Ldlinux, files[ldlinuxPath]}, blob{&rec.IsoMBR, files[isoMBRPath]})
	} else {
		b.o.Progress.Note(fmt.Sprintf("image %s has no ISOLINUX (/%s, /%s): its ISO boots with UEFI only; add isolinux and syslinux-common to its packages for BIOS", p.Image, isolinuxPath, ldlinuxPath))
	}
	for _, x := range blobs {
		if *x.dst, err = b.o.Cache.PutBlob(x.data); err != nil {
			return rec, "", err
		}
	}
	return rec, fmt.Sprintf("%s, initrd %s", rec.KernelVersion, units.Bytes(int64(len(initrd)))), nil
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

// rootfsKey is what the verified root is made of: the image's layers,
// flattened, without what boot_exclude names.
type rootfsKey struct {
	Layers      []string // the layers' blobs, lowest (the base) first
	Epoch       int64
	Options     []string // tar2sqfs's settings
	BootExclude []string
	BootInclude []string
	// BaseTar is the uncompressed tar of the lowest layer, which its
	// blob determines: the root is built from it and the upper layers.
	BaseTar string `key:"-"`
}

func (b *Builder) rootfsStage() stage[rootfsKey, rootRecord] {
	return stage[rootfsKey, rootRecord]{
		name: "rootfs", version: rootfsStage, run: b.runRootfs,
		blobs:  func(r rootRecord) []string { return []string{r.Squashfs, r.Hash} },
		cached: func(r rootRecord) string { return r.Verity.RootHash[:12] },
	}
}

// rootfs flattens the image's layers, but the overlay, into a squashfs
// and its hash tree.
func (b *Builder) rootfs(ctx context.Context, im *Image) (rootRecord, error) {
	p := im.Plan
	var layers []string
	for _, l := range im.Layers {
		if l.Kind != "overlay" {
			layers = append(layers, l.Record.Blob)
		}
	}
	k := rootfsKey{Layers: layers, Epoch: p.SourceDateEpoch, Options: rootfs.Options, BootExclude: p.BootExclude, BootInclude: p.BootInclude, BaseTar: im.base.Tar}
	rec, _, err := runStage(ctx, b, p.Role, b.rootfsStage(), k)
	return rec, err
}

func (b *Builder) runRootfs(ctx context.Context, st *Stage, k rootfsKey, key string) (rootRecord, string, error) {
	var rec rootRecord
	tmp, err := b.o.Cache.TempDir("rootfs-")
	if err != nil {
		return rec, "", err
	}
	defer removeAllQuiet(tmp)
	// The lowest layer is the base's uncompressed tar; the others are
	// small: unpack them beside it.
	paths := []string{b.o.Cache.BlobPath(k.BaseTar)}
	for i, blob := range k.Layers[1:] {
		dst := filepath.Join(tmp, fmt.Sprintf("layer-%d.tar", i+1))
		if err := gunzipTo(ctx, b.o.Cache.BlobPath(blob), dst); err != nil {
			return rec, "", err
		}
		paths = append(paths, dst)
	}
	sq, hash, v, err := b.verifiedSquashfs(ctx, st, tmp, "root", paths, layer.GlobFilter(k.BootExclude, k.BootInclude), k.Epoch, rootfs.Salt(key))
	if err != nil {
		return rec, "", err
	}
	rec.Verity = v
	for _, x := range []struct {
		dst *string
		src string
	}{{&rec.Squashfs, sq}, {&rec.Hash, hash}} {
		if *x.dst, err = b.moveBlob(ctx, x.src); err != nil {
			return rec, "", err
		}
	}
	fi, err := os.Stat(b.o.Cache.BlobPath(rec.Squashfs))
	if err != nil {
		return rec, "", err
	}
	return rec, fmt.Sprintf("squashfs %s, root hash %s", units.Bytes(fi.Size()), v.RootHash[:12]), nil
}

// verifiedSquashfs flattens the layer tars at paths (lowest first) through
// filter into tmp/NAME.squashfs, and makes its dm-verity hash tree,
// tmp/NAME.verity.
func (b *Builder) verifiedSquashfs(ctx context.Context, st *Stage, tmp, name string, paths []string, filter layer.Filter, epoch int64, salt string) (sq, hash string, v boot.Verity, err error) {
	st.Update("squashfs")
	sq = filepath.Join(tmp, name+".squashfs")
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(layer.Flatten(ctx, pw, paths, filter))
	}()
	err = b.o.Tools.Squashfs(ctx, pr, sq, epoch)
	pr.CloseWithError(err)
	if err != nil {
		return "", "", v, err
	}
	st.Update("dm-verity")
	hash = filepath.Join(tmp, name+".verity")
	v, err = b.o.Tools.Verity(ctx, sq, hash, salt)
	return sq, hash, v, err
}

// overlayImageKey is what the overlay image is made of: the overlay
// layer, without what boot_exclude names.
type overlayImageKey struct {
	Layer       string // the overlay layer's blob
	Epoch       int64
	Options     []string // tar2sqfs's settings
	BootExclude []string
	BootInclude []string
}

func (b *Builder) overlayImageStage() stage[overlayImageKey, overlayImageRecord] {
	return stage[overlayImageKey, overlayImageRecord]{
		name: "overlay image", version: overlayImageStage, run: b.runOverlayImage,
		blobs:  func(r overlayImageRecord) []string { return []string{r.Cpio} },
		cached: func(r overlayImageRecord) string { return r.Verity.RootHash[:12] },
	}
}

// overlayImage makes the overlay image of im: the squashfs of its overlay
// layer with its hash tree, in a cpio for the initramfs.
func (b *Builder) overlayImage(ctx context.Context, im *Image) (overlayImageRecord, error) {
	p := im.Plan
	var blob string
	for _, l := range im.Layers {
		if l.Kind == "overlay" {
			blob = l.Record.Blob
		}
	}
	if blob == "" {
		return overlayImageRecord{}, fmt.Errorf("role %s: the image has no overlay layer", p.Role)
	}
	k := overlayImageKey{Layer: blob, Epoch: p.SourceDateEpoch, Options: rootfs.Options, BootExclude: p.BootExclude, BootInclude: p.BootInclude}
	rec, _, err := runStage(ctx, b, p.Role, b.overlayImageStage(), k)
	return rec, err
}

func (b *Builder) runOverlayImage(ctx context.Context, st *Stage, k overlayImageKey, key string) (overlayImageRecord, string, error) {
	var rec overlayImageRecord
	tmp, err := b.o.Cache.TempDir("overlayimg-")
	if err != nil {
		return rec, "", err
	}
	defer removeAllQuiet(tmp)
	tarPath := filepath.Join(tmp, "overlay.tar")
	if err := gunzipTo(ctx, b.o.Cache.BlobPath(k.Layer), tarPath); err != nil {
		return rec, "", err
	}
	sq, hash, v, err := b.verifiedSquashfs(ctx, st, tmp, "overlay", []string{tarPath}, layer.GlobFilter(k.BootExclude, k.BootInclude), k.Epoch, rootfs.Salt(key))
	if err != nil {
		return rec, "", err
	}
	v.HashStart = v.DataBlocks
	data, err := os.ReadFile(sq)
	if err != nil {
		return rec, "", err
	}
	tree, err := os.ReadFile(hash)
	if err != nil {
		return rec, "", err
	}
	data = append(data, tree...)
	cpio := boot.Cpio([]boot.File{{Path: boot.OverlayPath, Mode: 0o444, Data: data}}, k.Epoch)
	if rec.Cpio, err = b.o.Cache.PutBlob(cpio); err != nil {
		return rec, "", err
	}
	rec.Verity = v
	return rec, fmt.Sprintf("overlay image %s, root hash %s", units.Bytes(int64(len(data))), v.RootHash[:12]), nil
}

// moveBlob stores a file as a blob.
func (b *Builder) moveBlob(ctx context.Context, src string) (string, error) {
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
	if _, err := ctxio.Copy(ctx, w, f); err != nil {
		return "", err
	}
	d, _, err := w.Commit()
	return d, err
}

func gunzipTo(ctx context.Context, src, dst string) error {
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
	if _, err := ctxio.Copy(ctx, out, zr); err != nil {
		out.Close()
		return fmt.Errorf("reading layer %s: %w", src, err)
	}
	return out.Close()
}

// extract reads the regular files want picks from a tar, following hard
// links within it.
func extract(ctx context.Context, tarPath string, want func(string) bool) (map[string][]byte, error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]byte{}
	tr := tar.NewReader(ctxio.Reader(ctx, f))
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
