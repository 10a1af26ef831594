package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/disk"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/plan"
)

// rawOutput writes ROLE.raw: a UEFI-bootable GPT disk with the ESP
// (systemd-boot, the kernel, the initramfs), the verified root, its hash
// tree, an empty slot B and the state partition with an empty ext4. The qcow2 and vmdk outputs convert
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
		Size: int64(p.Disk.Size), ESPSize: int64(p.Disk.ESPSize), SlotSize: int64(p.Disk.SlotSize),
		Root: bt.Squashfs, Verity: bt.Hash, RootHash: bt.Verity.RootHash,
		Label: imagemeta.SlotLabel(p.Role, imagemeta.Version(imageDigest)), Seed: imageDigest, Epoch: p.SourceDateEpoch,
	}
	ids, err := l.IDs()
	if err != nil {
		return nil, err
	}
	pl, err := l.Place()
	if err != nil {
		return nil, fmt.Errorf("role %s: %w", p.Role, diskSettingError(p, err))
	}
	// The state partition gets its empty ext4 made here, so that the
	// first boot only grows it.
	l.State = path + ".state"
	os.Remove(l.State)
	defer os.Remove(l.State)
	if err := b.o.Tools.StateFS(ctx, l.State, pl.StateSize(), ids.StateFS, p.SourceDateEpoch); err != nil {
		return nil, fmt.Errorf("role %s: %w", p.Role, err)
	}
	ov := bt.OverlayVerity
	cmdline := boot.Cmdline(p.Kernel.Cmdline, bt.Verity, boot.Devices{
		Root: "PARTUUID=" + lower(ids.Root), Verity: "PARTUUID=" + lower(ids.Verity), State: "PARTUUID=" + lower(ids.State),
		Slot: "a", Overlay: &ov,
	})
	// The build fills slot A; its entry is not counted, since there is
	// nothing yet to fall back to. An update adds slot B's, counted.
	slot := boot.Slot{
		Name: "a", Gen: 1, Title: fmt.Sprintf("imgforge %s %s (slot a)", p.Role, imagemeta.Version(imageDigest)), Cmdline: cmdline,
		Kernel: files["kernel"], Initrd: files["initrd"], Overlay: files["overlay"],
	}
	loader, err := b.signedBoot(ctx, im, bt, files["loader"], []*boot.Slot{&slot})
	if err != nil {
		return nil, err
	}
	l.ESPFiles = boot.ESP(loader, slot)
	if _, err := disk.WriteRaw(ctx, path, l); err != nil {
		return nil, fmt.Errorf("role %s: %w", p.Role, err)
	}
	return &imagemeta.Disk{KernelVersion: bt.KernelVersion, Verity: bt.Verity, OverlayVerity: &ov, Cmdline: cmdline, Partitions: ids, Layout: l.Info(), ESPFiles: boot.Digests(l.ESPFiles)}, nil
}

// diskSettingError names where the image definition set the disk size
// or the slot size that a disk error is about: FILE:LINE:COL: field
// "disk.slot_size": ... (it wraps err).
func diskSettingError(p *plan.Plan, err error) error {
	field := ""
	switch {
	case errors.Is(err, disk.ErrSlotTooSmall):
		field = "disk.slot_size"
	case errors.Is(err, disk.ErrTooSmall):
		field = "disk.size"
	default:
		return err
	}
	return diskFieldError(p, field, err)
}

// diskFieldError names where the image definition set the disk setting
// field ("disk.size", "disk.slot_size") that err is about (it wraps err).
func diskFieldError(p *plan.Plan, field string, err error) error {
	pos, ok := p.DiskPos[field]
	if !ok || pos.File == "" {
		return fmt.Errorf("field %q: %w", field, err)
	}
	where := pos.File
	if pos.Line > 0 {
		where = fmt.Sprintf("%s:%d:%d", pos.File, pos.Line, pos.Col)
	}
	return fmt.Errorf("%s: field %q: %w", where, field, err)
}

func lower(s string) string { return string(bytes.ToLower([]byte(s))) }
