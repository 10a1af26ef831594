package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/ctxio"
	"github.com/imgforge/imgforge/pkg/disk"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

func (b *Builder) writeRaw(ctx context.Context, path string, im *Image, bt *Bootable, imageDigest string) (*imagemeta.Disk, error) {
	p := im.Plan
	files, err := bt.bootFileData()
	if err != nil {
		return nil, err
	}
	l := disk.Layout{
		Size: int64(p.Disk.Size), ESPSize: int64(p.Disk.ESPSize), Root: bt.Squashfs, Verity: bt.Hash,
		RootHash: bt.Verity.RootHash, Seed: imageDigest, Epoch: p.SourceDateEpoch,
	}
	ids, err := l.IDs()
	if err != nil {
		return nil, err
	}
	cmdline := boot.Cmdline(p.Kernel.Cmdline, bt.Verity, boot.Devices{
		Root: "PARTUUID=" + lower(ids.Root), Verity: "PARTUUID=" + lower(ids.Verity), State: "PARTUUID=" + lower(ids.State),
	})
	l.ESPFiles = boot.ESP("imgforge "+p.Role, cmdline, files["loader"], files["kernel"], files["initrd"])
	if _, err := disk.WriteRaw(ctx, path, l); err != nil {
		return nil, fmt.Errorf("role %s: %w", p.Role, err)
	}
	return &imagemeta.Disk{KernelVersion: bt.KernelVersion, Verity: bt.Verity, Cmdline: cmdline, Partitions: ids, ESPFiles: boot.Digests(l.ESPFiles)}, nil
}

func lower(s string) string { return string(bytes.ToLower([]byte(s))) }

// convertDisk writes the disk image raw as format (qcow2 or vmdk) to out.
// A vmdk made by qemu-img carries a random content ID (CID) in its
// descriptor; it is replaced by one derived from seed, so that the same
// image gives the same bytes.
func convertDisk(ctx context.Context, tools Tools, raw, out, format, seed string) error {
	if err := tools.ConvertDisk(ctx, raw, out, format); err != nil {
		return err
	}
	if format == "vmdk" {
		sum := sha256.Sum256([]byte("vmdk-cid:" + seed))
		return setVMDKCID(out, hex.EncodeToString(sum[:4]))
	}
	return nil
}

// qemuConvert runs qemu-img convert.
func qemuConvert(ctx context.Context, raw, out, format string) error {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return fmt.Errorf("qemu-img is not installed (apt-get install qemu-utils): %w", err)
	}
	var opts string
	switch format {
	case "qcow2":
		opts = "compat=1.1"
	case "vmdk":
		// streamOptimized: compressed, and what VMware's OVF import and
		// VirtualBox both read.
		opts = "subformat=streamOptimized"
	default:
		return fmt.Errorf("converting the disk to %q: accepted: qcow2, vmdk", format)
	}
	cmd := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "raw", "-O", format, "-o", opts, raw, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img convert: %w: %s", err, bytes.TrimSpace(b))
	}
	return nil
}

// setVMDKCID replaces the CID of the descriptor that qemu-img embeds in a
// sparse vmdk with cid (eight hex digits). The descriptor is NUL-padded
// text in its own sectors, which the extent header names; qemu-img writes
// the CID without leading zeros, and may rewrite its descriptor shorter
// and leave the old text's last bytes after the NUL. The new text is
// written with the whole rest of the descriptor's sectors zeroed, so the
// bytes depend on nothing random, and nothing else in the file moves.
func setVMDKCID(path, cid string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var hdr [44]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return fmt.Errorf("reading the vmdk header of %s: %w", path, err)
	}
	if string(hdr[:4]) != "KDMV" {
		return fmt.Errorf("vmdk %s: not a sparse extent (no KDMV magic)", path)
	}
	off, size := binary.LittleEndian.Uint64(hdr[28:]), binary.LittleEndian.Uint64(hdr[36:])
	if off == 0 || size == 0 || size > 2048 {
		return fmt.Errorf("vmdk %s: no embedded descriptor (offset %d, %d sectors)", path, off, size)
	}
	area := make([]byte, size*512)
	if _, err := f.ReadAt(area, int64(off)*512); err != nil {
		return fmt.Errorf("reading the vmdk descriptor of %s: %w", path, err)
	}
	text := area
	if end := bytes.IndexByte(area, 0); end >= 0 {
		text = area[:end]
	}
	i := bytes.Index(text, []byte("\nCID="))
	if i < 0 {
		return fmt.Errorf("vmdk %s: no CID in its descriptor", path)
	}
	j := bytes.IndexByte(text[i+1:], '\n')
	if j < 0 {
		return fmt.Errorf("vmdk %s: the CID line has no end", path)
	}
	j += i + 1
	nt := make([]byte, 0, len(area))
	nt = append(nt, text[:i+1]...)
	nt = append(nt, "CID="+cid...)
	nt = append(nt, text[j:]...)
	if len(nt) >= len(area) { // the text and at least one NUL
		return fmt.Errorf("vmdk %s: no room in the descriptor for the CID", path)
	}
	nt = append(nt, make([]byte, len(area)-len(nt))...)
	if _, err := f.WriteAt(nt, int64(off)*512); err != nil {
		return err
	}
	return f.Close()
}

func artifactOf(ctx context.Context, path, format string) (imagemeta.Output, error) {
	d, err := fileDigest(ctx, path)
	if err != nil {
		return imagemeta.Output{}, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return imagemeta.Output{}, err
	}
	return imagemeta.Output{Path: filepath.Base(path), Format: format, Size: fi.Size(), Digest: d}, nil
}

// writeISO writes the hybrid ISO of im: the same kernel, initramfs and
// verified root as the disk, the root and its hash tree in one file. It
// returns the kernel command line and the digests of its ESP's files.
func (b *Builder) writeISO(ctx context.Context, path string, im *Image, bt *Bootable) (string, map[string]string, error) {
	p := im.Plan
	files, err := bt.bootFileData()
	if err != nil {
		return "", nil, err
	}
	rootImg := path + ".root.img"
	defer os.Remove(rootImg)
	if err := concat(ctx, rootImg, bt.Squashfs, bt.Hash); err != nil {
		return "", nil, err
	}
	vol := "IMGFORGE_" + strings.ToUpper(strings.ReplaceAll(p.Role, "-", "_"))
	if len(vol) > 32 {
		vol = vol[:32]
	}
	cmdline := disk.ISOCmdline(p.Kernel.Cmdline, bt.Verity, vol)
	l := disk.ISOLayout{
		VolumeID: vol, RootImage: rootImg, Epoch: p.SourceDateEpoch,
		ESPFiles: boot.ESP("imgforge "+p.Role, cmdline, files["loader"], files["kernel"], files["initrd"]),
	}
	if bt.Isolinux != "" {
		bios := &disk.BIOSBoot{Kernel: files["kernel"], Initrd: files["initrd"], Cmdline: cmdline}
		for _, x := range []struct {
			dst *[]byte
			src string
		}{{&bios.Isolinux, bt.Isolinux}, {&bios.Ldlinux, bt.Ldlinux}, {&bios.MBR, bt.IsoMBR}} {
			if *x.dst, err = os.ReadFile(x.src); err != nil {
				return "", nil, fmt.Errorf("reading ISOLINUX: %w", err)
			}
		}
		l.BIOS = bios
	}
	if err := disk.WriteISO(ctx, path, l); err != nil {
		return "", nil, fmt.Errorf("role %s: %w", p.Role, err)
	}
	return cmdline, boot.Digests(l.ESPFiles), nil
}

func concat(ctx context.Context, dst string, srcs ...string) error {
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	for _, s := range srcs {
		in, err := os.Open(s)
		if err != nil {
			out.Close()
			return err
		}
		_, err = ctxio.Copy(ctx, out, in)
		in.Close()
		if err != nil {
			out.Close()
			return err
		}
	}
	return out.Close()
}

// bootFileData reads the kernel, initrd and boot loader of a Bootable.
func (bt *Bootable) bootFileData() (map[string][]byte, error) {
	files := map[string][]byte{}
	for name, src := range map[string]string{"kernel": bt.Kernel, "initrd": bt.Initrd, "loader": bt.Bootloader} {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("reading the %s: %w", name, err)
		}
		files[name] = data
	}
	return files, nil
}

// writePXE writes the PXE set of im into dir (OUTPUT/ROLE/pxe): the
// kernel, the initramfs, the root image (the squashfs, then its hash
// tree, as on the ISO) and boot.ipxe, whose kernel command line carries
// the root hash and the root image's size. It returns that command line
// and the set's files, with paths relative to dir's parent.
func (b *Builder) writePXE(ctx context.Context, dir string, im *Image, bt *Bootable) (string, []imagemeta.Output, error) {
	p := im.Plan
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", nil, err
	}
	var arts []imagemeta.Output
	add := func(name, format string, write func(io.Writer) error) error {
		a, err := writeHashed(ctx, filepath.Join(dir, name), write)
		if err != nil {
			return fmt.Errorf("writing the PXE set's %s: %w", name, err)
		}
		a.Path, a.Format = filepath.Base(dir)+"/"+name, format
		arts = append(arts, a)
		return nil
	}
	copyFrom := func(srcs ...string) func(io.Writer) error {
		return func(w io.Writer) error {
			for _, s := range srcs {
				f, err := os.Open(s)
				if err != nil {
					return err
				}
				_, err = io.Copy(w, f)
				f.Close()
				if err != nil {
					return err
				}
			}
			return nil
		}
	}
	if err := add(boot.PXEKernel, "pxe-kernel", copyFrom(bt.Kernel)); err != nil {
		return "", nil, err
	}
	if err := add(boot.PXEInitrd, "pxe-initrd", copyFrom(bt.Initrd)); err != nil {
		return "", nil, err
	}
	if err := add(boot.PXERoot, "pxe-root", copyFrom(bt.Squashfs, bt.Hash)); err != nil {
		return "", nil, err
	}
	size := arts[len(arts)-1].Size
	cmdline := boot.NetCmdline(p.Kernel.Cmdline, bt.Verity, "${"+boot.IPXEBase+"}"+boot.PXERoot, size)
	script := boot.IPXEScript(p.Role, cmdline)
	if err := add(boot.PXEScript, "ipxe", func(w io.Writer) error { _, err := w.Write(script); return err }); err != nil {
		return "", nil, err
	}
	return cmdline, arts, nil
}
