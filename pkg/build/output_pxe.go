package build

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// pxeOutput writes the PXE set into pxe/: the kernel, the initramfs, the
// root image and boot.ipxe.
var pxeOutput = output{
	format: "pxe", needs: needBootable,
	write: func(ctx context.Context, j *outputJob) error {
		cmdline, as, err := j.b.writePXE(ctx, filepath.Join(j.dir, "pxe"), j.im, j.bootable)
		if err != nil {
			return err
		}
		j.pxeCmdline = cmdline
		j.arts = append(j.arts, as...)
		return nil
	},
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
	if err := add(boot.PXEOverlay, "pxe-overlay", copyFrom(bt.Overlay)); err != nil {
		return "", nil, err
	}
	ov := bt.OverlayVerity
	cmdline := boot.NetCmdline(p.Kernel.Cmdline, bt.Verity, "${"+boot.IPXEBase+"}"+boot.PXERoot, size, &ov)
	script := boot.IPXEScript(p.Role, cmdline, true)
	if err := add(boot.PXEScript, "ipxe", func(w io.Writer) error { _, err := w.Write(script); return err }); err != nil {
		return "", nil, err
	}
	// With Secure Boot, the set also carries each disk slot's signed UKI,
	// which imgforge-agent update installs (iPXE itself boots unsigned).
	ukis, err := b.updateUKIs(ctx, im, bt, cmdline)
	if err != nil {
		return "", nil, err
	}
	for _, slot := range []string{"a", "b"} {
		if uki, ok := ukis[slot]; ok {
			if err := add(imagemeta.BootUKI(slot), "pxe-uki", func(w io.Writer) error { _, err := w.Write(uki); return err }); err != nil {
				return "", nil, err
			}
		}
	}
	return cmdline, arts, nil
}

// updateUKIs are the signed UKIs of both disk slots that an update
// installs, when im is signed for Secure Boot (nil otherwise): base's
// command line with the slot's partitions (imagemeta.SignedSlotUUIDs), the
// state partition by its label (a node's PARTUUID is not known here) and
// panic=30, as imgforge-agent update gives an unsigned slot, so that a
// boot that stops spends its try and falls back.
func (b *Builder) updateUKIs(ctx context.Context, im *Image, bt *Bootable, base string) (map[string][]byte, error) {
	if b.secureBootFor(im.Plan) == nil {
		return nil, nil
	}
	files, err := bt.bootFileData()
	if err != nil {
		return nil, err
	}
	var slots []*boot.Slot
	for _, name := range []string{"a", "b"} {
		r, v := imagemeta.SignedSlotUUIDs(bt.Verity.RootHash, name)
		slots = append(slots, &boot.Slot{
			Name: name, Cmdline: imagemeta.SlotCmdline(base, name, r, v, imagemeta.StateByLabel, bt.Verity) + " panic=30",
			Kernel: files["kernel"], Initrd: files["initrd"], Overlay: files["overlay"],
		})
	}
	if _, err := b.signedBoot(ctx, im, bt, nil, slots); err != nil {
		return nil, err
	}
	return map[string][]byte{"a": slots[0].UKI, "b": slots[1].UKI}, nil
}
