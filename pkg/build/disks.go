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

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// convertDisk writes the disk image raw as format (qcow2, vmdk or vhd)
// to out. A vmdk made by qemu-img carries a random content ID (CID) in
// its descriptor, and a VHD a random UUID and the time in its footer:
// they are replaced by ones derived from seed and epoch (the image's
// SOURCE_DATE_EPOCH), so that the same image gives the same bytes.
func convertDisk(ctx context.Context, tools Tools, raw, out, format, seed string, epoch int64) error {
	if err := tools.ConvertDisk(ctx, raw, out, format); err != nil {
		return err
	}
	switch format {
	case "vmdk":
		sum := sha256.Sum256([]byte("vmdk-cid:" + seed))
		return setVMDKCID(out, hex.EncodeToString(sum[:4]))
	case "vhd":
		sum := sha256.Sum256([]byte("vhd-uuid:" + seed))
		return setVHDFooter(out, sum[:16], epoch)
	}
	return nil
}

// qemuConvert runs qemu-img convert.
func qemuConvert(ctx context.Context, raw, out, format string) error {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return fmt.Errorf("qemu-img is not installed (apt-get install qemu-utils): %w", err)
	}
	driver, opts := format, ""
	switch format {
	case "qcow2":
		opts = "compat=1.1"
	case "vmdk":
		// streamOptimized: compressed, and what vSphere's OVF import
		// (and VirtualBox) read; vSphere refuses the monolithicSparse
		// kind qemu-img makes by default.
		opts = "subformat=streamOptimized"
	case "vhd":
		// Azure takes fixed VHDs only (the raw bytes and a 512-byte
		// footer). force_size keeps the raw size: without it qemu-img
		// rounds the size to a CHS geometry, off Azure's whole MiB.
		driver, opts = "vpc", "subformat=fixed,force_size=on"
	default:
		return fmt.Errorf("converting the disk to %q: accepted: qcow2, vmdk, vhd", format)
	}
	cmd := exec.CommandContext(ctx, "qemu-img", "convert", "-f", "raw", "-O", driver, "-o", opts, raw, out)
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

// bootFileData reads the kernel, initrd and boot loader of a Bootable.
func (bt *Bootable) bootFileData() (map[string][]byte, error) {
	files := map[string][]byte{}
	for name, src := range map[string]string{"kernel": bt.Kernel, "initrd": bt.Initrd, "loader": bt.Bootloader, "overlay": bt.Overlay} {
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("reading the %s: %w", name, err)
		}
		files[name] = data
	}
	return files, nil
}

// convert writes the raw disk as format (qcow2, vmdk, vhd) beside it.
func (j *outputJob) convert(ctx context.Context, format string) error {
	raw, err := j.raw(ctx)
	if err != nil {
		return err
	}
	out := filepath.Join(j.dir, j.im.Plan.Role+"."+format)
	if err := convertDisk(ctx, j.b.o.Tools, raw, out, format, j.digest, j.im.Plan.SourceDateEpoch); err != nil {
		return err
	}
	a, err := artifactOf(ctx, out, format)
	if err != nil {
		return err
	}
	j.arts = append(j.arts, a)
	return nil
}
