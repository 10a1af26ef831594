package build

import (
	"bytes"
	"context"
	"fmt"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/disk"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// rawOutput writes ROLE.raw: a UEFI-bootable GPT disk with the ESP
// (systemd-boot, the kernel, the initramfs), the verified root, its hash
// tree and an empty state partition. The qcow2 and vmdk outputs convert
// the same disk.
var rawOutput = output{
	format: "raw", needs: needBootable | needRaw,
	write: func(ctx context.Context, j *outputJob) error {
		_, err := j.raw(ctx)
		return err
	},
}

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
	ov := bt.OverlayVerity
	cmdline := boot.Cmdline(p.Kernel.Cmdline, bt.Verity, boot.Devices{
		Root: "PARTUUID=" + lower(ids.Root), Verity: "PARTUUID=" + lower(ids.Verity), State: "PARTUUID=" + lower(ids.State),
		Slot: "a", Overlay: &ov,
	})
	// The build fills slot A; its entry is not counted, since there is
	// nothing yet to fall back to. An update adds slot B's, counted.
	l.ESPFiles = boot.ESP(files["loader"], boot.Slot{
		Name: "a", Gen: 1, Title: fmt.Sprintf("imgforge %s %s (slot a)", p.Role, imagemeta.Version(imageDigest)), Cmdline: cmdline,
		Kernel: files["kernel"], Initrd: files["initrd"], Overlay: files["overlay"],
	})
	if _, err := disk.WriteRaw(ctx, path, l); err != nil {
		return nil, fmt.Errorf("role %s: %w", p.Role, err)
	}
	return &imagemeta.Disk{KernelVersion: bt.KernelVersion, Verity: bt.Verity, OverlayVerity: &ov, Cmdline: cmdline, Partitions: ids, ESPFiles: boot.Digests(l.ESPFiles)}, nil
}

func lower(s string) string { return string(bytes.ToLower([]byte(s))) }
