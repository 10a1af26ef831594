package update

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// Paths on the ESP (see docs/agent.md and the slot layout).
const (
	entriesDir = "loader/entries"
	slotsDir   = "imgforge"
	// Tries is the boot counter of a new entry: systemd-boot boots it
	// this many times before it falls back to the other slot, unless
	// systemd-bless-boot marks a boot good.
	Tries = 3
)

// Files of a slot's kernel set on the ESP, in /imgforge/SLOT/.
const (
	KernelFile  = imagemeta.BootKernel
	InitrdFile  = imagemeta.BootInitrd
	OverlayFile = imagemeta.BootOverlay
)

// entryRe matches imgforge's loader entries: imgforge-GEN-SLOT.conf,
// with a boot counter +LEFT or +LEFT-DONE.
var entryRe = regexp.MustCompile(`^imgforge-([0-9]{4,})-([ab])(\+[0-9]+(-[0-9]+)?)?\.conf$`)

// Entry is one of imgforge's loader entries on the ESP.
type Entry struct {
	Name string // file name in /loader/entries
	Gen  int
	Slot string
	// Counting says the entry still has a boot counter: its boot was
	// not marked good (yet).
	Counting bool
}

// Entries lists imgforge's loader entries of the ESP mounted at esp, by
// generation.
func Entries(esp string) ([]Entry, error) {
	des, err := os.ReadDir(filepath.Join(esp, entriesDir))
	if err != nil {
		return nil, fmt.Errorf("reading the loader entries: %w", err)
	}
	var out []Entry
	for _, de := range des {
		m := entryRe.FindStringSubmatch(de.Name())
		if m == nil || !de.Type().IsRegular() {
			continue
		}
		gen, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		out = append(out, Entry{Name: de.Name(), Gen: gen, Slot: m[2], Counting: m[3] != ""})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Gen < out[j].Gen })
	return out, nil
}

// clearSlot removes the loader entries of slot and its kernel set, so
// that nothing on the ESP points at the slot while it is written.
func clearSlot(esp, slot string) error {
	if err := clearEntries(esp, slot); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(esp, slotsDir, slot)); err != nil {
		return fmt.Errorf("removing the kernel set of slot %s: %w", slot, err)
	}
	return syncDir(filepath.Join(esp, slotsDir))
}

// clearEntries removes the loader entries of slot.
func clearEntries(esp, slot string) error {
	es, err := Entries(esp)
	if err != nil {
		return err
	}
	for _, e := range es {
		if e.Slot != slot {
			continue
		}
		if err := os.Remove(filepath.Join(esp, entriesDir, e.Name)); err != nil {
			return fmt.Errorf("removing the loader entry of slot %s: %w", slot, err)
		}
	}
	// Files of an entry write cut short (writeFileSync's temporaries).
	if tmps, err := filepath.Glob(filepath.Join(esp, entriesDir, tmpPrefix+"*")); err == nil {
		for _, p := range tmps {
			os.Remove(p)
		}
	}
	return syncDir(filepath.Join(esp, entriesDir))
}

// tmpPrefix starts the names of files being written on the ESP.
const tmpPrefix = ".imgforge-tmp-"

// writeFileSync writes a file whole: to a temporary name, synced, then
// renamed over path, and the folder synced.
func writeFileSync(path string, r io.Reader) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = io.Copy(tmp, r); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	// Some file systems (vfat among them on older kernels) refuse fsync
	// on a folder; the data was synced file by file already.
	_ = d.Sync()
	return nil
}

// entryText is the loader entry of a slot.
func entryText(role, version, slot string, gen int, overlay bool, options string) string {
	s := fmt.Sprintf("title imgforge %s %s (slot %s)\nversion %04d\nlinux /%s/%s/%s\ninitrd /%s/%s/%s\n",
		role, version, slot, gen, slotsDir, slot, KernelFile, slotsDir, slot, InitrdFile)
	if overlay {
		s += fmt.Sprintf("initrd /%s/%s/%s\n", slotsDir, slot, OverlayFile)
	}
	return s + "options " + options + "\n"
}

// UKIFile is the name of a slot's signed unified kernel image in
// /imgforge/SLOT/ (boot.UKIFile).
const UKIFile = "imgforge.efi"

// ukiEntryText is the loader entry of a slot that boots its signed UKI:
// no options, since the command line is the UKI's, under its signature.
func ukiEntryText(role, version, slot string, gen int) string {
	return fmt.Sprintf("title imgforge %s %s (slot %s)\nversion %04d\nefi /%s/%s/%s\n", role, version, slot, gen, slotsDir, slot, UKIFile)
}

// checkUKI reads the command line of the unified kernel image at path
// (its .cmdline PE section) and checks that it boots slot from the root
// partition rootUUID with root hash rootHash: the UKIs of an image are
// signed for their slot, with the partitions the build chose.
func checkUKI(path, slot string, rootUUID GUID, rootHash string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := imagemeta.UKISection(f, ".cmdline")
	if err != nil {
		return err
	}
	fields := strings.Fields(string(b))
	for _, want := range []string{"imgforge.slot=" + slot, "imgforge.root=PARTUUID=" + strings.ToLower(rootUUID.String()), "imgforge.roothash=" + rootHash} {
		if !slices.Contains(fields, want) {
			return fmt.Errorf("its command line has no %s", want)
		}
	}
	return nil
}

// entryName is the file name of a new entry with boot counting.
func entryName(gen int, slot string, tries int) string {
	return fmt.Sprintf("imgforge-%04d-%s+%d.conf", gen, slot, tries)
}
