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
// for a root image inside an ISO; the A/B slot the entry boots; and the
// overlay image's verity (its hash tree follows its data in
// OverlayPath), when the image has one.
type Devices struct {
	Root, Verity, State string
	Slot                string
	Overlay             *Verity
}

// Cmdline is the kernel command line: the image's own, then imgforge's.
func Cmdline(base string, v Verity, d Devices) string {
	parts := []string{}
	if b := strings.TrimSpace(base); b != "" {
		parts = append(parts, b)
	}
	parts = append(parts, "boot=imgforge")
	if d.Slot != "" {
		parts = append(parts, "imgforge.slot="+d.Slot)
	}
	parts = append(parts, "imgforge.root="+d.Root)
	if d.Verity != "" {
		parts = append(parts, "imgforge.verity="+d.Verity)
	}
	parts = append(parts,
		"imgforge.roothash="+v.RootHash, "imgforge.salt="+v.Salt,
		fmt.Sprintf("imgforge.blocks=%d", v.DataBlocks), fmt.Sprintf("imgforge.hashstart=%d", v.HashStart))
	if o := d.Overlay; o != nil {
		parts = append(parts, "imgforge.overlayhash="+o.RootHash, "imgforge.overlaysalt="+o.Salt,
			fmt.Sprintf("imgforge.overlayblocks=%d", o.DataBlocks))
	}
	if d.State != "" {
		parts = append(parts, "imgforge.state="+d.State)
	}
	return strings.Join(parts, " ")
}

// Slot is one A/B slot's boot entry on the ESP: its kernel set and the
// command line that boots its root.
type Slot struct {
	Name                    string // a or b
	Gen                     int    // the entry's generation: the highest one that still has tries boots
	Tries                   int    // boot counting: tries left (0: the entry is not counted)
	Title                   string
	Cmdline                 string
	Kernel, Initrd, Overlay []byte // Overlay: the cpio of the overlay image; nil for none
	// UKI, when set, is the slot's signed unified kernel image (see
	// AssembleUKI), which holds the kernel, the initrds and Cmdline: the
	// slot's entry starts it (efi), and Kernel, Initrd and Overlay are
	// not written.
	UKI []byte
}

// SlotFiles are the ESP paths of slot's kernel set.
type SlotFiles struct{ Kernel, Initrd, Overlay, UKI string }

// UKIFile is the file name of a slot's unified kernel image on the ESP.
const UKIFile = "imgforge.efi"

// FilesOf gives the ESP paths of the kernel set of slot name.
func FilesOf(name string) SlotFiles {
	d := "/imgforge/" + name + "/"
	return SlotFiles{Kernel: d + "vmlinuz", Initrd: d + "initrd.img", Overlay: d + "overlay.cpio", UKI: d + UKIFile}
}

// ESP paths of systemd-boot and its configuration.
const (
	LoaderPath = "/EFI/BOOT/BOOTX64.EFI"
	LoaderConf = "/loader/loader.conf"
	EntriesDir = "/loader/entries"
)

// LoaderConfig is loader.conf: no menu, and the highest entry whose name
// matches (the newest generation; entries out of tries sort last) boots.
const LoaderConfig = "default imgforge-*\ntimeout 0\neditor no\n"

// EntryName is the file name of a slot's loader entry: imgforge-GEN-SLOT,
// and +TRIES when the entry is counted (systemd-boot's boot counting).
func EntryName(s Slot) string {
	n := fmt.Sprintf("imgforge-%04d-%s", s.Gen, s.Name)
	if s.Tries > 0 {
		n += fmt.Sprintf("+%d", s.Tries)
	}
	return n + ".conf"
}

// Entry is the loader entry (Boot Loader Specification type 1) of s.
func Entry(s Slot) string {
	f := FilesOf(s.Name)
	var b strings.Builder
	if s.UKI != nil {
		// The command line is the UKI's own, covered by its signature:
		// systemd-boot passes no options to it with Secure Boot on.
		fmt.Fprintf(&b, "title %s\nversion %d\nefi %s\n", s.Title, s.Gen, f.UKI)
		return b.String()
	}
	fmt.Fprintf(&b, "title %s\nversion %d\nlinux %s\ninitrd %s\n", s.Title, s.Gen, f.Kernel, f.Initrd)
	if s.Overlay != nil {
		fmt.Fprintf(&b, "initrd %s\n", f.Overlay)
	}
	fmt.Fprintf(&b, "options %s\n", s.Cmdline)
	return b.String()
}

// ESP lists the files of an EFI system partition that boots slots
// through systemd-boot (the removable-media path, so no firmware boot
// entry is needed). For Secure Boot, systemdBoot is the signed loader and
// each slot's UKI is set.
func ESP(systemdBoot []byte, slots ...Slot) []File {
	files := []File{
		{Path: LoaderPath, Mode: 0o644, Data: systemdBoot},
		{Path: LoaderConf, Mode: 0o644, Data: []byte(LoaderConfig)},
	}
	for _, s := range slots {
		f := FilesOf(s.Name)
		if s.UKI != nil {
			files = append(files,
				File{Path: EntriesDir + "/" + EntryName(s), Mode: 0o644, Data: []byte(Entry(s))},
				File{Path: f.UKI, Mode: 0o644, Data: s.UKI})
			continue
		}
		files = append(files,
			File{Path: EntriesDir + "/" + EntryName(s), Mode: 0o644, Data: []byte(Entry(s))},
			File{Path: f.Kernel, Mode: 0o644, Data: s.Kernel},
			File{Path: f.Initrd, Mode: 0o644, Data: s.Initrd})
		if s.Overlay != nil {
			files = append(files, File{Path: f.Overlay, Mode: 0o644, Data: s.Overlay})
		}
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
func NetCmdline(base string, v Verity, url string, size int64, overlay *Verity) string {
	v.HashStart = v.DataBlocks
	return Cmdline(base, v, Devices{Root: url, Overlay: overlay}) + fmt.Sprintf(" imgforge.size=%d", size)
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
	// PXEOverlay is the overlay image's cpio, the second initrd.
	PXEOverlay = "overlay.cpio"
	PXEScript  = "boot.ipxe"
)

// IPXEScript is the iPXE script of role's PXE set: it boots the set's kernel
// and initramfs (and the overlay image's cpio, when overlay) from
// ${imgforge-base} with cmdline (whose root URL may name ${imgforge-base}
// too), the MAC address of the booting NIC as BOOTIF (so the initramfs
// configures that NIC) and ${imgforge-args}.
func IPXEScript(role, cmdline string, overlay bool) []byte {
	b := "${" + IPXEBase + "}"
	initrds := "initrd=" + PXEInitrd
	loads := "initrd " + b + PXEInitrd + " || goto failed\n"
	if overlay {
		initrds += " initrd=" + PXEOverlay
		loads += "initrd " + b + PXEOverlay + " || goto failed\n"
	}
	return fmt.Appendf(nil, `#!ipxe
# imgforge PXE set of role %[1]s: kernel, initramfs and the dm-verity protected root image.
# Chain this script with %[2]s set to the URL of its folder (ending in /):
#   set %[2]s http://192.0.2.1/lb/pxe/
#   chain ${%[2]s}%[3]s
# %[4]s adds kernel arguments; imgforge serve puts each machine's NoCloud seed URL there.
isset ${%[2]s} || goto nobase
echo imgforge: booting %[1]s from ${%[2]s}
kernel %[5]s%[6]s %[7]s %[8]s BOOTIF=01-${netX/mac:hexhyp} ${%[4]s} || goto failed
%[9]sboot || goto failed
:nobase
echo imgforge: %[2]s is not set: set it to the URL of this script's folder before chaining it
exit 1
:failed
echo imgforge: netboot of %[1]s from ${%[2]s} failed
exit 1
`, role, IPXEBase, PXEScript, IPXEArgs, b, PXEKernel, initrds, cmdline, loads)
}
