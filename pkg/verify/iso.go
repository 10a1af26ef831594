package verify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/imgforge/imgforge/pkg/units"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/imgforge/imgforge/pkg/disk"
	"github.com/imgforge/imgforge/pkg/rootfs"
)

// ISO checks the hybrid ISO at isoPath (see disk.WriteISO) against the
// manifest at manifestPath: its digest, the EFI El Torito entry and the
// GPT ESP partition (one image), the manifest's iso_cmdline (it must be
// disk.ISOCmdline of the ISO's volume ID and the manifest's verity
// parameters), the ESP, whose loader entry must hold it, and the root
// image with its hash tree. A manifest without iso_cmdline stands for
// the one made from its cmdline's part before boot=imgforge. Errors are
// as Raw's.
func ISO(ctx context.Context, isoPath, manifestPath string) (Report, error) {
	r, m, err := newRun(ctx, isoPath, manifestPath, "iso")
	defer r.close()
	if err != nil {
		return *r.report, err
	}
	xorriso, err := exec.LookPath("xorriso")
	if err != nil {
		return *r.report, fmt.Errorf("xorriso is not installed (apt-get install xorriso): it reads ISOs: %w", err)
	}
	f, err := os.Open(isoPath)
	if err != nil {
		return *r.report, fmt.Errorf("reading the image: %w", err)
	}
	defer f.Close()
	v := m.Disk.Verity
	v.HashStart = v.DataBlocks

	r.check(CheckDigest, func() (string, error) { return r.checkDigest(m, "iso") })
	var volumeID string
	var bootLBA int64 = -1
	var hasBIOS bool
	r.check(CheckElTorito, func() (string, error) {
		out, err := exec.CommandContext(r.ctx, xorriso, "-no_rc", "-indev", isoPath, "-report_el_torito", "plain").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("xorriso cannot read the ISO: %s", lastLine(out))
		}
		volumeID, bootLBA, err = parseElTorito(string(out))
		hasBIOS = biosImgLine.MatchString(string(out))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("volume %s, a bootable EFI no-emulation entry at block %d", volumeID, bootLBA), nil
	})
	r.check(CheckProtectiveMBR, func() (string, error) { return checkMBR(f) })
	var esp *gpt.Partition
	r.check(CheckGPT, func() (string, error) {
		t, reason, err := checkGPT(f)
		if err != nil {
			return "", err
		}
		for _, p := range t.Partitions {
			if strings.EqualFold(string(p.Type), disk.TypeESP) {
				esp = p
			}
		}
		if esp == nil {
			return "", errors.New("no partition has the ESP type: the ISO does not boot from a USB stick")
		}
		return reason, nil
	})
	if esp != nil {
		if bootLBA >= 0 {
			r.check(CheckPartition+"esp", func() (string, error) {
				if int64(esp.Start) != bootLBA*4 {
					return "", fmt.Errorf("the ESP partition starts at sector %d but the El Torito boot image at sector %d: a CD and a USB stick would boot different ESPs", esp.Start, bootLBA*4)
				}
				return fmt.Sprintf("partition %d, %s, is the El Torito boot image", esp.Index, units.Bytes(int64(esp.Size))), nil
			})
		}
	}
	want, wantFrom := m.Disk.ISOCmdline, "the manifest's iso_cmdline"
	if want == "" {
		want, wantFrom = disk.ISOCmdline(baseCmdline(m.Disk.Cmdline), m.Disk.Verity, volumeID, m.Disk.OverlayVerity), "the ISO command line made from the manifest's cmdline"
	} else {
		r.check(CheckCmdline, func() (string, error) {
			made := disk.ISOCmdline(baseCmdline(want), m.Disk.Verity, volumeID, m.Disk.OverlayVerity)
			if want != made {
				return "", fmt.Errorf("the manifest's iso_cmdline does not name the ISO's volume %s and the manifest's verity parameters: %s", volumeID, firstDifference(want, made))
			}
			return fmt.Sprintf("names the root image on volume %s and the manifest's verity parameters", volumeID), nil
		})
	}
	if esp != nil {
		r.checkESP(isoPath, esp, want, wantFrom, m.Disk.ISOESPFiles, "iso_esp_files")
	}
	if hasBIOS {
		r.check(CheckBIOSEntry, func() (string, error) { return r.checkBIOS(xorriso, isoPath, want, wantFrom) })
	}

	root := filepath.Join(r.tmp, "root.img")
	if !r.check(CheckRootImage, func() (string, error) {
		out, err := exec.CommandContext(r.ctx, xorriso, "-no_rc", "-osirrox", "on", "-indev", isoPath, "-extract", disk.ISORootPath, root).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("cannot extract %s: %s", disk.ISORootPath, lastLine(out))
		}
		fi, err := os.Stat(root)
		if err != nil {
			return "", fmt.Errorf("the ISO has no %s", disk.ISORootPath)
		}
		if fi.Size()%rootfs.BlockSize != 0 || fi.Size() <= v.DataBlocks*rootfs.BlockSize {
			return "", fmt.Errorf("%s is %d bytes: not the manifest's %d data blocks followed by a hash tree", disk.ISORootPath, fi.Size(), v.DataBlocks)
		}
		return fmt.Sprintf("%s: %s, %d data blocks and a hash tree", disk.ISORootPath, units.Bytes(fi.Size()), v.DataBlocks), nil
	}) {
		return r.result()
	}
	r.checkRoot(root, root, v)
	return r.result()
}

var (
	volumeIDLine = regexp.MustCompile(`(?m)^Volume id\s*:\s*'([^']*)'`)
	biosImgLine  = regexp.MustCompile(`(?m)^El Torito boot img :\s*\d+\s+BIOS\s+y\s`)
	bootImgLine  = regexp.MustCompile(`(?m)^El Torito boot img :\s*(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+\s+\S+\s+(\d+)\s+(\d+)\s*$`)
)

// parseElTorito reads the volume ID and the block of the bootable EFI
// no-emulation boot image from xorriso -report_el_torito plain.
func parseElTorito(out string) (string, int64, error) {
	m := volumeIDLine.FindStringSubmatch(out)
	if m == nil || m[1] == "" {
		return "", 0, errors.New("the ISO has no volume ID: the boot cannot find it")
	}
	volumeID := m[1]
	imgs := bootImgLine.FindAllStringSubmatch(out, -1)
	if len(imgs) == 0 {
		return volumeID, 0, errors.New("the ISO has no El Torito boot image: it does not boot from a CD")
	}
	for _, img := range imgs {
		if img[2] == "UEFI" && img[3] == "y" && img[4] == "none" {
			lba, err := strconv.ParseInt(img[6], 10, 64)
			return volumeID, lba, err
		}
	}
	return volumeID, 0, fmt.Errorf("no El Torito boot image is a bootable EFI no-emulation one (%d images): the ISO does not boot from a CD with UEFI", len(imgs))
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// checkBIOS checks the ISOLINUX configuration of an ISO that boots on a
// BIOS: its kernel command line must be want, and the kernel and the
// initramfs it names must be on the ISO.
func (r *run) checkBIOS(xorriso, isoPath, want, wantFrom string) (string, error) {
	const cfgPath = disk.ISOLinuxConfig
	cfg := filepath.Join(r.tmp, "isolinux.cfg")
	if out, err := exec.CommandContext(r.ctx, xorriso, "-no_rc", "-osirrox", "on", "-indev", isoPath, "-extract", cfgPath, cfg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("the ISO has a BIOS boot entry but no %s: %s", cfgPath, lastLine(out))
	}
	data, err := os.ReadFile(cfg)
	if err != nil {
		return "", err
	}
	keys := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
		if k = strings.ToUpper(k); k == "KERNEL" || k == "INITRD" || k == "APPEND" {
			keys[k] = strings.TrimSpace(v)
		}
	}
	if keys["APPEND"] != want {
		return "", fmt.Errorf("%s: the kernel command line differs from %s: %s", cfgPath, wantFrom, firstDifference(keys["APPEND"], want))
	}
	var sizes []string
	for _, k := range []string{"KERNEL", "INITRD"} {
		if keys[k] == "" {
			return "", fmt.Errorf("%s names no %s", cfgPath, strings.ToLower(k))
		}
		// INITRD may name several files, comma-separated (the overlay
		// image's cpio is the second initrd); each must be on the ISO.
		for _, p := range strings.Split(keys[k], ",") {
			s, err := r.isoFileSize(xorriso, isoPath, cfgPath, strings.ToLower(k), p)
			if err != nil {
				return "", err
			}
			sizes = append(sizes, s)
		}
	}
	return fmt.Sprintf("ISOLINUX boots %s; its command line equals %s", strings.Join(sizes, " and "), wantFrom), nil
}

// isoFileSize says "PATH SIZE" for a file the ISOLINUX configuration
// boots (what names its role), or why it cannot boot it.
func (r *run) isoFileSize(xorriso, isoPath, cfgPath, what, p string) (string, error) {
	out, err := exec.CommandContext(r.ctx, xorriso, "-no_rc", "-indev", isoPath, "-find", p, "-exec", "report_lba").CombinedOutput()
	m := reportLBALine.FindStringSubmatch(string(out))
	if err != nil || m == nil {
		return "", fmt.Errorf("%s boots %s %s, which is not on the ISO", cfgPath, what, p)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	if n == 0 {
		return "", fmt.Errorf("%s boots %s %s, which is empty", cfgPath, what, p)
	}
	return fmt.Sprintf("%s %s", p, units.Bytes(n)), nil
}

// reportLBALine is xorriso's -exec report_lba line: its bytes column.
var reportLBALine = regexp.MustCompile(`(?m)^File data lba:\s+\d+\s*,\s*\d+\s*,\s*\d+\s*,\s*(\d+)\s*,`)
