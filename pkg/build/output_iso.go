package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/ctxio"
	"github.com/imgforge/imgforge/pkg/disk"
)

// isoOutput writes ROLE.iso, a hybrid ISO (UEFI, and BIOS when the image
// has ISOLINUX) that boots the same kernel, initramfs and verified root as
// the disk.
var isoOutput = output{
	format: "iso", needs: needBootable,
	write: func(ctx context.Context, j *outputJob) error {
		iso := filepath.Join(j.dir, j.im.Plan.Role+".iso")
		cmdline, digests, err := j.b.writeISO(ctx, iso, j.im, j.bootable)
		if err != nil {
			return err
		}
		j.isoCmdline, j.isoESP = cmdline, digests
		a, err := artifactOf(ctx, iso, "iso")
		if err != nil {
			return err
		}
		j.arts = append(j.arts, a)
		return nil
	},
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
	ov := bt.OverlayVerity
	cmdline := disk.ISOCmdline(p.Kernel.Cmdline, bt.Verity, vol, &ov)
	// One entry, not counted: an ISO has no second slot to fall back to.
	slot := boot.Slot{
		Name: "a", Gen: 1, Title: "imgforge " + p.Role, Cmdline: cmdline,
		Kernel: files["kernel"], Initrd: files["initrd"], Overlay: files["overlay"],
	}
	loader, err := b.signedBoot(ctx, im, bt, files["loader"], []*boot.Slot{&slot})
	if err != nil {
		return "", nil, err
	}
	l := disk.ISOLayout{
		VolumeID: vol, RootImage: rootImg, Epoch: p.SourceDateEpoch,
		ESPFiles: boot.ESP(loader, slot),
	}
	if bt.Isolinux != "" {
		bios := &disk.BIOSBoot{Kernel: files["kernel"], Initrd: files["initrd"], Overlay: files["overlay"], Cmdline: cmdline}
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
