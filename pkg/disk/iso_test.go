package disk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/qemu"
)

func TestISOCmdline(t *testing.T) {
	v := boot.Verity{RootHash: strings.Repeat("ab", 32), Salt: "5a17", DataBlocks: 100, HashStart: 0}
	tests := []struct {
		name, base, volumeID, want string
	}{
		{"no base", "", "IMGFORGE_LB",
			"boot=imgforge imgforge.root=LABEL=IMGFORGE_LB:/imgforge/root.img imgforge.roothash=" + v.RootHash + " imgforge.salt=5a17 imgforge.blocks=100 imgforge.hashstart=100"},
		{"base", " console=ttyS0 quiet ", "IMGFORGE_DB",
			"console=ttyS0 quiet boot=imgforge imgforge.root=LABEL=IMGFORGE_DB:/imgforge/root.img imgforge.roothash=" + v.RootHash + " imgforge.salt=5a17 imgforge.blocks=100 imgforge.hashstart=100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ISOCmdline(tt.base, v, tt.volumeID, nil); got != tt.want {
				t.Errorf("ISOCmdline =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func needXorriso(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("xorriso"); err != nil {
		t.Skip("xorriso is not installed")
	}
}

// testISOLayout makes small fake inputs: a root image of 10 blocks and
// ESP files with bootloader as BOOTX64.EFI and a kernel of kernelSize
// bytes.
func testISOLayout(t *testing.T, dir string, bootloader []byte, kernelSize int) ISOLayout {
	t.Helper()
	root := filepath.Join(dir, "root.img")
	data := make([]byte, 10*4096)
	for i := range data {
		data[i] = byte(i * 31 / 7)
	}
	if err := os.WriteFile(root, data, 0o644); err != nil {
		t.Fatal(err)
	}
	v := boot.Verity{RootHash: strings.Repeat("0f", 32), Salt: "00", DataBlocks: 8}
	kernel := bytes.Repeat([]byte("kernel "), kernelSize/7+1)[:kernelSize]
	files := boot.ESP(bootloader, boot.Slot{Name: "a", Gen: 1, Title: "imgforge test", Cmdline: ISOCmdline("console=ttyS0", v, "IMGFORGE_TEST", nil), Kernel: kernel, Initrd: []byte("initrd")})
	return ISOLayout{VolumeID: "IMGFORGE_TEST", ESPFiles: files, RootImage: root, Epoch: 1700000000}
}

func TestWriteISO(t *testing.T) {
	needXorriso(t)
	ctx := context.Background()
	dir := t.TempDir()
	l := testISOLayout(t, dir, []byte("not really systemd-boot"), 700000)
	iso := filepath.Join(dir, "test.iso")
	if err := WriteISO(ctx, iso, l); err != nil {
		t.Fatal(err)
	}

	t.Run("el torito", func(t *testing.T) {
		out, err := exec.Command("xorriso", "-no_rc", "-indev", iso, "-report_el_torito", "plain").CombinedOutput()
		if err != nil {
			t.Fatalf("xorriso -report_el_torito: %v\n%s", err, out)
		}
		if !regexp.MustCompile(`(?m)^El Torito boot img :\s+1\s+UEFI\s+y\s+none\s`).Match(out) {
			t.Errorf("no bootable EFI El Torito entry:\n%s", out)
		}
		if !regexp.MustCompile(`(?m)^Volume id\s+:\s+'IMGFORGE_TEST'`).Match(out) {
			t.Errorf("volume id is not IMGFORGE_TEST:\n%s", out)
		}
	})

	var esp *gpt.Partition
	t.Run("gpt", func(t *testing.T) {
		table := readGPT(t, iso)
		if !table.ProtectiveMBR || table.RecoveredFromBackup {
			t.Errorf("protective MBR %v, recovered from backup %v", table.ProtectiveMBR, table.RecoveredFromBackup)
		}
		if want := isoDiskGUID(l); table.GUID != want {
			t.Errorf("disk GUID %s, want %s", table.GUID, want)
		}
		for _, p := range table.Partitions {
			if strings.EqualFold(string(p.Type), TypeESP) {
				esp = p
				if p.Index != 2 {
					t.Errorf("the ESP is partition %d, want 2", p.Index)
				}
			}
		}
		if esp == nil {
			t.Fatalf("no EF00 partition in %+v", table.Partitions)
		}
	})

	t.Run("esp", func(t *testing.T) {
		if esp == nil {
			t.Skip("no ESP")
		}
		img := filepath.Join(t.TempDir(), "esp.img")
		copyRange(t, iso, img, int64(esp.Start)*512, int64(esp.Size))
		if _, err := exec.LookPath("fsck.vfat"); err == nil {
			if out, err := exec.Command("fsck.vfat", "-n", img).CombinedOutput(); err != nil {
				t.Errorf("fsck.vfat -n: %v\n%s", err, out)
			}
		}
		d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		fs, err := d.GetFilesystem(0)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range l.ESPFiles {
			f, err := fs.OpenFile(want.Path, os.O_RDONLY)
			if err != nil {
				t.Errorf("%s: %v", want.Path, err)
				continue
			}
			got, err := io.ReadAll(f)
			f.Close()
			if err != nil || !bytes.Equal(got, want.Data) {
				t.Errorf("%s: %d bytes (%v), want %d", want.Path, len(got), err, len(want.Data))
			}
		}
	})

	t.Run("root image", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "root.img")
		if b, err := exec.Command("xorriso", "-no_rc", "-osirrox", "on", "-indev", iso, "-extract", ISORootPath, out).CombinedOutput(); err != nil {
			t.Fatalf("extracting %s: %v\n%s", ISORootPath, err, b)
		}
		got, _ := os.ReadFile(out)
		want, _ := os.ReadFile(l.RootImage)
		if !bytes.Equal(got, want) {
			t.Errorf("%s on the ISO differs from the root image", ISORootPath)
		}
		ls, _ := exec.Command("xorriso", "-no_rc", "-indev", iso, "-lsl", "/imgforge").CombinedOutput()
		if !regexp.MustCompile(`(?m)^-r--r--r--\s+1\s+0\s+0\s+40960\s+Nov 14\s+2023\s+'root.img'`).Match(ls) {
			t.Errorf("root.img is not read-only, owned by 0:0 and dated 2023-11-14:\n%s", ls)
		}
	})

	t.Run("relative paths and a long volume ID", func(t *testing.T) {
		dir := t.TempDir()
		t.Chdir(dir)
		os.Mkdir("a=b", 0o755)
		if err := os.Link(l.RootImage, filepath.Join("a=b", `root\.img`)); err != nil {
			t.Fatal(err)
		}
		l := l
		l.RootImage, l.VolumeID = filepath.Join("a=b", `root\.img`), "IMGFORGE_"+strings.Repeat("X", 23)
		if err := WriteISO(ctx, "out.iso", l); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("xorriso", "-no_rc", "-indev", "out.iso", "-lsl", ISORootPath).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("40960")) || !bytes.Contains(out, []byte(l.VolumeID)) {
			t.Errorf("xorriso -lsl %s: %v\n%s", ISORootPath, err, out)
		}
		if left, _ := filepath.Glob(".iso-*"); len(left) > 0 {
			t.Errorf("left %v behind", left)
		}
	})

	t.Run("deterministic", func(t *testing.T) {
		// Another time zone, another SOURCE_DATE_EPOCH in the
		// environment and another mtime must change nothing.
		t.Setenv("TZ", "America/New_York")
		t.Setenv("SOURCE_DATE_EPOCH", "1")
		now := time.Now()
		if err := os.Chtimes(l.RootImage, now, now); err != nil {
			t.Fatal(err)
		}
		again := filepath.Join(t.TempDir(), "again.iso")
		if err := WriteISO(ctx, again, l); err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(iso)
		b, _ := os.ReadFile(again)
		if !bytes.Equal(a, b) {
			t.Errorf("two writes of one layout differ (%d and %d bytes)", len(a), len(b))
		}
	})
}

func copyRange(t *testing.T, src, dst string, off, n int64) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, off, n)); err != nil {
		t.Fatal(err)
	}
}

func readGPT(t *testing.T, img string) *gpt.Table {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	table, err := gpt.Read(f, 512, 512)
	if err != nil {
		t.Fatalf("reading the GPT of %s: %v", img, err)
	}
	return table
}

func TestWriteISOErrors(t *testing.T) {
	needXorriso(t)
	dir := t.TempDir()
	good := testISOLayout(t, dir, []byte("boot"), 1000)
	exists := filepath.Join(dir, "exists.iso")
	os.WriteFile(exists, nil, 0o644)
	tests := []struct {
		name   string
		path   string
		change func(*ISOLayout)
		want   string
	}{
		{"lower case volume id", "a.iso", func(l *ISOLayout) { l.VolumeID = "imgforge_lb" }, `ISO volume ID "imgforge_lb": use 1 to 32 characters A-Z, 0-9 and '_'`},
		{"long volume id", "a.iso", func(l *ISOLayout) { l.VolumeID = strings.Repeat("X", 33) }, "use 1 to 32 characters"},
		{"no root image", "a.iso", func(l *ISOLayout) { l.RootImage = filepath.Join(dir, "nope") }, "reading the root image: stat " + filepath.Join(dir, "nope")},
		{"no ESP files", "a.iso", func(l *ISOLayout) { l.ESPFiles = nil }, "no ESP files"},
		{"output exists", exists, func(*ISOLayout) {}, "writing " + exists + ": file already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := good
			tt.change(&l)
			path := tt.path
			if !filepath.IsAbs(path) {
				path = filepath.Join(t.TempDir(), path)
			}
			err := WriteISO(context.Background(), path, l)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want %q", err, tt.want)
			}
			if path != exists {
				if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s was left behind", path)
				}
			}
		})
	}
}

func TestESPImageSize(t *testing.T) {
	tests := []struct {
		name  string
		sizes []int
		want  int64
	}{
		{"nothing", nil, 8 << 20},
		{"small files", []int{10, 1000, 4096}, 8 << 20},
		{"a kernel and an initrd", []int{8 << 20, 40 << 20, 150000}, 51 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var files []boot.File
			var total int64
			for i, n := range tt.sizes {
				files = append(files, boot.File{Path: fmt.Sprintf("/f%d", i), Data: make([]byte, n)})
				total += int64(n)
			}
			got := ESPImageSize(files)
			if got != tt.want || got%mib != 0 || got < total+mib {
				t.Errorf("ESPImageSize = %d, want %d (a whole MiB, at least 1 MiB more than the files' %d bytes)", got, tt.want, total)
			}
		})
	}
}

// TestFixFAT checks that the FAT file systems go-diskfs makes pass
// fsck.vfat once FixFAT has run: the ESP images (FAT16) of several sizes,
// and the FAT32 ESP WriteRaw makes.
func TestFixFAT(t *testing.T) {
	if _, err := exec.LookPath("fsck.vfat"); err != nil {
		t.Skip("fsck.vfat is not installed")
	}
	dir := t.TempDir()
	fsck := func(t *testing.T, img string) {
		t.Helper()
		if out, err := exec.Command("fsck.vfat", "-n", img).CombinedOutput(); err != nil {
			t.Errorf("fsck.vfat -n %s: %v\n%s", img, err, out)
		}
	}
	for _, size := range []int{0, 5 << 20, 40 << 20} {
		t.Run(fmt.Sprintf("esp image %d", size), func(t *testing.T) {
			files := boot.ESP([]byte("boot"), boot.Slot{Name: "a", Gen: 1, Title: "t", Cmdline: "cmdline", Kernel: make([]byte, size), Initrd: []byte("initrd")})
			img := filepath.Join(dir, fmt.Sprintf("esp-%d.img", size))
			if err := WriteESPImage(img, files, 1700000000); err != nil {
				t.Fatal(err)
			}
			fsck(t, img)
		})
	}
	t.Run("raw ESP", func(t *testing.T) {
		root, verity := filepath.Join(dir, "root"), filepath.Join(dir, "verity")
		os.WriteFile(root, make([]byte, 4096), 0o644)
		os.WriteFile(verity, make([]byte, 4096), 0o644)
		raw := filepath.Join(dir, "disk.raw")
		l := Layout{
			Size: 512 << 20, ESPSize: 256 << 20, ESPFiles: boot.ESP([]byte("boot"), boot.Slot{Name: "a", Gen: 1, Title: "t", Cmdline: "cmdline", Kernel: []byte("kernel"), Initrd: []byte("initrd")}),
			Root: root, Verity: verity, RootHash: strings.Repeat("11", 32), Epoch: 1700000000,
			SlotSize: 1 << 20, Label: "t_0123456789ab",
		}
		if _, err := WriteRaw(context.Background(), raw, l); err != nil {
			t.Fatal(err)
		}
		pl, _ := l.Place()
		f, err := os.OpenFile(raw, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := FixFAT(f, int64(pl.ESP[0])*sector, l.Epoch); err != nil {
			t.Fatal(err)
		}
		f.Close()
		esp := filepath.Join(dir, "raw-esp.img")
		copyRange(t, raw, esp, int64(pl.ESP[0])*sector, int64(pl.ESP[1]-pl.ESP[0]+1)*sector)
		fsck(t, esp)
	})
}

// efiApp is the smallest x86-64 UEFI application that shows something:
// it prints msg with ConOut->OutputString and returns EFI_SUCCESS. One
// section, .text, holds the code, msg and an empty base relocation block
// (so that the firmware may load it anywhere).
func efiApp(msg string) []byte {
	const (
		textRVA = 0x1000
		textOff = 0x200
		relocAt = 0x180 // within .text
	)
	img := make([]byte, 0x400)
	le16 := func(at int, v uint16) { binary.LittleEndian.PutUint16(img[at:], v) }
	le32 := func(at int, v uint32) { binary.LittleEndian.PutUint32(img[at:], v) }
	le64 := func(at int, v uint64) { binary.LittleEndian.PutUint64(img[at:], v) }
	copy(img, "MZ")
	le32(0x3c, 0x40)
	copy(img[0x40:], "PE\x00\x00")
	coff := 0x44
	le16(coff, 0x8664) // x86-64
	le16(coff+2, 1)    // sections
	le16(coff+16, 240) // optional header size
	le16(coff+18, 0x22)
	opt := coff + 20
	le16(opt, 0x20b) // PE32+
	le32(opt+4, 0x200)
	le32(opt+16, textRVA) // entry point
	le32(opt+20, textRVA)
	le64(opt+24, 0x10000000) // image base
	le32(opt+32, 0x1000)     // section alignment
	le32(opt+36, 0x200)      // file alignment
	le32(opt+56, 0x2000)     // size of image
	le32(opt+60, 0x200)      // size of headers
	le16(opt+68, 10)         // EFI application
	le64(opt+72, 0x10000)
	le64(opt+80, 0x10000)
	le64(opt+88, 0x10000)
	le64(opt+96, 0x10000)
	le32(opt+108, 16)                  // data directories
	le32(opt+112+5*8, textRVA+relocAt) // base relocations
	le32(opt+112+5*8+4, 12)
	sec := opt + 240
	copy(img[sec:], ".text")
	le32(sec+8, 0x200)
	le32(sec+12, textRVA)
	le32(sec+16, 0x200)
	le32(sec+20, textOff)
	le32(sec+36, 0x60000020) // code, execute, read
	code := []byte{
		0x48, 0x83, 0xec, 0x28, // sub rsp, 40
		0x48, 0x8b, 0x4a, 0x40, // mov rcx, [rdx+64]: SystemTable->ConOut
		0x48, 0x8d, 0x15, 0x0a, 0x00, 0x00, 0x00, // lea rdx, [rip+10]: msg
		0xff, 0x51, 0x08, // call [rcx+8]: OutputString
		0x48, 0x83, 0xc4, 0x28, // add rsp, 40
		0x31, 0xc0, // xor eax, eax
		0xc3, // ret
	}
	copy(img[textOff:], code)
	for i, r := range utf16.Encode([]rune(msg + "\r\n")) {
		le16(textOff+len(code)+2*i, r)
	}
	le32(textOff+relocAt, textRVA) // page
	le32(textOff+relocAt+4, 12)    // block size; two ABSOLUTE (no-op) entries follow
	return img
}

// TestISOBoot boots an ISO in QEMU with OVMF, as a CD (El Torito) and as
// a disk (the GPT ESP, as from a USB stick), with a tiny EFI application
// as BOOTX64.EFI that prints a line on the console.
// hostBIOS reads ISOLINUX from the host's isolinux and syslinux-common
// packages (hack/setup.sh installs them) for a BIOSBoot with a fake kernel.
func hostBIOS(t *testing.T) *BIOSBoot {
	t.Helper()
	read := func(p string) []byte {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Skipf("ISOLINUX is not installed (apt-get install isolinux syslinux-common): %v", err)
		}
		return data
	}
	return &BIOSBoot{
		Isolinux: read("/usr/lib/ISOLINUX/isolinux.bin"),
		MBR:      read("/usr/lib/ISOLINUX/isohdpfx.bin"),
		Ldlinux:  read("/usr/lib/syslinux/modules/bios/ldlinux.c32"),
		Kernel:   []byte("not a kernel"), Initrd: []byte("initrd"),
		Cmdline: "console=ttyS0 imgforge.test=1",
	}
}

func TestWriteISOBIOS(t *testing.T) {
	needXorriso(t)
	dir := t.TempDir()
	l := testISOLayout(t, dir, []byte("not really systemd-boot"), 7000)
	l.BIOS = hostBIOS(t)
	iso := filepath.Join(dir, "bios.iso")
	if err := WriteISO(context.Background(), iso, l); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("xorriso", "-no_rc", "-indev", iso, "-report_el_torito", "plain").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso -report_el_torito: %v\n%s", err, out)
	}
	for _, re := range []string{`(?m)^El Torito boot img :\s+1\s+BIOS\s+y\s+none\s`, `(?m)^El Torito boot img :\s+2\s+UEFI\s+y\s+none\s`, `(?m)^El Torito img path :\s+1\s+/isolinux/isolinux.bin`} {
		if !regexp.MustCompile(re).Match(out) {
			t.Errorf("no match for %s in:\n%s", re, out)
		}
	}
	data, err := os.ReadFile(iso)
	if err != nil {
		t.Fatal(err)
	}
	// The MBR's code is isohdpfx.bin's, and the GPT with its ESP is still
	// there for UEFI.
	if !bytes.Equal(data[:0x180], l.BIOS.MBR[:0x180]) {
		t.Error("the first sector does not start with isohdpfx.bin's code")
	}
	table := readGPT(t, iso)
	if len(table.Partitions) != 2 || !strings.EqualFold(string(table.Partitions[1].Type), TypeESP) {
		t.Errorf("partitions %+v, want the root and the ESP", table.Partitions)
	}
	for path, want := range map[string][]byte{
		ISOLinuxConfig: []byte(isolinuxConfig(l.BIOS.Cmdline, l.BIOS.Overlay != nil)),
		ISOKernelPath:  l.BIOS.Kernel, ISOInitrdPath: l.BIOS.Initrd,
		ldlinuxC32: l.BIOS.Ldlinux,
	} {
		got := filepath.Join(t.TempDir(), "x")
		if b, err := exec.Command("xorriso", "-no_rc", "-osirrox", "on", "-indev", iso, "-extract", path, got).CombinedOutput(); err != nil {
			t.Errorf("extracting %s: %v\n%s", path, err, b)
			continue
		}
		if b, _ := os.ReadFile(got); !bytes.Equal(b, want) {
			t.Errorf("%s on the ISO differs", path)
		}
	}
	again := filepath.Join(dir, "again.iso")
	if err := WriteISO(context.Background(), again, l); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(again); !bytes.Equal(b, data) {
		t.Error("two writes of one BIOS layout differ")
	}
	bad := *l.BIOS
	bad.Cmdline = "a\nDEFAULT other"
	l.BIOS = &bad
	if err := WriteISO(context.Background(), filepath.Join(dir, "bad.iso"), l); err == nil || !strings.Contains(err.Error(), "line break") {
		t.Errorf("a command line with a line break: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.iso")); err == nil {
		t.Error("bad.iso was written")
	}
}

func TestISOBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots machines; not in -short mode")
	}
	needXorriso(t)
	if _, err := qemu.FindQEMU(); err != nil {
		t.Skip(err)
	}
	fw, err := qemu.FindFirmware()
	if err != nil {
		t.Skip(err)
	}
	t.Setenv("TMPDIR", t.TempDir())
	const msg = "IMGFORGE EFI TEST APPLICATION RUNS"
	// El Torito counts a boot image's size in 512-byte sectors in 16
	// bits, up to 32 MiB: in the big ESP image, BOOTX64.EFI lies beyond
	// that, after a 40 MiB file.
	// A BIOS (SeaBIOS: no firmware given) runs ISOLINUX, which reads its
	// configuration and tries the (fake) kernel: as far as it can go.
	biosMsg := regexp.MustCompile(`Loading /imgforge/vmlinuz\.\.\. ok`)
	for _, tt := range []struct {
		name     string
		pad      int
		media    string
		withBIOS bool // the ISO carries the BIOS boot too
		seaBIOS  bool // booted by SeaBIOS, not OVMF
	}{
		{"cdrom", 0, qemu.MediaCDROM, false, false},
		{"disk", 0, qemu.MediaDisk, false, false},
		{"cdrom with a 41 MiB ESP", 40 << 20, qemu.MediaCDROM, false, false},
		{"disk with a 41 MiB ESP", 40 << 20, qemu.MediaDisk, false, false},
		{"cdrom, UEFI, with BIOS boot too", 0, qemu.MediaCDROM, true, false},
		{"cdrom, BIOS", 0, qemu.MediaCDROM, true, true},
		{"disk, BIOS", 0, qemu.MediaDisk, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := testISOLayout(t, t.TempDir(), efiApp(msg), 1000)
			if tt.pad > 0 {
				l.ESPFiles = append([]boot.File{{Path: "/PAD/PAD.BIN", Data: make([]byte, tt.pad)}}, l.ESPFiles...)
			}
			if tt.withBIOS {
				l.BIOS = hostBIOS(t)
			}
			iso := filepath.Join(t.TempDir(), "boot.iso")
			if err := WriteISO(context.Background(), iso, l); err != nil {
				t.Fatal(err)
			}
			media := tt.media
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			m := qemu.Machine{
				Name: "iso-" + media, MemoryMiB: 256, Accel: qemu.AccelTCG, Firmware: fw,
				Disks: []qemu.Disk{{Path: iso, Media: media, ReadOnly: true}},
			}
			want := regexp.MustCompile(regexp.QuoteMeta(msg))
			if tt.seaBIOS {
				m.Firmware, want = qemu.Firmware{}, biosMsg
			}
			vm, err := qemu.Start(ctx, &m)
			if err != nil {
				t.Fatal(err)
			}
			defer vm.Kill()
			if _, err := vm.WaitFor(ctx, want); err != nil {
				t.Fatalf("%s did not show from the %s: %v\n%s", want, media, err, strings.Join(vm.Console.Tail(20), "\n"))
			}
		})
	}
}
