// Package boot holds what makes an imgforge root filesystem bootable: the
// initramfs-tools hook and boot script that set up the dm-verity root and
// its writable overlay, the kernel command line that tells them where
// everything is, and the files of the EFI system partition (systemd-boot
// and its loader entry). It does not write disks; package disk does.
package boot

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

var (
	//go:embed initramfs/hook
	hook []byte
	//go:embed initramfs/script
	script []byte
	//go:embed initramfs/conf
	conf []byte
)

// File is a file to put into a root filesystem or a partition.
type File struct {
	Path string // absolute
	Mode int64
	Data []byte
}

// InitramfsFiles are the files that make mkinitramfs build imgforge's
// initramfs when they are added to a root filesystem.
func InitramfsFiles() []File {
	return []File{
		{Path: "/etc/initramfs-tools/hooks/imgforge", Mode: 0o755, Data: hook},
		{Path: "/etc/initramfs-tools/scripts/imgforge", Mode: 0o644, Data: script},
		{Path: "/etc/initramfs-tools/conf.d/imgforge.conf", Mode: 0o644, Data: conf},
	}
}

// Verity locates a dm-verity protected root. It is the manifest's verity
// section, so it is defined once, in package imagemeta.
type Verity = imagemeta.Verity

// Devices says where the root, its hash tree and the state live, in the
// forms the boot script resolves: PARTUUID=U, LABEL=L, or LABEL=L:/file
// for a root image inside an ISO.
type Devices struct {
	Root, Verity, State string
}

// Cmdline is the kernel command line: the image's own, then imgforge's.
func Cmdline(base string, v Verity, d Devices) string {
	parts := []string{}
	if b := strings.TrimSpace(base); b != "" {
		parts = append(parts, b)
	}
	parts = append(parts, "boot=imgforge", "imgforge.root="+d.Root)
	if d.Verity != "" {
		parts = append(parts, "imgforge.verity="+d.Verity)
	}
	parts = append(parts,
		"imgforge.roothash="+v.RootHash, "imgforge.salt="+v.Salt,
		fmt.Sprintf("imgforge.blocks=%d", v.DataBlocks), fmt.Sprintf("imgforge.hashstart=%d", v.HashStart))
	if d.State != "" {
		parts = append(parts, "imgforge.state="+d.State)
	}
	return strings.Join(parts, " ")
}

// ESP lists the files of an EFI system partition that boots kernel and
// initrd with cmdline through systemd-boot (the removable-media path, so
// no firmware boot entry is needed).
func ESP(title, cmdline string, systemdBoot, kernel, initrd []byte) []File {
	entry := fmt.Sprintf("title %s\nlinux /imgforge/vmlinuz\ninitrd /imgforge/initrd.img\noptions %s\n", title, cmdline)
	files := []File{
		{Path: "/EFI/BOOT/BOOTX64.EFI", Mode: 0o644, Data: systemdBoot},
		{Path: "/loader/loader.conf", Mode: 0o644, Data: []byte("default imgforge.conf\ntimeout 0\neditor no\n")},
		{Path: "/loader/entries/imgforge.conf", Mode: 0o644, Data: []byte(entry)},
		{Path: "/imgforge/vmlinuz", Mode: 0o644, Data: kernel},
		{Path: "/imgforge/initrd.img", Mode: 0o644, Data: initrd},
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files
}

// Digests maps the path of each of files to the sha256 of its content
// ("sha256:HEX"), as a manifest records an ESP's files for verify.
func Digests(files []File) map[string]string {
	out := make(map[string]string, len(files))
	for _, f := range files {
		sum := sha256.Sum256(f.Data)
		out[f.Path] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

// NetCmdline is the kernel command line of a netboot: the initramfs
// fetches the root image (the squashfs, then its hash tree) of size bytes
// from url, which must be http://.
func NetCmdline(base string, v Verity, url string, size int64) string {
	v.HashStart = v.DataBlocks
	return Cmdline(base, v, Devices{Root: url}) + fmt.Sprintf(" imgforge.size=%d", size)
}

// iPXE settings the PXE set's script reads.
const (
	// IPXEBase is the URL of the PXE set's folder, ending in '/'.
	IPXEBase = "imgforge-base"
	// IPXEArgs holds more kernel arguments, such as a NoCloud seed URL.
	IPXEArgs = "imgforge-args"
)

// PXE set file names.
const (
	PXEKernel = "vmlinuz"
	PXEInitrd = "initrd.img"
	PXERoot   = "root.img"
	PXEScript = "boot.ipxe"
)

// IPXEScript is the iPXE script of role's PXE set: it boots the set's kernel
// and initramfs from ${imgforge-base} with cmdline (whose root URL may
// name ${imgforge-base} too), the MAC address of the booting NIC as
// BOOTIF (so the initramfs configures that NIC) and ${imgforge-args}.
func IPXEScript(role, cmdline string) []byte {
	b := "${" + IPXEBase + "}"
	return fmt.Appendf(nil, `#!ipxe
# imgforge PXE set of role %[1]s: kernel, initramfs and the dm-verity protected root image.
# Chain this script with %[2]s set to the URL of its folder (ending in /):
#   set %[2]s http://192.0.2.1/lb/pxe/
#   chain ${%[2]s}%[3]s
# %[4]s adds kernel arguments; imgforge serve puts each machine's NoCloud seed URL there.
isset ${%[2]s} || goto nobase
echo imgforge: booting %[1]s from ${%[2]s}
kernel %[5]s%[6]s initrd=%[7]s %[8]s BOOTIF=01-${netX/mac:hexhyp} ${%[4]s} || goto failed
initrd %[5]s%[7]s || goto failed
boot || goto failed
:nobase
echo imgforge: %[2]s is not set: set it to the URL of this script's folder before chaining it
exit 1
:failed
echo imgforge: netboot of %[1]s from ${%[2]s} failed
exit 1
`, role, IPXEBase, PXEScript, IPXEArgs, b, PXEKernel, PXEInitrd, cmdline)
}
