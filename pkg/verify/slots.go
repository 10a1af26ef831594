package verify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"

	"github.com/imgforge/imgforge/pkg/disk"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/units"
)

// checkLabels checks the manifest's own partition labels: slot A's name
// the manifest's role and version, slot B is empty, the ESP and the state
// partition have their fixed names.
func checkLabels(m *imagemeta.Manifest, l imagemeta.PartitionLabels) (string, error) {
	want := imagemeta.PartitionLabels{
		ESP: imagemeta.ESPLabel, RootA: imagemeta.SlotLabel(m.Role, imagemeta.Version(m.ImageDigest)),
		RootB: imagemeta.EmptySlotLabel, VerityB: imagemeta.EmptySlotLabel, State: imagemeta.StateLabel,
	}
	want.VerityA = want.RootA
	if l != want {
		return "", fmt.Errorf("the manifest's partition labels %+v are not those of role %s version %s: %+v", l, m.Role, imagemeta.Version(m.ImageDigest), want)
	}
	return fmt.Sprintf("slot A is %q (role %s, version %s), slot B %q", l.RootA, m.Role, imagemeta.Version(m.ImageDigest), l.RootB), nil
}

// checkSlotB checks slot B (partitions 4 and 5): root and verity types
// and slot A's sizes, and either empty (both labelled _empty, with the
// UUIDs the build gave them, and nothing but zeros) or holding a version
// of the manifest's role (both labelled ROLE_VERSION; its content is not
// checked, as the manifest describes slot A only).
func (r *run) checkSlotB(f *os.File, t *gpt.Table, m *imagemeta.Manifest) (string, error) {
	ids, lay := m.Disk.Partitions, m.Disk.Layout
	root, verity := partition(t, 4), partition(t, 5)
	for _, p := range []partSpec{
		{4, "root-b", disk.TypeRoot, "", root.Name, lay.SlotSize},
		{5, "verity-b", disk.TypeRootVerity, "", verity.Name, lay.VeritySize},
	} {
		if _, err := checkPartition(t, p); err != nil {
			return "", err
		}
	}
	if root.Name != verity.Name {
		return "", fmt.Errorf("slot B's root is labelled %q and its verity %q: a slot's two partitions carry the same label", root.Name, verity.Name)
	}
	if root.Name == imagemeta.EmptySlotLabel {
		for _, p := range []struct {
			part *gpt.Partition
			uuid string
		}{{root, ids.RootB}, {verity, ids.VerityB}} {
			if !strings.EqualFold(p.part.GUID, p.uuid) {
				return "", fmt.Errorf("empty slot B's partition %d has UUID %s; the manifest says %s", p.part.Index, p.part.GUID, strings.ToUpper(p.uuid))
			}
		}
		start, size := int64(root.Start)*sector, int64(verity.End+1-root.Start)*sector
		read, err := r.zeros(f, start, size)
		if err != nil {
			return "", fmt.Errorf("slot B is labelled %s but %w", imagemeta.EmptySlotLabel, err)
		}
		return fmt.Sprintf("empty (%s): its %s are zeros (%s of it allocated, read and found zero; the rest is holes)", imagemeta.EmptySlotLabel, units.Bytes(size), units.Bytes(read)), nil
	}
	role, version, ok := imagemeta.ParseSlotLabel(root.Name)
	if !ok {
		return "", fmt.Errorf("slot B is labelled %q: neither %s nor ROLE_VERSION", root.Name, imagemeta.EmptySlotLabel)
	}
	if root.Name != imagemeta.SlotLabel(m.Role, version) {
		return "", fmt.Errorf("slot B holds role %s (label %q); the disk is role %s's", role, root.Name, m.Role)
	}
	if strings.EqualFold(root.GUID, ids.Root) || strings.EqualFold(verity.GUID, ids.Verity) {
		return "", fmt.Errorf("slot B's partitions have slot A's UUIDs")
	}
	return fmt.Sprintf("holds version %s of role %s (label %q); its content is not checked: the manifest describes slot A", version, m.Role, root.Name), nil
}

// zeros checks that n bytes at off of f are zeros. It reads only the
// parts of the range that hold data (SEEK_DATA, SEEK_HOLE): holes are
// zeros. It returns how many bytes it read.
func (r *run) zeros(f *os.File, off, n int64) (int64, error) {
	buf := make([]byte, 1<<20)
	var read int64
	end := off + n
	for pos := off; pos < end; {
		data, err := unix.Seek(int(f.Fd()), pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			data = pos // no SEEK_DATA: read it all
		}
		if data >= end {
			break
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			hole = end
		}
		hole = min(hole, end)
		for pos = data; pos < hole; {
			if err := r.ctx.Err(); err != nil {
				return read, err
			}
			chunk := buf[:min(int64(len(buf)), hole-pos)]
			if _, err := f.ReadAt(chunk, pos); err != nil {
				return read, fmt.Errorf("reading the image: %w", err)
			}
			if i := bytes.IndexFunc(chunk, func(c rune) bool { return c != 0 }); i >= 0 {
				return read, fmt.Errorf("byte %d of the slot is not zero", pos+int64(i)-off)
			}
			read += int64(len(chunk))
			pos += int64(len(chunk))
		}
	}
	return read, nil
}

// checkStateFS checks that the state partition holds the prebuilt ext4:
// its superblock has the manifest's UUID and the state label, and
// e2fsck -fn finds it sound (on a sparse copy of the partition).
func (r *run) checkStateFS(image string, p *gpt.Partition, uuid, label string) (string, error) {
	f, err := os.Open(image)
	if err != nil {
		return "", err
	}
	defer f.Close()
	start, size := int64(p.Start)*sector, int64(p.Size)
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, start+1024); err != nil {
		return "", fmt.Errorf("reading the state partition's superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[0x38:]) != 0xef53 {
		return "", errors.New("the state partition holds no ext4 file system (no superblock magic 53 EF at byte 1080)")
	}
	got := fmt.Sprintf("%X-%X-%X-%X-%X", sb[0x68:0x6c], sb[0x6c:0x6e], sb[0x6e:0x70], sb[0x70:0x72], sb[0x72:0x78])
	if !strings.EqualFold(got, uuid) {
		return "", fmt.Errorf("the state file system has UUID %s; the manifest says %s", got, strings.ToUpper(uuid))
	}
	if name := string(bytes.TrimRight(sb[0x78:0x88], "\x00")); name != label {
		return "", fmt.Errorf("the state file system is labelled %q; want %q", name, label)
	}
	if _, err := exec.LookPath("e2fsck"); err != nil {
		return "", fmt.Errorf("e2fsck is not installed (apt-get install e2fsprogs): %w", err)
	}
	copyPath := filepath.Join(r.tmp, "state")
	if err := r.extract(image, start, size, copyPath); err != nil {
		return "", err
	}
	defer os.Remove(copyPath)
	out, err := exec.CommandContext(r.ctx, "e2fsck", "-fn", copyPath).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("e2fsck -fn finds the state file system damaged: %w: %s", err, lastLine(out))
	}
	return fmt.Sprintf("ext4 %q, UUID %s, %s; e2fsck -fn: %s", label, got, units.Bytes(size), lastLine(out)), nil
}
