package disk

// A hybrid ISO boots with UEFI both from a CD or DVD and when it is
// written to a USB stick, from one ESP image that appears twice:
//
//	El Torito   a boot catalog entry for the EFI platform (no emulation)
//	            that points at the ESP image: firmware booting the CD
//	            loads \EFI\BOOT\BOOTX64.EFI from it
//	GPT         the same ESP image, appended after the ISO 9660 file
//	            system as GPT partition 2 of type ESP: firmware booting the
//	            stick finds it as it finds any disk's ESP
//
// The ISO 9660 file system (with Rock Ridge and Joliet) holds the root
// image, the squashfs directly followed by its dm-verity hash tree, at
// ISORootPath; GPT partition 1 covers it, so that it can be mounted from
// the stick's first partition too. The boot finds the medium by its volume
// ID (LABEL=VOLUMEID:/imgforge/root.img on the kernel command line). There
// is no state partition: the writable overlay is a tmpfs.
//
// With ISOLINUX (Debian's isolinux and syslinux-common, from the image's
// own packages), the ISO boots on a PC BIOS too:
//
//	El Torito   a first boot catalog entry for the x86 BIOS platform
//	            (no emulation, boot info table) that loads ISOLINUX, which
//	            reads isolinux.cfg, the kernel and the initramfs from the
//	            ISO 9660 file system (/isolinux, /imgforge)
//	MBR         isohdpfx.bin, ISOLINUX's hybrid MBR code, in the first 432
//	            bytes: a BIOS booting the stick runs it, and it loads
//	            ISOLINUX by the block address xorriso patches into it
//
// xorriso writes the ISO. Its times come from the epoch and its GPT GUIDs
// from the inputs, so the same inputs give the same bytes.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"

	"github.com/imgforge/imgforge/pkg/boot"
)

// ISORootPath is where an ISO holds its root image.
const ISORootPath = "/imgforge/root.img"

// ISOLayout is what a hybrid ISO holds.
type ISOLayout struct {
	// VolumeID names the ISO 9660 volume and is how the boot finds its
	// medium: 1 to 32 characters A-Z, 0-9 and '_', such as IMGFORGE_LB.
	VolumeID  string
	ESPFiles  []boot.File // files of the ESP image
	RootImage string      // path of the squashfs followed directly by its hash tree
	Epoch     int64       // SOURCE_DATE_EPOCH
	BIOS      *BIOSBoot   // nil: UEFI only
}

// BIOSBoot is what an ISO needs to boot on a PC BIOS as well.
type BIOSBoot struct {
	Isolinux []byte // isolinux.bin
	Ldlinux  []byte // ldlinux.c32, the rest of ISOLINUX
	MBR      []byte // isohdpfx.bin, the hybrid MBR code
	Kernel   []byte
	Initrd   []byte
	Overlay  []byte // the overlay image's cpio, a second initrd; nil: none
	Cmdline  string
}

// Where a BIOS-booting ISO holds ISOLINUX, its configuration and the boot
// files.
const (
	isolinuxBin     = "/isolinux/isolinux.bin"
	ldlinuxC32      = "/isolinux/ldlinux.c32"
	ISOLinuxConfig  = "/isolinux/isolinux.cfg"
	isolinuxBootCat = "/isolinux/boot.cat"
	ISOKernelPath   = "/imgforge/vmlinuz"
	ISOInitrdPath   = "/imgforge/initrd.img"
	ISOOverlayPath  = "/imgforge/overlay.cpio"
)

// isolinuxConfig boots the kernel straight away, with ISOLINUX's own
// messages on the serial port as well as the screen.
func isolinuxConfig(cmdline string, overlay bool) string {
	initrd := ISOInitrdPath
	if overlay {
		initrd += "," + ISOOverlayPath
	}
	return "SERIAL 0 115200\nDEFAULT imgforge\nPROMPT 0\nTIMEOUT 0\n" +
		"LABEL imgforge\n  KERNEL " + ISOKernelPath + "\n  INITRD " + initrd + "\n  APPEND " + cmdline + "\n"
}

var volumeIDRe = regexp.MustCompile(`^[A-Z0-9_]{1,32}$`)

// ISOCmdline is the kernel command line of an ISO whose volume is
// volumeID: the root image on the ISO, its hash tree in the same file
// right after the squashfs (so hashstart is the squashfs's block count,
// whatever v.HashStart says), no state partition (the overlay is a tmpfs).
func ISOCmdline(base string, v boot.Verity, volumeID string, overlay *boot.Verity) string {
	v.HashStart = v.DataBlocks
	return boot.Cmdline(base, v, boot.Devices{Root: "LABEL=" + volumeID + ":" + ISORootPath, Overlay: overlay})
}

// WriteISO writes the hybrid ISO l describes to path, which must not
// exist; the ESP image is made beside it and removed. It needs xorriso.
func WriteISO(ctx context.Context, path string, l ISOLayout) error {
	if !volumeIDRe.MatchString(l.VolumeID) {
		return fmt.Errorf("ISO volume ID %q: use 1 to 32 characters A-Z, 0-9 and '_'", l.VolumeID)
	}
	if len(l.ESPFiles) == 0 {
		return errors.New("writing an ISO: no ESP files")
	}
	fi, err := os.Stat(l.RootImage)
	if err != nil {
		return fmt.Errorf("reading the root image: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("root image %s is not a file", l.RootImage)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("writing %s: %w", path, os.ErrExist)
	}
	xorriso, err := exec.LookPath("xorriso")
	if err != nil {
		return fmt.Errorf("xorriso is not installed (apt-get install xorriso): %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".iso-")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)

	esp := filepath.Join(tmp, "esp.img")
	if err := WriteESPImage(esp, l.ESPFiles, l.Epoch); err != nil {
		return err
	}
	var mbr string
	var grafts []string // ISO path=file in tmp, for a BIOS boot
	if b := l.BIOS; b != nil {
		if len(b.MBR) < 432 || len(b.Isolinux) == 0 || len(b.Ldlinux) == 0 || len(b.Kernel) == 0 || len(b.Initrd) == 0 {
			return errors.New("writing an ISO: BIOS boot needs isolinux.bin, ldlinux.c32, isohdpfx.bin (432 bytes or more), a kernel and an initramfs")
		}
		if strings.ContainsAny(b.Cmdline, "\n\r") {
			return errors.New("writing an ISO: the kernel command line has a line break")
		}
		files := []struct {
			iso  string
			data []byte
		}{
			{"", b.MBR}, // not a file of the ISO 9660 tree
			{isolinuxBin, b.Isolinux}, {ldlinuxC32, b.Ldlinux}, {ISOLinuxConfig, []byte(isolinuxConfig(b.Cmdline, b.Overlay != nil))},
			{ISOKernelPath, b.Kernel}, {ISOInitrdPath, b.Initrd},
		}
		if b.Overlay != nil {
			files = append(files, struct {
				iso  string
				data []byte
			}{ISOOverlayPath, b.Overlay})
		}
		for i, f := range files {
			local := filepath.Join(tmp, fmt.Sprintf("bios-%d", i))
			if err := os.WriteFile(local, f.data, 0o644); err != nil {
				return fmt.Errorf("writing %s: %w", path, err)
			}
			if f.iso == "" {
				mbr = local
			} else {
				grafts = append(grafts, f.iso+"="+graftEscape(local))
			}
		}
	}
	args := isoArgs(path, esp, l, mbr, grafts)
	cmd := exec.CommandContext(ctx, xorriso, args...)
	cmd.Env = append(withoutEnv(os.Environ(), "SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH="+strconv.FormatInt(l.Epoch, 10))
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(path)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("xorriso writing %s: %w: %s", path, err, xorrisoProblem(out))
	}
	return nil
}

// isoArgs is xorriso's command line for l, with the ESP image at esp and,
// for a BIOS boot (mbr not empty), the MBR code at mbr and the grafts of
// ISOLINUX and the boot files.
func isoArgs(path, esp string, l ISOLayout, mbr string, grafts []string) []string {
	date := time.Unix(l.Epoch, 0).UTC()
	stamp := date.Format("20060102150405") + "00" // YYYYMMDDhhmmsscc, GMT
	var biosBoot []string
	if mbr != "" {
		biosBoot = []string{
			"-isohybrid-mbr", mbr,
			"-c", strings.TrimPrefix(isolinuxBootCat, "/"),
			"-b", strings.TrimPrefix(isolinuxBin, "/"), "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
			"-eltorito-alt-boot",
		}
	}
	args := []string{
		"-no_rc", "-as", "mkisofs",
		"-o", path,
		"-iso-level", "3", "-rational-rock", "-joliet", "-joliet-long",
		"-volid", l.VolumeID, "-appid", "imgforge", "-publisher", "imgforge",
		"--modification-date=" + stamp,
		"--set_all_file_dates", stamp,
		"--gpt_disk_guid", isoDiskGUID(l),
		"-partition_offset", "16",
		"-append_partition", "2", TypeESP, esp,
		"-appended_part_as_gpt",
	}
	args = append(args, biosBoot...)
	args = append(args,
		"-e", "--interval:appended_partition_2:all::", "-no-emul-boot",
		"--boot-catalog-hide",
		"-no-pad",
		"-graft-points", ISORootPath+"="+graftEscape(l.RootImage))
	return append(args, grafts...)
}

// graftEscape escapes what xorriso's -graft-points reads specially in a
// path: '\' and '='.
func graftEscape(p string) string {
	return strings.NewReplacer(`\`, `\\`, "=", `\=`).Replace(p)
}

// isoDiskGUID derives the ISO's GPT disk GUID (xorriso derives the
// partitions' from it) from the volume ID and the ESP's files, whose
// loader entry names the root hash.
func isoDiskGUID(l ISOLayout) string {
	h := sha256.New()
	for _, f := range l.ESPFiles {
		sum := sha256.Sum256(f.Data)
		fmt.Fprintf(h, "%s %s\n", f.Path, hex.EncodeToString(sum[:]))
	}
	return UUID("iso", l.VolumeID, hex.EncodeToString(h.Sum(nil)))
}

func withoutEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// xorrisoProblem picks the line of xorriso's output that says what went
// wrong.
func xorrisoProblem(out []byte) string {
	var last string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		for _, sev := range []string{"FATAL", "FAILURE", "SORRY"} {
			if strings.Contains(line, ": "+sev+" : ") {
				return line
			}
		}
		if line != "" {
			last = line
		}
	}
	return last
}

// ESP image sizes: FAT16 needs at least 4085 clusters and holds at most
// 2 GiB with go-diskfs.
const (
	minESPImage = 8 * mib
	maxESPImage = 2 << 30
)

// ESPImageSize is the size of an ESP image that holds files: their
// sizes rounded up to the largest cluster, a margin for the FATs and
// directories, in whole MiB.
func ESPImageSize(files []boot.File) int64 {
	var n int64
	for _, f := range files {
		n += alignUp(int64(len(f.Data)), 32<<10) + 32<<10
	}
	n += n/32 + mib
	return max(alignUp(n, mib), minESPImage)
}

// WriteESPImage writes an ESP image, a FAT16 file system holding files
// and nothing else, at path, which must not exist. Every time stamp in
// it is epoch.
func WriteESPImage(path string, files []boot.File, epoch int64) error {
	size := ESPImageSize(files)
	if size > maxESPImage {
		return fmt.Errorf("the ESP files need %s, more than an ESP image can hold (%s)", human(size), human(maxESPImage))
	}
	d, err := diskfs.Create(path, size, diskfs.SectorSizeDefault)
	if err != nil {
		return fmt.Errorf("creating the ESP image: %w", err)
	}
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 0, FSType: filesystem.TypeFat16, VolumeLabel: "ESP", Reproducible: true})
	if err != nil {
		d.Close()
		return fmt.Errorf("making the ESP image's FAT file system: %w", err)
	}
	if err := FillFAT(fs, files); err != nil {
		d.Close()
		return err
	}
	if err := d.Close(); err != nil {
		return fmt.Errorf("writing the ESP image: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := FixFAT(f, 0, epoch); err != nil {
		f.Close()
		return fmt.Errorf("writing the ESP image: %w", err)
	}
	return f.Close()
}

// FixFAT corrects, in the FAT file system that starts at byte off of f,
// what go-diskfs v1.9.4 gets wrong, so that fsck.vfat finds nothing to
// fix, and sets every time stamp in it to epoch (UTC; go-diskfs takes
// them from the environment). It frees clusters marked in use that no
// file holds (FAT12/16: cluster 2, taken for a root directory that lives
// outside the data area), points the '..' entry of a directory in the
// root at cluster 0 as the specification asks (FAT32), and fills in the
// FAT32 free-cluster count, and takes the cluster go-diskfs gives an
// empty file back. It only reads what it needs and rewrites
// the FATs, the directories and the FSInfo sector.
func FixFAT(f *os.File, off int64, epoch int64) error {
	v, err := readFAT(f, off)
	if err != nil {
		return err
	}
	used := make([]bool, v.clusters+2)
	// walk goes through the directory data, held in clusters or, for a
	// FAT12/16 root directory, at byte region of f; parentIsRoot says
	// whether its '..' names the root.
	var walk func(clusters []uint32, data []byte, region int64, isRoot, parentIsRoot bool) error
	walk = func(clusters []uint32, data []byte, region int64, isRoot, parentIsRoot bool) error {
		changed := false
		for i := 0; i+32 <= len(data); i += 32 {
			e := data[i : i+32]
			if e[0] == 0 {
				break
			}
			if e[0] == 0xe5 || e[11] == 0x0f { // deleted, long name
				continue
			}
			if stampEntry(e, epoch) {
				changed = true
			}
			name := string(e[:11])
			if name == ".          " {
				continue
			}
			if name == "..         " {
				if parentIsRoot && (binary.LittleEndian.Uint16(e[20:]) != 0 || binary.LittleEndian.Uint16(e[26:]) != 0) {
					binary.LittleEndian.PutUint16(e[20:], 0)
					binary.LittleEndian.PutUint16(e[26:], 0)
					changed = true
				}
				continue
			}
			if e[11]&0x08 != 0 { // volume label
				continue
			}
			start := uint32(binary.LittleEndian.Uint16(e[26:]))
			if v.bits == 32 {
				start |= uint32(binary.LittleEndian.Uint16(e[20:])) << 16
			}
			if e[11]&0x10 == 0 && binary.LittleEndian.Uint32(e[28:]) == 0 && start != 0 {
				// An empty file holds no cluster; go-diskfs gives it one.
				binary.LittleEndian.PutUint16(e[20:], 0)
				binary.LittleEndian.PutUint16(e[26:], 0)
				start, changed = 0, true
			}
			chain, err := v.chain(start, used)
			if err != nil {
				return fmt.Errorf("FAT: %s: %w", strings.TrimSpace(name), err)
			}
			if e[11]&0x10 != 0 {
				sub, err := v.readClusters(f, chain)
				if err != nil {
					return err
				}
				if err := walk(chain, sub, -1, false, isRoot); err != nil {
					return err
				}
			}
		}
		if !changed {
			return nil
		}
		if region >= 0 {
			_, err := f.WriteAt(data, region)
			return err
		}
		return v.writeClusters(f, clusters, data)
	}
	if v.bits == 32 {
		chain, err := v.chain(v.rootCluster, used)
		if err != nil {
			return fmt.Errorf("FAT: root directory: %w", err)
		}
		data, err := v.readClusters(f, chain)
		if err != nil {
			return err
		}
		if err := walk(chain, data, -1, true, false); err != nil {
			return err
		}
	} else {
		data := make([]byte, v.rootSize)
		if _, err := f.ReadAt(data, v.rootStart); err != nil {
			return fmt.Errorf("reading the FAT root directory: %w", err)
		}
		if err := walk(nil, data, v.rootStart, true, false); err != nil {
			return err
		}
	}
	free := uint32(0)
	firstFree := uint32(0xffffffff)
	for c := uint32(2); c < v.clusters+2; c++ {
		x := v.entry(c)
		if x != 0 && !used[c] && x != v.bad {
			v.setEntry(c, 0)
			x = 0
		}
		if x == 0 {
			free++
			firstFree = min(firstFree, c)
		}
	}
	for i := int64(0); i < int64(v.fats); i++ {
		if _, err := f.WriteAt(v.table, v.fatStart+i*int64(len(v.table))); err != nil {
			return fmt.Errorf("writing the FAT: %w", err)
		}
	}
	if v.bits == 32 && v.fsinfo != 0 {
		sectors := []int64{v.fsinfo}
		if v.backupBoot != 0 {
			sectors = append(sectors, v.backupBoot+v.fsinfo)
		}
		for _, sec := range sectors {
			info := make([]byte, 512)
			at := off + sec*v.sectorSize
			if _, err := f.ReadAt(info, at); err != nil {
				return fmt.Errorf("reading the FAT32 FSInfo sector: %w", err)
			}
			if binary.LittleEndian.Uint32(info[0:]) != 0x41615252 || binary.LittleEndian.Uint32(info[484:]) != 0x61417272 {
				continue
			}
			binary.LittleEndian.PutUint32(info[488:], free)
			binary.LittleEndian.PutUint32(info[492:], firstFree)
			if _, err := f.WriteAt(info, at); err != nil {
				return fmt.Errorf("writing the FAT32 FSInfo sector: %w", err)
			}
		}
	}
	return nil
}

// fatVolume is what FixFAT knows of a FAT file system.
type fatVolume struct {
	bits                int // 12, 16 or 32
	sectorSize          int64
	clusterSize         int64
	clusters            uint32 // data clusters, numbered from 2
	fats                int
	fatStart            int64 // byte offsets in the file
	rootStart, rootSize int64 // FAT12/16 root directory
	dataStart           int64
	rootCluster         uint32 // FAT32
	fsinfo, backupBoot  int64  // FAT32, in sectors
	table               []byte // the first FAT
	eoc, bad            uint32
}

func readFAT(f *os.File, off int64) (*fatVolume, error) {
	b := make([]byte, 512)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("reading the FAT boot sector: %w", err)
	}
	if b[510] != 0x55 || b[511] != 0xaa {
		return nil, errors.New("no FAT boot sector: its signature is missing")
	}
	le16 := func(i int) int64 { return int64(binary.LittleEndian.Uint16(b[i:])) }
	le32 := func(i int) int64 { return int64(binary.LittleEndian.Uint32(b[i:])) }
	v := &fatVolume{sectorSize: le16(11), fats: int(b[16])}
	spc := int64(b[13])
	reserved, rootEntries := le16(14), le16(17)
	total, fatSectors := le16(19), le16(22)
	if total == 0 {
		total = le32(32)
	}
	// As Linux and dosfstools do, a zero 16-bit FAT size means FAT32,
	// whatever the cluster count (go-diskfs makes small FAT32s).
	fat32 := fatSectors == 0
	if fat32 {
		fatSectors = le32(36)
	}
	if v.sectorSize == 0 || spc == 0 || v.fats == 0 || fatSectors == 0 {
		return nil, errors.New("not a FAT file system: its boot sector has zero sizes")
	}
	v.clusterSize = spc * v.sectorSize
	rootSectors := (rootEntries*32 + v.sectorSize - 1) / v.sectorSize
	dataSector := reserved + int64(v.fats)*fatSectors + rootSectors
	v.clusters = uint32((total - dataSector) / spc)
	switch {
	case !fat32 && v.clusters < 4085:
		v.bits, v.eoc, v.bad = 12, 0xff8, 0xff7
	case !fat32:
		v.bits, v.eoc, v.bad = 16, 0xfff8, 0xfff7
	default:
		v.bits, v.eoc, v.bad = 32, 0x0ffffff8, 0x0ffffff7
		v.rootCluster = uint32(le32(44))
		v.fsinfo, v.backupBoot = le16(48), le16(50)
	}
	v.fatStart = off + reserved*v.sectorSize
	v.rootStart = v.fatStart + int64(v.fats)*fatSectors*v.sectorSize
	v.rootSize = rootSectors * v.sectorSize
	v.dataStart = off + dataSector*v.sectorSize
	v.table = make([]byte, fatSectors*v.sectorSize)
	if _, err := f.ReadAt(v.table, v.fatStart); err != nil {
		return nil, fmt.Errorf("reading the FAT: %w", err)
	}
	if need := (int64(v.clusters+2)*int64(v.bits) + 7) / 8; need > int64(len(v.table)) {
		return nil, fmt.Errorf("broken FAT file system: %d clusters but room for %d FAT entries", v.clusters, int64(len(v.table))*8/int64(v.bits)-2)
	}
	return v, nil
}

func (v *fatVolume) entry(c uint32) uint32 {
	switch v.bits {
	case 12:
		x := uint32(binary.LittleEndian.Uint16(v.table[c+c/2:]))
		if c%2 == 1 {
			return x >> 4
		}
		return x & 0xfff
	case 16:
		return uint32(binary.LittleEndian.Uint16(v.table[2*c:]))
	}
	return binary.LittleEndian.Uint32(v.table[4*c:]) & 0x0fffffff
}

func (v *fatVolume) setEntry(c, x uint32) {
	switch v.bits {
	case 12:
		i := c + c/2
		old := uint32(binary.LittleEndian.Uint16(v.table[i:]))
		if c%2 == 1 {
			x = old&0x000f | x<<4
		} else {
			x = old&0xf000 | x&0xfff
		}
		binary.LittleEndian.PutUint16(v.table[i:], uint16(x))
	case 16:
		binary.LittleEndian.PutUint16(v.table[2*c:], uint16(x))
	default:
		old := binary.LittleEndian.Uint32(v.table[4*c:])
		binary.LittleEndian.PutUint32(v.table[4*c:], old&0xf0000000|x&0x0fffffff)
	}
}

// chain follows the cluster chain from start, marking it used; 0 is the
// empty chain.
func (v *fatVolume) chain(start uint32, used []bool) ([]uint32, error) {
	var out []uint32
	for c := start; c != 0 && c < v.eoc; c = v.entry(c) {
		if c < 2 || c >= v.clusters+2 {
			return nil, fmt.Errorf("cluster %d is out of range", c)
		}
		if used[c] {
			return nil, fmt.Errorf("cluster %d is used twice", c)
		}
		used[c] = true
		out = append(out, c)
	}
	return out, nil
}

func (v *fatVolume) clusterOffset(c uint32) int64 {
	return v.dataStart + int64(c-2)*v.clusterSize
}

func (v *fatVolume) readClusters(f *os.File, chain []uint32) ([]byte, error) {
	data := make([]byte, int64(len(chain))*v.clusterSize)
	for i, c := range chain {
		if _, err := f.ReadAt(data[int64(i)*v.clusterSize:int64(i+1)*v.clusterSize], v.clusterOffset(c)); err != nil {
			return nil, fmt.Errorf("reading a FAT directory: %w", err)
		}
	}
	return data, nil
}

func (v *fatVolume) writeClusters(f *os.File, chain []uint32, data []byte) error {
	for i, c := range chain {
		if _, err := f.WriteAt(data[int64(i)*v.clusterSize:int64(i+1)*v.clusterSize], v.clusterOffset(c)); err != nil {
			return fmt.Errorf("writing a FAT directory: %w", err)
		}
	}
	return nil
}

// stampEntry sets the times of a directory entry to epoch, reporting
// whether anything changed.
func stampEntry(e []byte, epoch int64) bool {
	t := time.Unix(epoch, 0).UTC()
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if t.Year() > 2107 {
		t = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
	}
	date := uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day())
	clock := uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	tenths := byte(t.Second() % 2 * 100)
	want := make([]byte, 32)
	copy(want, e)
	want[13] = tenths
	binary.LittleEndian.PutUint16(want[14:], clock)
	binary.LittleEndian.PutUint16(want[16:], date)
	binary.LittleEndian.PutUint16(want[18:], date)
	binary.LittleEndian.PutUint16(want[22:], clock)
	binary.LittleEndian.PutUint16(want[24:], date)
	if bytes.Equal(want, e) {
		return false
	}
	copy(e, want)
	return true
}
