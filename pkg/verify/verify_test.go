package verify

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/verify/verifytest"
)

// The fixtures are made once and copied for each case.
var (
	rawOnce, isoOnce     sync.Once
	rawFixture, isoFixed verifytest.Image
	fixtureDir           string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "verify-test-")
	if err != nil {
		panic(err)
	}
	fixtureDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func rawImage(t *testing.T) verifytest.Image {
	t.Helper()
	verifytest.NeedTools(t, false)
	rawOnce.Do(func() {
		dir := filepath.Join(fixtureDir, "raw")
		os.Mkdir(dir, 0o755)
		rawFixture = verifytest.Raw(t, dir)
	})
	if rawFixture.Path == "" {
		t.Fatal("making the raw fixture failed")
	}
	return rawFixture.Copy(t, t.TempDir())
}

func isoImage(t *testing.T) verifytest.Image {
	t.Helper()
	verifytest.NeedTools(t, true)
	isoOnce.Do(func() {
		dir := filepath.Join(fixtureDir, "iso")
		os.Mkdir(dir, 0o755)
		isoFixed = verifytest.ISO(t, dir)
	})
	if isoFixed.Path == "" {
		t.Fatal("making the ISO fixture failed")
	}
	return isoFixed.Copy(t, t.TempDir())
}

// squashfsEnd is where the squashfs of an image ends: the byte after it
// is padding up to the next 4096, covered by the hash tree but read by
// no squashfs reader.
func squashfsEnd(t *testing.T, im verifytest.Image) int64 {
	t.Helper()
	f, err := os.Open(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 8)
	if _, err := f.ReadAt(b, im.RootOffset+40); err != nil {
		t.Fatal(err)
	}
	used := int64(binary.LittleEndian.Uint64(b))
	if used%4096 == 0 {
		t.Fatalf("the test squashfs is %d bytes, a multiple of 4096: no padding to change", used)
	}
	return im.RootOffset + used
}

var rawChecks = []string{
	CheckDigest, CheckProtectiveMBR, CheckGPT, "partition-esp", "partition-root", "partition-verity", "partition-state",
	CheckLabels, CheckSlotB, CheckStateFS, CheckCmdline, CheckESPFsck, CheckESPFiles, CheckLoaderEntry, CheckRootImage, CheckSquashfs, CheckVerity,
}

func TestRaw(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, im verifytest.Image)
		first  string // the first failed check; empty: none fails
		reason string // in its reason
	}{
		{"good", nil, "", ""},
		{"changed image", func(t *testing.T, im verifytest.Image) {
			im.Flip(t, im.RootOffset+100)
		}, CheckDigest, "the manifest's test.raw says"},
		{"no raw output in the manifest", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.Outputs[0].Format = "qcow2" })
		}, CheckDigest, "the manifest lists no raw output"},
		{"one byte of the root", func(t *testing.T, im verifytest.Image) {
			im.Flip(t, squashfsEnd(t, im))
			im.UpdateDigest(t)
		}, CheckVerity, "the root filesystem does not match its root hash"},
		{"squashfs superblock", func(t *testing.T, im verifytest.Image) {
			im.Flip(t, im.RootOffset)
			im.UpdateDigest(t)
		}, CheckSquashfs, "no squashfs superblock (hsqs) at the start of the root"},
		{"wrong cmdline", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.Cmdline += " quiet" })
		}, CheckLoaderEntry, `the loader entry's options differ from the manifest's cmdline: word 11: missing "quiet"`},
		{"wrong root hash", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.Verity.RootHash = strings.Repeat("0", 64) })
		}, CheckCmdline, "the manifest's cmdline has imgforge.roothash="},
		{"different partition UUID", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.Partitions.Root = "0B1C5D27-1E4F-4B4A-9F5E-4E4D2C6A7B8C" })
		}, "partition-root", "partition 2 has UUID "},
		{"different disk GUID", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.Partitions.Disk = "0B1C5D27-1E4F-4B4A-9F5E-4E4D2C6A7B8C" })
		}, CheckGPT, "the manifest says 0B1C5D27-1E4F-4B4A-9F5E-4E4D2C6A7B8C"},
		{"damaged primary GPT", func(t *testing.T, im verifytest.Image) {
			im.Flip(t, 2*512+100) // in the partition entries
			im.UpdateDigest(t)
		}, CheckGPT, "the primary GPT is damaged: the GPT entries at sector 2 fail their CRC"},
		{"damaged backup GPT", func(t *testing.T, im verifytest.Image) {
			fi, _ := os.Stat(im.Path)
			im.Flip(t, fi.Size()-512+60) // the backup header's disk GUID
			im.UpdateDigest(t)
		}, CheckGPT, "the backup GPT is damaged"},
		{"no protective MBR", func(t *testing.T, im verifytest.Image) {
			im.Flip(t, 446+4)
			im.UpdateDigest(t)
		}, CheckProtectiveMBR, "not 0xEE"},
		{"damaged ESP", func(t *testing.T, im verifytest.Image) {
			// The FAT32 ESP's first FAT (after 32 reserved sectors):
			// the entry of cluster 3, which holds a file.
			im.Flip(t, im.ESPOffset+32*512+3*4)
			im.UpdateDigest(t)
		}, CheckESPFsck, "fsck.vfat -n finds the ESP damaged"},
		// Issue 11, finding 9: the ESP's files were only sized.
		{"one byte of the kernel on the ESP", func(t *testing.T, im verifytest.Image) {
			flipAll(t, im, []byte("fake kernel"))
			im.UpdateDigest(t)
		}, CheckESPFiles, "/imgforge/a/vmlinuz on the ESP (11 bytes) has sha256:"},
		{"one byte of the loader on the ESP", func(t *testing.T, im verifytest.Image) {
			flipAll(t, im, []byte("fake systemd-boot"))
			im.UpdateDigest(t)
		}, CheckESPFiles, "/EFI/BOOT/BOOTX64.EFI on the ESP (17 bytes) has sha256:"},
		{"another digest in the manifest", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.ESPFiles["/imgforge/a/initrd.img"] = "sha256:00" })
		}, CheckESPFiles, "the manifest's esp_files says sha256:00"},
		{"no ESP digests in the manifest", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.ESPFiles = nil })
		}, CheckESPFiles, "the manifest records no digests of the ESP's files (esp_files)"},
		// Issue 13: two slots, a prebuilt state file system.
		{"slot B updated to another version", func(t *testing.T, im verifytest.Image) {
			relabel(t, im, "test_fedcba987654", "test_fedcba987654", true)
		}, "", ""},
		{"slot B of another role", func(t *testing.T, im verifytest.Image) {
			relabel(t, im, "other_fedcba987654", "other_fedcba987654", true)
		}, CheckSlotB, `slot B holds role other (label "other_fedcba987654"); the disk is role test's`},
		{"slot B labels differ", func(t *testing.T, im verifytest.Image) {
			relabel(t, im, "_empty", "test_fedcba987654", false)
		}, CheckSlotB, `slot B's root is labelled "_empty" and its verity "test_fedcba987654"`},
		{"slot B labelled with no version", func(t *testing.T, im verifytest.Image) {
			relabel(t, im, "root-x86-64", "root-x86-64", false)
		}, CheckSlotB, `slot B is labelled "root-x86-64": neither _empty nor ROLE_VERSION`},
		{"slot B with slot A's UUIDs", func(t *testing.T, im verifytest.Image) {
			relabelUUID(t, im)
		}, CheckSlotB, "slot B's partitions have slot A's UUIDs"},
		{"empty slot B holds data", func(t *testing.T, im verifytest.Image) {
			im.Flip(t, im.RootBOffset+verifytest.SlotSize-1)
			im.UpdateDigest(t)
		}, CheckSlotB, fmt.Sprintf("slot B is labelled _empty but byte %d of the slot is not zero", verifytest.SlotSize-1)},
		{"another empty slot B UUID in the manifest", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.Partitions.VerityB = "0B1C5D27-1E4F-4B4A-9F5E-4E4D2C6A7B8C" })
		}, CheckSlotB, "empty slot B's partition 5 has UUID "},
		{"slot A label in the manifest", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.Layout.Labels.RootA = "test_fedcba987654" })
		}, "partition-root", `partition 2 is labelled "test_0123456789ab"; the manifest says "test_fedcba987654"`},
		{"another version in the manifest", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.ImageDigest = "sha256:fedcba9876543210" })
		}, CheckLabels, "are not those of role test version fedcba987654"},
		{"no layout in the manifest", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.Layout = nil })
		}, CheckLayout, "the manifest has no disk layout"},
		{"state file system UUID", func(t *testing.T, im verifytest.Image) {
			im.Flip(t, im.StateOffset+1024+0x68)
			im.UpdateDigest(t)
		}, CheckStateFS, "the state file system has UUID "},
		{"no state file system", func(t *testing.T, im verifytest.Image) {
			im.Flip(t, im.StateOffset+1024+0x38)
			im.UpdateDigest(t)
		}, CheckStateFS, "the state partition holds no ext4 file system"},
		{"damaged state file system", func(t *testing.T, im verifytest.Image) {
			// The first group descriptor (block 1): its block bitmap's address.
			im.Flip(t, im.StateOffset+4096)
			im.UpdateDigest(t)
		}, CheckStateFS, "e2fsck -fn finds the state file system damaged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			im := rawImage(t)
			if tt.change != nil {
				tt.change(t, im)
			}
			r, err := Raw(context.Background(), im.Path, im.Manifest)
			checkReport(t, r, err, im.Path, tt.first, tt.reason)
			if tt.first == "" {
				var names []string
				for _, c := range r.Checks {
					names = append(names, c.Name)
				}
				if strings.Join(names, " ") != strings.Join(rawChecks, " ") {
					t.Errorf("checks %v, want %v", names, rawChecks)
				}
			}
		})
	}
}

func checkReport(t *testing.T, r Report, err error, image, first, reason string) {
	t.Helper()
	for _, c := range r.Checks {
		if strings.Contains(c.Reason, "\n") || c.Reason == "" {
			t.Errorf("check %s has reason %q: want one line", c.Name, c.Reason)
		}
	}
	if first == "" {
		if err != nil || !r.OK() {
			t.Fatalf("verify failed: %v\n%+v", err, r.Checks)
		}
		return
	}
	if err == nil || !errors.Is(err, ErrFailed) {
		t.Fatalf("error %v; want one wrapping ErrFailed\n%+v", err, r.Checks)
	}
	failed := r.Failed()
	if len(failed) == 0 || failed[0].Name != first || !strings.Contains(failed[0].Reason, reason) {
		t.Fatalf("first failed check %+v; want %s with %q\nall: %+v", failed, first, reason, r.Checks)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, image+": verification failed: "+first+": ") || strings.Contains(msg, "\n") {
		t.Errorf("error %q: want one line naming %s and the check %s", msg, image, first)
	}
}

func TestRawErrors(t *testing.T) {
	im := rawImage(t)
	dir := t.TempDir()
	noDisk := filepath.Join(dir, "no-disk.json")
	os.WriteFile(noDisk, []byte(`{"role": "lb", "outputs": []}`), 0o644)
	broken := filepath.Join(dir, "broken.json")
	os.WriteFile(broken, []byte(`{"disk": `), 0o644)
	tests := []struct {
		name, image, manifest, want string
	}{
		{"no manifest", im.Path, filepath.Join(dir, "nope.json"), "reading the manifest: open " + filepath.Join(dir, "nope.json")},
		{"no disk section", im.Path, noDisk, "manifest " + noDisk + " has no disk section"},
		{"broken manifest", im.Path, broken, "manifest " + broken + ": unexpected end of JSON input"},
		{"no image", filepath.Join(dir, "nope.raw"), im.Manifest, "reading the image: stat " + filepath.Join(dir, "nope.raw")},
		{"a folder", dir, im.Manifest, "image " + dir + " is not a file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Raw(context.Background(), tt.image, tt.manifest)
			if err == nil || errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want %q", err, tt.want)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Raw(ctx, im.Path, im.Manifest); !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v; want context.Canceled", err)
		}
	})
}

func TestISO(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, im verifytest.Image)
		first  string
		reason string
	}{
		{"good", nil, "", ""},
		{"changed image", func(t *testing.T, im verifytest.Image) {
			im.Flip(t, im.RootOffset+100)
		}, CheckDigest, "the manifest's test.iso says"},
		{"one byte of the root", func(t *testing.T, im verifytest.Image) {
			im.Flip(t, squashfsEnd(t, im))
			im.UpdateDigest(t)
		}, CheckVerity, "the root filesystem does not match its root hash"},
		{"wrong cmdline", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) {
				m.Disk.ISOCmdline = strings.Replace(m.Disk.ISOCmdline, verifytest.BaseCmdline, "console=tty0", 1)
			})
		}, CheckLoaderEntry, `the loader entry's options differ from the manifest's iso_cmdline: word 1: "console=ttyS0", want "console=tty0"`},
		{"another volume in the cmdline", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) {
				m.Disk.ISOCmdline = strings.Replace(m.Disk.ISOCmdline, verifytest.VolumeID, "IMGFORGE_LB", 1)
			})
		}, CheckCmdline, `does not name the ISO's volume IMGFORGE_TEST and the manifest's verity parameters: word 3: "imgforge.root=LABEL=IMGFORGE_LB:/imgforge/root.img"`},
		{"wrong salt", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.Verity.Salt = strings.Repeat("1", 64) })
		}, CheckCmdline, "imgforge.salt="},
		{"another BIOS command line", func(t *testing.T, im verifytest.Image) {
			data, err := os.ReadFile(im.Path)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(data, []byte("APPEND "+verifytest.BaseCmdline))
			if i < 0 {
				t.Fatal("no isolinux.cfg APPEND line in the ISO")
			}
			im.Flip(t, int64(i+len("APPEND ")))
			im.UpdateDigest(t)
		}, CheckBIOSEntry, `/isolinux/isolinux.cfg: the kernel command line differs from the manifest's iso_cmdline: word 1:`},
		{"a manifest without iso_cmdline", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) {
				m.Disk.Cmdline = verifytest.BaseCmdline + " boot=imgforge imgforge.root=PARTUUID=x"
				m.Disk.ISOCmdline = ""
			})
		}, "", ""},
		{"a manifest without iso_cmdline, another base", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) {
				m.Disk.Cmdline = "quiet boot=imgforge imgforge.root=PARTUUID=x"
				m.Disk.ISOCmdline = ""
			})
		}, CheckLoaderEntry, `differ from the ISO command line made from the manifest's cmdline: word 1: "console=ttyS0", want "quiet"`},
		{"one byte of the kernel", func(t *testing.T, im verifytest.Image) {
			flipAll(t, im, []byte("fake kernel"))
			im.UpdateDigest(t)
		}, CheckESPFiles, "/imgforge/a/vmlinuz on the ESP (11 bytes) has sha256:"},
		{"another loader entry digest", func(t *testing.T, im verifytest.Image) {
			im.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.ISOESPFiles["/loader/entries/imgforge-0001-a.conf"] = "sha256:00" })
		}, CheckESPFiles, "/loader/entries/imgforge-0001-a.conf on the ESP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			im := isoImage(t)
			if tt.change != nil {
				tt.change(t, im)
			}
			r, err := ISO(context.Background(), im.Path, im.Manifest)
			checkReport(t, r, err, im.Path, tt.first, tt.reason)
			if tt.first == "" && len(r.Checks) < 12 {
				t.Errorf("%d checks ran, want at least 12: %+v", len(r.Checks), r.Checks)
			}
		})
	}
}

func TestParseElTorito(t *testing.T) {
	const efi = "El Torito boot img :   1  UEFI  y   none  0x0000  0x00  16384          75\n"
	const bios = "El Torito boot img :   1  BIOS  y   none  0x0000  0x00      4          33\n"
	tests := []struct {
		name, out, volumeID string
		lba                 int64
		err                 string
	}{
		{"efi", "Volume id    : 'IMGFORGE_LB'\n" + efi, "IMGFORGE_LB", 75, ""},
		{"bios and efi", "Volume id    : 'X'\n" + strings.Replace(bios, "   1", "   1", 1) + strings.Replace(efi, "   1  UEFI", "   2  UEFI", 1), "X", 75, ""},
		{"bios only", "Volume id    : 'X'\n" + bios, "X", 0, "no El Torito boot image is a bootable EFI no-emulation one (1 images)"},
		{"no el torito", "Volume id    : 'X'\n", "X", 0, "the ISO has no El Torito boot image"},
		{"no volume id", efi, "", 0, "the ISO has no volume ID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, lba, err := parseElTorito(tt.out)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v; want %q", err, tt.err)
				}
				return
			}
			if err != nil || id != tt.volumeID || lba != tt.lba {
				t.Errorf("parseElTorito = %q, %d, %v; want %q, %d", id, lba, err, tt.volumeID, tt.lba)
			}
		})
	}
}

func TestCmdlineHelpers(t *testing.T) {
	tests := []struct {
		cmdline, base string
	}{
		{"console=ttyS0 boot=imgforge imgforge.root=X", "console=ttyS0"},
		{"boot=imgforge imgforge.root=X", ""},
		{"a b  c boot=imgforge", "a b  c"},
	}
	for _, tt := range tests {
		if got := baseCmdline(tt.cmdline); got != tt.base {
			t.Errorf("baseCmdline(%q) = %q, want %q", tt.cmdline, got, tt.base)
		}
	}
	diffs := []struct{ got, want, say string }{
		{"a b c", "a b c d", `word 4: missing "d"`},
		{"a b c d", "a b c", `word 4: "d" is extra`},
		{"a x c", "a b c", `word 2: "x", want "b"`},
	}
	for _, d := range diffs {
		if got := firstDifference(d.got, d.want); got != d.say {
			t.Errorf("firstDifference(%q, %q) = %q, want %q", d.got, d.want, got, d.say)
		}
	}
}

// flipAll inverts the first byte of every copy of b in the image: the
// content changes, its size does not.
func flipAll(t *testing.T, im verifytest.Image, b []byte) {
	t.Helper()
	data, err := os.ReadFile(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for off := 0; ; {
		i := bytes.Index(data[off:], b)
		if i < 0 {
			break
		}
		im.Flip(t, int64(off+i))
		off += i + len(b)
		n++
	}
	if n == 0 {
		t.Fatalf("%q is not in the image", b)
	}
}

// relabel writes slot B's GPT entries as an update does: both labels,
// and (newUUIDs) partition UUIDs of a new root hash, in the primary and
// the backup GPT.
func relabel(t *testing.T, im verifytest.Image, root, verity string, newUUIDs bool) {
	t.Helper()
	editGPT(t, im, func(tb *gpt.Table) {
		tb.Partitions[3].Name, tb.Partitions[4].Name = root, verity
		if newUUIDs {
			tb.Partitions[3].GUID, tb.Partitions[4].GUID = "1B1C5D27-1E4F-4B4A-9F5E-4E4D2C6A7B8C", "2B1C5D27-1E4F-4B4A-9F5E-4E4D2C6A7B8C"
		}
	})
}

func relabelUUID(t *testing.T, im verifytest.Image) {
	t.Helper()
	editGPT(t, im, func(tb *gpt.Table) {
		tb.Partitions[3].Name, tb.Partitions[4].Name = "test_fedcba987654", "test_fedcba987654"
		tb.Partitions[3].GUID, tb.Partitions[4].GUID = tb.Partitions[1].GUID, tb.Partitions[2].GUID
	})
}

func editGPT(t *testing.T, im verifytest.Image, edit func(*gpt.Table)) {
	t.Helper()
	f, err := os.OpenFile(im.Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tb, err := gpt.Read(f, 512, 512)
	if err != nil {
		t.Fatal(err)
	}
	edit(tb)
	fi, _ := f.Stat()
	if err := tb.Write(f, fi.Size()); err != nil {
		t.Fatal(err)
	}
	f.Close()
	im.UpdateDigest(t)
}

// TestVerifyUKI: on the disk of a Secure Boot build, the loader-entry
// check reads the command line from slot A's unified kernel image; one
// that differs from the manifest's fails, naming the UKI.
func TestVerifyUKI(t *testing.T) {
	verifytest.NeedTools(t, false)
	im := verifytest.RawUKI(t, t.TempDir())
	r, err := Raw(context.Background(), im.Path, im.Manifest)
	checkReport(t, r, err, im.Path, "", "")
	for _, c := range r.Checks {
		if c.Name == CheckLoaderEntry && !strings.Contains(c.Reason, "efi /imgforge/a/imgforge.efi, a unified kernel image whose command line equals the manifest's cmdline") {
			t.Errorf("loader-entry: %s", c.Reason)
		}
	}
	im.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.Cmdline += " quiet" })
	r, err = Raw(context.Background(), im.Path, im.Manifest)
	checkReport(t, r, err, im.Path, CheckLoaderEntry, `the command line of /imgforge/a/imgforge.efi differs from the manifest's cmdline: word 11: missing "quiet"`)
}
