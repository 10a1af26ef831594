package build

import (
	"context"
	"io"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/debian"
	"github.com/imgforge/imgforge/pkg/disk"
	"github.com/imgforge/imgforge/pkg/rootfs"
)

// Tools runs the programs of the host a build needs: mmdebstrap (the
// base, the role's packages, mkinitramfs in a chroot of the base),
// tar2sqfs, veritysetup, mke2fs, qemu-img and GNU tar. The stages reach the host only
// through it, so that tests can run them with a fake that writes small
// tars.
type Tools interface {
	// MmdebstrapVersion is the version of bootstrap's mmdebstrap, part of
	// the base's key.
	MmdebstrapVersion(ctx context.Context) (string, error)
	// Bootstrap writes the root filesystem tar bs describes to bs.Output.
	Bootstrap(ctx context.Context, bs *debian.Bootstrap) error
	// Chroot runs ch's commands in a throwaway root made from ch.On.
	Chroot(ctx context.Context, ch *debian.Chroot) error
	// Squashfs writes the tar stream r as a squashfs to out.
	Squashfs(ctx context.Context, r io.Reader, out string, epoch int64) error
	// Verity writes the dm-verity hash tree of data to hash.
	Verity(ctx context.Context, data, hash, salt string) (boot.Verity, error)
	// ConvertDisk writes the raw disk as format (qcow2, vmdk, vhd) to out.
	ConvertDisk(ctx context.Context, raw, out, format string) error
	// SparseTar writes to w a tar of the file name in dir, stored sparse,
	// owned by root, with the time epoch (see sparseTar).
	SparseTar(ctx context.Context, w io.Writer, dir, name string, epoch int64) error
	// StateFS writes the empty ext4 file system of a raw disk's state
	// partition, size bytes with the UUID uuid, to the new file out (see
	// disk.MakeState).
	StateFS(ctx context.Context, out string, size int64, uuid string, epoch int64) error
}

// HostTools are the Tools of the host; command is the mmdebstrap command
// ("mmdebstrap" when empty).
func HostTools(command string) Tools { return hostTools{command: command} }

type hostTools struct{ command string }

func (h hostTools) MmdebstrapVersion(ctx context.Context) (string, error) {
	return debian.Version(ctx, h.command)
}

func (h hostTools) Bootstrap(ctx context.Context, bs *debian.Bootstrap) error {
	if bs.Command == "" {
		bs.Command = h.command
	}
	return bs.Run(ctx)
}

func (h hostTools) Chroot(ctx context.Context, ch *debian.Chroot) error {
	if ch.Command == "" {
		ch.Command = h.command
	}
	return ch.Run(ctx)
}

func (hostTools) Squashfs(ctx context.Context, r io.Reader, out string, epoch int64) error {
	return rootfs.Squashfs(ctx, r, out, epoch)
}

func (hostTools) Verity(ctx context.Context, data, hash, salt string) (boot.Verity, error) {
	return rootfs.Verity(ctx, data, hash, salt)
}

func (hostTools) StateFS(ctx context.Context, out string, size int64, uuid string, epoch int64) error {
	return disk.MakeState(ctx, out, size, uuid, epoch)
}

func (hostTools) ConvertDisk(ctx context.Context, raw, out, format string) error {
	return qemuConvert(ctx, raw, out, format)
}

func (hostTools) SparseTar(ctx context.Context, w io.Writer, dir, name string, epoch int64) error {
	return sparseTar(ctx, w, dir, name, epoch)
}
