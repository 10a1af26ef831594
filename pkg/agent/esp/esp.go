// Package esp is what the agent knows of the EFI system partition it
// booted from: which partition it is (systemd-boot's LoaderDevicePartUUID
// EFI variable), whether this boot is counted (LoaderBootCountPath: the
// entry has tries left, and systemd-bless-boot marks it good once
// boot-complete.target is reached), and how to mount it so that
// systemd-bless-boot, which looks for the ESP at /efi, /boot or
// /boot/efi, can rename the entry.
package esp

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf16"

	"golang.org/x/sys/unix"
)

// EFIVars is where efivarfs is mounted.
const EFIVars = "/sys/firmware/efi/efivars"

// systemd-boot's vendor GUID (the Boot Loader Interface).
const loaderGUID = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f"

var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ErrNoLoader means the machine was not booted by systemd-boot (an ISO
// with ISOLINUX, a netboot, a container).
var ErrNoLoader = errors.New("not booted by systemd-boot (no LoaderDevicePartUUID EFI variable)")

// readVar reads a systemd-boot EFI variable from dir as a string: four
// bytes of attributes, then UTF-16LE text, NUL-terminated.
func readVar(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name+"-"+loaderGUID))
	if err != nil {
		return "", err
	}
	if len(b) < 4 || len(b)%2 != 0 {
		return "", fmt.Errorf("EFI variable %s: %d bytes, not attributes and UTF-16 text", name, len(b))
	}
	u := make([]uint16, 0, (len(b)-4)/2)
	for i := 4; i+1 < len(b); i += 2 {
		c := uint16(b[i]) | uint16(b[i+1])<<8
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u)), nil
}

// PartUUID is the PARTUUID (lower case) of the partition systemd-boot
// was started from, read from the EFI variables in dir.
func PartUUID(dir string) (string, error) {
	s, err := readVar(dir, "LoaderDevicePartUUID")
	if errors.Is(err, os.ErrNotExist) {
		return "", ErrNoLoader
	}
	if err != nil {
		return "", err
	}
	s = strings.ToLower(strings.TrimSpace(s))
	if !uuidRe.MatchString(s) {
		return "", fmt.Errorf("EFI variable LoaderDevicePartUUID is not a UUID (%d characters)", len(s))
	}
	return s, nil
}

// Counted says whether this boot came from an entry with boot counting
// (systemd-boot set LoaderBootCountPath): one that has not been marked
// good yet, and falls back to the other slot when its tries run out.
func Counted(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "LoaderBootCountPath-"+loaderGUID))
	return err == nil
}

// Mount mounts the ESP systemd-boot was started from on dir (made if
// missing), read-write for root only. It does nothing when dir is a mount
// of it already.
func Mount(efivars, dir string) error {
	uuid, err := PartUUID(efivars)
	if err != nil {
		return err
	}
	dev := "/dev/disk/by-partuuid/" + uuid
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if mounted(dir) {
		return nil
	}
	if err := unix.Mount(dev, dir, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "umask=0077"); err != nil {
		return fmt.Errorf("mounting the ESP %s on %s: %w", dev, dir, err)
	}
	return nil
}

// mounted says whether dir is a mount point (its device differs from its
// parent's).
func mounted(dir string) bool {
	var a, b unix.Stat_t
	if unix.Stat(dir, &a) != nil || unix.Stat(filepath.Dir(dir), &b) != nil {
		return false
	}
	return a.Dev != b.Dev
}
