package build

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

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

// Tool is a program of the host that a build runs, and the Debian package
// that ships it.
type Tool struct {
	Name    string `json:"name"`    // the executable, looked up on PATH
	Package string `json:"package"` // the Debian package to install
	For     string `json:"for"`     // what the build uses it for
	// Path is where it was found; empty when it is missing.
	Path string `json:"path,omitempty"`
}

// The programs HostTools runs, with their packages.
var (
	toolMmdebstrap  = Tool{Name: "mmdebstrap", Package: "mmdebstrap", For: "the Debian root, the role's packages and the initramfs"}
	toolNewuidmap   = Tool{Name: "newuidmap", Package: "uidmap", For: "mmdebstrap's unshare mode, when not run as root"}
	toolNewgidmap   = Tool{Name: "newgidmap", Package: "uidmap", For: "mmdebstrap's unshare mode, when not run as root"}
	toolTar2sqfs    = Tool{Name: "tar2sqfs", Package: "squashfs-tools-ng", For: "the squashfs root of bootable formats"}
	toolVeritysetup = Tool{Name: "veritysetup", Package: "cryptsetup-bin", For: "the dm-verity hash tree of the root"}
	toolMke2fs      = Tool{Name: "mke2fs", Package: "e2fsprogs", For: "the state file system of the disks"}
	toolQemuImg     = Tool{Name: "qemu-img", Package: "qemu-utils", For: "converting the raw disk"}
	toolXorriso     = Tool{Name: "xorriso", Package: "xorriso", For: "the hybrid ISO"}
	toolTar         = Tool{Name: "tar", Package: "tar", For: "the gce tarball (GNU tar's sparse archives)"}
)

// convertedFormats are the formats qemu-img converts the raw disk into.
var convertedFormats = []string{"qcow2", "vmdk", "vhd"}

// RequiredTools returns the programs of the host that a build of formats
// needs, in the order a build runs them: mmdebstrap always (its version is
// part of the base's cache key), newuidmap and newgidmap when rootless,
// and what each format's writer runs. mmdebstrap is named by command when
// it is not empty (Options.Mmdebstrap).
func RequiredTools(formats []string, rootless bool, command string) ([]Tool, error) {
	_, needs, err := planOutputs(formats)
	if err != nil {
		return nil, err
	}
	mm := toolMmdebstrap
	if command != "" {
		mm.Name = command
	}
	tools := []Tool{mm}
	if rootless {
		tools = append(tools, toolNewuidmap, toolNewgidmap)
	}
	if needs&needBootable != 0 {
		tools = append(tools, toolTar2sqfs, toolVeritysetup)
	}
	if needs&needRaw != 0 {
		tools = append(tools, toolMke2fs)
	}
	if slices.ContainsFunc(formats, func(f string) bool { return slices.Contains(convertedFormats, f) }) {
		tools = append(tools, toolQemuImg)
	}
	if slices.Contains(formats, "iso") {
		tools = append(tools, toolXorriso)
	}
	if slices.Contains(formats, "gce") {
		tools = append(tools, toolTar)
	}
	return tools, nil
}

// FindTools looks each tool up with lookPath (exec.LookPath) and sets its
// Path; it returns the tools it did not find.
func FindTools(tools []Tool, lookPath func(string) (string, error)) (missing []Tool) {
	for i := range tools {
		p, err := lookPath(tools[i].Name)
		if err != nil {
			tools[i].Path = ""
			missing = append(missing, tools[i])
			continue
		}
		tools[i].Path = p
	}
	return missing
}

// MissingToolsError is a build refused before it started: programs it
// needs are not installed.
type MissingToolsError struct{ Missing []Tool }

func (e *MissingToolsError) Error() string {
	var names, pkgs []string
	for _, t := range e.Missing {
		names = append(names, fmt.Sprintf("%s (%s)", t.Name, t.For))
		if !slices.Contains(pkgs, t.Package) {
			pkgs = append(pkgs, t.Package)
		}
	}
	return fmt.Sprintf("missing programs: %s; install them with: apt-get install %s", strings.Join(names, ", "), strings.Join(pkgs, " "))
}

// Preflight checks, before any work, that the programs a build of formats
// needs are installed; it returns a *MissingToolsError naming the Debian
// packages to install when some are not.
func Preflight(formats []string, rootless bool, command string, lookPath func(string) (string, error)) error {
	tools, err := RequiredTools(formats, rootless, command)
	if err != nil {
		return err
	}
	if missing := FindTools(tools, lookPath); len(missing) > 0 {
		return &MissingToolsError{Missing: missing}
	}
	return nil
}

// SparseTar writes name, a file of dir, as a sparse GNU tar (see sparseTar).
func (hostTools) SparseTar(ctx context.Context, w io.Writer, dir, name string, epoch int64) error {
	return sparseTar(ctx, w, dir, name, epoch)
}
