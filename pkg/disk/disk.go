// Package disk writes imgforge's bootable disk images from files, with
// go-diskfs: no loop devices, mounts or root are needed.
//
// A raw disk is a GPT with two root slots (A/B), typed after the
// Discoverable Partitions Specification so that systemd-dissect,
// systemd-sysupdate and other tools recognise them:
//
//	1 ESP       PARTLABEL esp            FAT32: systemd-boot, its loader entry, the kernel and initramfs
//	2 root-a    PARTLABEL ROLE_VERSION   the squashfs root filesystem, read only
//	3 verity-a  PARTLABEL ROLE_VERSION   its dm-verity hash tree; the root hash is on the kernel command line
//	4 root-b    PARTLABEL _empty         slot B: zeros (unwritten, sparse) until an update writes it
//	5 verity-b  PARTLABEL _empty
//	6 state     PARTLABEL imgforge-state a prebuilt empty ext4 (the /var of the node), grown at boot
//
// VERSION is the image version, the first 12 hex digits of the image
// digest (see imagemeta.SlotLabel). Both slots have the same sizes: the
// root partitions are the slot size (disk.slot_size in the image
// definition), the verity partitions what the hash tree of a root of that
// size needs. An update writes the inactive slot and renames its two
// entries after the new version and root hash; the build always writes
// slot A and leaves B empty ("_empty" is systemd-sysupdate's mark of a
// free slot). The state partition is last, so that the initramfs can
// grow it (and its file system, with resize2fs) to the end of a larger
// disk.
//
// Every identifier is derived from the inputs (slot A's partition UUIDs
// from the root hash, as the specification suggests; slot B's, the
// disk's, the ESP's, the state partition's and its file system's from
// the seed), and every timestamp is SOURCE_DATE_EPOCH, so the same inputs
// give the same bytes. The file is sparse: unwritten space costs nothing,
// and only the blocks of the state file system that are not zeros are
// written.
package disk

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/ctxio"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// Partition type GUIDs (Discoverable Partitions Specification, x86-64),
// defined in package imagemeta for the disk's readers too.
const (
	TypeESP        = imagemeta.TypeESP
	TypeRoot       = imagemeta.TypeRoot
	TypeRootVerity = imagemeta.TypeRootVerity
	TypeVar        = imagemeta.TypeVar
)

const (
	sector = 512
	mib    = 1 << 20
	// MinState is the smallest state partition a disk is made with.
	MinState = 64 * mib
	// DefaultSlotSize is a root partition's size when the image
	// definition does not set disk.slot_size.
	DefaultSlotSize = 512 * mib
)

// Errors Place returns (wrapped): the disk cannot hold the layout
// (disk.size), or the root does not fit its slot (disk.slot_size).
var (
	ErrTooSmall     = errors.New("disk size too small")
	ErrSlotTooSmall = errors.New("slot size too small")
)

type tooSmall string

func (e tooSmall) Error() string        { return string(e) }
func (e tooSmall) Is(target error) bool { return target == ErrTooSmall }

type slotTooSmall string

func (e slotTooSmall) Error() string        { return string(e) }
func (e slotTooSmall) Is(target error) bool { return target == ErrSlotTooSmall }

// Layout is what a raw disk holds.
type Layout struct {
	Size     int64       // the whole disk
	ESPSize  int64       // the EFI system partition
	SlotSize int64       // each root partition; 0 means DefaultSlotSize
	ESPFiles []boot.File // files of the ESP
	Root     string      // path of the squashfs root filesystem (a multiple of 4096 bytes)
	Verity   string      // path of its hash tree
	RootHash string      // hex; names slot A's partitions
	Label    string      // slot A's PARTLABEL, imagemeta.SlotLabel(role, version)
	// State is the path of the state file system, exactly Plan.StateSize()
	// bytes (see MakeState); empty leaves the state partition unwritten.
	State string
	Seed  string // more input for the other identifiers (the image digest)
	Epoch int64  // SOURCE_DATE_EPOCH
}

func (l *Layout) slotSize() int64 {
	if l.SlotSize == 0 {
		return DefaultSlotSize
	}
	return l.SlotSize
}

// VeritySize is the size of a verity partition for a root partition of
// slotSize bytes: the dm-verity hash tree (4096-byte blocks, sha256, no
// superblock) of that many bytes of data, rounded up to a MiB.
func VeritySize(slotSize int64) int64 {
	const block, perBlock = 4096, 4096 / sha256.Size
	n := (slotSize + block - 1) / block
	var blocks int64
	for n > 1 {
		n = (n + perBlock - 1) / perBlock
		blocks += n
	}
	return alignUp(max(blocks, 1)*block, mib)
}

// Labels are the PARTLABELs the build writes.
func (l *Layout) Labels() imagemeta.PartitionLabels {
	return imagemeta.PartitionLabels{
		ESP: imagemeta.ESPLabel, RootA: l.Label, VerityA: l.Label,
		RootB: imagemeta.EmptySlotLabel, VerityB: imagemeta.EmptySlotLabel, State: imagemeta.StateLabel,
	}
}

// Info is the manifest's description of the disk's layout.
func (l *Layout) Info() *imagemeta.DiskLayout {
	return &imagemeta.DiskLayout{SlotSize: l.slotSize(), VeritySize: VeritySize(l.slotSize()), Labels: l.Labels()}
}

// IDs are the identifiers a Layout gives its disk. They are the
// manifest's partitions section, so they are defined once, in package
// imagemeta.
type IDs = imagemeta.PartitionIDs

// UUID makes a version-4-shaped UUID from the sha256 of parts.
func UUID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return uuidFrom(sum[:16])
}

func uuidFrom(b []byte) string {
	u := make([]byte, 16)
	copy(u, b)
	u[6] = (u[6] & 0x0f) | 0x40
	u[8] = (u[8] & 0x3f) | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]))
}

// IDs derives the identifiers: root and verity from the root hash (its
// first and last 128 bits), the others from the seed.
func (l *Layout) IDs() (IDs, error) {
	h := strings.ToLower(l.RootHash)
	if len(h) != 64 {
		return IDs{}, fmt.Errorf("root hash %q is not a sha256 in hex", l.RootHash)
	}
	var raw [32]byte
	for i := 0; i < 32; i++ {
		v, err := strconv.ParseUint(h[2*i:2*i+2], 16, 8)
		if err != nil {
			return IDs{}, fmt.Errorf("root hash %q is not hex", l.RootHash)
		}
		raw[i] = byte(v)
	}
	return IDs{
		Disk:    UUID("disk", l.Seed),
		ESP:     UUID("esp", l.Seed),
		Root:    uuidFrom(raw[:16]),
		Verity:  uuidFrom(raw[16:]),
		State:   UUID("state", l.Seed),
		RootB:   UUID("root-b", l.Seed),
		VerityB: UUID("verity-b", l.Seed),
		StateFS: UUID("state-fs", l.Seed),
	}, nil
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

// Plan is where each partition starts and ends, in sectors.
type Plan struct {
	ESP, Root, Verity, RootB, VerityB, State [2]uint64 // first and last sector
}

// StateSize is the state partition's size in bytes.
func (p Plan) StateSize() int64 { return int64(p.State[1]-p.State[0]+1) * sector }

// Place lays the partitions out on l.Size, or says how much is needed.
// The root must fit its slot (ErrSlotTooSmall) and the slots and the
// smallest state partition the disk (ErrTooSmall).
func (l *Layout) Place() (Plan, error) {
	rootSize, err := fileSize(l.Root)
	if err != nil {
		return Plan{}, err
	}
	verSize, err := fileSize(l.Verity)
	if err != nil {
		return Plan{}, err
	}
	start := int64(mib) // after the primary GPT, 1 MiB aligned
	var p Plan
	next := start
	place := func(size int64) [2]uint64 {
		s := next
		next = s + alignUp(size, mib)
		return [2]uint64{uint64(s / sector), uint64(next/sector - 1)}
	}
	slot, vslot := l.slotSize(), VeritySize(l.slotSize())
	if slot <= 0 || slot%mib != 0 {
		return Plan{}, slotTooSmall(fmt.Sprintf("the slot size %d bytes is not a positive number of MiB", slot))
	}
	if rootSize > slot || verSize > vslot {
		return Plan{}, slotTooSmall(fmt.Sprintf("the slot size %s cannot hold the root filesystem of %s: make it at least %s",
			human(slot), human(rootSize), human(alignUp(rootSize, mib))))
	}
	p.ESP = place(l.ESPSize)
	p.Root = place(slot)
	p.Verity = place(vslot)
	p.RootB = place(slot)
	p.VerityB = place(vslot)
	// 1 MiB at the end for the backup GPT.
	need := next + MinState + mib
	if l.Size < need {
		return Plan{}, tooSmall(fmt.Sprintf("the disk size %s (disk.size in the image definition) cannot hold the two slots: it needs at least %s (ESP %s, two slots of %s with a hash tree of %s each, state %s)",
			human(l.Size), human(alignUp(need, mib)), human(l.ESPSize), human(slot), human(vslot), human(MinState)))
	}
	p.State = [2]uint64{uint64(next / sector), uint64((l.Size-mib)/sector - 1)}
	return p, nil
}

func human(n int64) string {
	if n%(1<<30) == 0 && n > 0 {
		return fmt.Sprintf("%dGiB", n>>30)
	}
	return fmt.Sprintf("%dMiB", (n+mib-1)/mib)
}

func fileSize(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// WriteRaw writes the disk l describes to path, which must not exist.
// It stops with ctx's error once ctx is done, within one buffer of the
// root's copy, and removes what it wrote when it fails.
func WriteRaw(ctx context.Context, path string, l Layout) (IDs, error) {
	created := false
	ids, err := writeRaw(ctx, path, l, &created)
	if err != nil && created {
		os.Remove(path)
	}
	return ids, err
}

func writeRaw(ctx context.Context, path string, l Layout, created *bool) (IDs, error) {
	ids, err := l.IDs()
	if err != nil {
		return ids, err
	}
	pl, err := l.Place()
	if err != nil {
		return ids, err
	}
	if err := checkLabel(l.Label); err != nil {
		return ids, err
	}
	labels := l.Labels()
	var state *os.File
	if l.State != "" {
		if state, err = os.Open(l.State); err != nil {
			return ids, fmt.Errorf("reading the state file system: %w", err)
		}
		defer state.Close()
		fi, err := state.Stat()
		if err != nil {
			return ids, err
		}
		if fi.Size() != pl.StateSize() {
			return ids, fmt.Errorf("the state file system %s has %d bytes; its partition, %d", l.State, fi.Size(), pl.StateSize())
		}
	}
	// go-diskfs reads SOURCE_DATE_EPOCH from the environment for FAT
	// timestamps; it has no other way to be told.
	os.Setenv("SOURCE_DATE_EPOCH", strconv.FormatInt(l.Epoch, 10))
	d, err := diskfs.Create(path, l.Size, diskfs.SectorSizeDefault)
	if err != nil {
		return ids, fmt.Errorf("creating %s: %w", path, err)
	}
	*created = true
	closed := false
	defer func() {
		if !closed {
			d.Close()
		}
	}()
	table := &gpt.Table{
		LogicalSectorSize:  sector,
		PhysicalSectorSize: sector,
		ProtectiveMBR:      true,
		GUID:               ids.Disk,
		Partitions: []*gpt.Partition{
			{Index: 1, Start: pl.ESP[0], End: pl.ESP[1], Type: TypeESP, Name: labels.ESP, GUID: ids.ESP},
			{Index: 2, Start: pl.Root[0], End: pl.Root[1], Type: TypeRoot, Name: labels.RootA, GUID: ids.Root},
			{Index: 3, Start: pl.Verity[0], End: pl.Verity[1], Type: TypeRootVerity, Name: labels.VerityA, GUID: ids.Verity},
			{Index: 4, Start: pl.RootB[0], End: pl.RootB[1], Type: TypeRoot, Name: labels.RootB, GUID: ids.RootB},
			{Index: 5, Start: pl.VerityB[0], End: pl.VerityB[1], Type: TypeRootVerity, Name: labels.VerityB, GUID: ids.VerityB},
			{Index: 6, Start: pl.State[0], End: pl.State[1], Type: TypeVar, Name: labels.State, GUID: ids.State},
		},
	}
	if err := d.Partition(table); err != nil {
		return ids, fmt.Errorf("writing the partition table: %w", err)
	}
	if err := writeFAT(d, 1, "ESP", l.ESPFiles); err != nil {
		return ids, err
	}
	closed = true
	if err := d.Close(); err != nil {
		return ids, fmt.Errorf("writing %s: %w", path, err)
	}
	// The root and its hash tree go in as they are, at their partitions'
	// offsets; the rest of each partition, and slot B, stay unwritten
	// (sparse).
	out, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return ids, err
	}
	defer out.Close()
	if err := FixFAT(out, int64(pl.ESP[0])*sector, l.Epoch); err != nil {
		return ids, fmt.Errorf("finishing the ESP: %w", err)
	}
	for _, part := range []struct {
		src   string
		start uint64
	}{{l.Root, pl.Root[0]}, {l.Verity, pl.Verity[0]}} {
		f, err := os.Open(part.src)
		if err != nil {
			return ids, err
		}
		_, err = ctxio.Copy(ctx, io.NewOffsetWriter(out, int64(part.start)*sector), f)
		f.Close()
		if err != nil {
			return ids, fmt.Errorf("writing %s into %s: %w", part.src, path, err)
		}
	}
	if state != nil {
		if err := copySparse(ctx, out, int64(pl.State[0])*sector, state); err != nil {
			return ids, fmt.Errorf("writing the state file system into %s: %w", path, err)
		}
	}
	if err := out.Close(); err != nil {
		return ids, err
	}
	return ids, nil
}

// checkLabel checks that a slot label fits a GPT partition name and names
// a version (see imagemeta.SlotLabel).
func checkLabel(label string) error {
	if _, _, ok := imagemeta.ParseSlotLabel(label); !ok || len(label) > imagemeta.MaxLabel {
		return fmt.Errorf("slot A's label %q is not ROLE_VERSION (at most %d characters, VERSION %d hex digits)", label, imagemeta.MaxLabel, imagemeta.VersionLen)
	}
	return nil
}

// writeFAT makes a FAT32 file system on partition part and fills it.
func writeFAT(d *disk.Disk, part int, label string, files []boot.File) error {
	fs, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: part, FSType: filesystem.TypeFat32, VolumeLabel: label, Reproducible: true})
	if err != nil {
		return fmt.Errorf("making the FAT file system: %w", err)
	}
	return FillFAT(fs, files)
}

// FillFAT writes files into a FAT file system, making directories as needed.
func FillFAT(fs filesystem.FileSystem, files []boot.File) error {
	made := map[string]bool{"/": true}
	for _, f := range files {
		dir := path.Dir(f.Path)
		if !made[dir] {
			if err := fs.Mkdir(dir); err != nil {
				return fmt.Errorf("making %s on the ESP: %w", dir, err)
			}
			for d := dir; d != "/"; d = path.Dir(d) {
				made[d] = true
			}
		}
		w, err := fs.OpenFile(f.Path, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("writing %s on the ESP: %w", f.Path, err)
		}
		if _, err := io.Copy(w, strings.NewReader(string(f.Data))); err != nil {
			w.Close()
			return fmt.Errorf("writing %s on the ESP: %w", f.Path, err)
		}
		if err := w.Close(); err != nil {
			return fmt.Errorf("writing %s on the ESP: %w", f.Path, err)
		}
	}
	return nil
}
