package update

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// GPT partition type GUIDs of the slot layout (the Discoverable
// Partitions Specification's, x86-64).
const (
	TypeESP    = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeRoot   = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	TypeVerity = "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5"
	TypeVar    = "4D21B016-B534-45C2-A9FB-5C16E091FD2D"
)

// EmptyLabel is the PARTLABEL of a slot that holds no image
// (systemd-sysupdate's convention).
const EmptyLabel = "_empty"

const (
	gptSignature  = "EFI PART"
	gptHeaderSize = 92
	gptEntrySize  = 128
	gptNameChars  = 36
)

// GUID is a GPT GUID as it is stored (mixed endian).
type GUID [16]byte

// ParseGUID reads a GUID in its text form (8-4-4-4-12 hex digits).
func ParseGUID(s string) (GUID, error) {
	var g GUID
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 || len(s) != 36 {
		return g, fmt.Errorf("%q is not a GUID", s)
	}
	var raw [16]byte
	for i := range raw {
		var v byte
		for _, c := range h[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c-'a') + 10
			case c >= 'A' && c <= 'F':
				v |= byte(c-'A') + 10
			default:
				return g, fmt.Errorf("%q is not a GUID", s)
			}
		}
		raw[i] = v
	}
	// The first three fields are little endian on disk.
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g, nil
}

// String gives the GUID's text form, upper case as in the manifest.
func (g GUID) String() string {
	return fmt.Sprintf("%02X%02X%02X%02X-%02X%02X-%02X%02X-%02X%02X-%X",
		g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10:])
}

// Partition is one GPT entry.
type Partition struct {
	Index     int // 1-based, as in /dev/sdaN
	Type      GUID
	UUID      GUID
	FirstLBA  uint64
	LastLBA   uint64
	Attrs     uint64
	Label     string
	rawName   [72]byte
	entryByte int64 // offset of the entry within the entry array
}

// Offset and Size are the partition's place on the disk, in bytes.
func (p Partition) Offset(sector int64) int64 { return int64(p.FirstLBA) * sector }

// Size is the partition's size in bytes.
func (p Partition) Size(sector int64) int64 { return int64(p.LastLBA-p.FirstLBA+1) * sector }

// GPT is a disk's partition table, read from its primary and backup
// headers.
type GPT struct {
	Sector     int64
	DiskGUID   GUID
	Partitions []Partition // the used entries, in table order
	// BackupStale says the backup entries do not match their CRC32.
	BackupStale bool

	primary, backup []byte // the headers (one sector each)
	entries         []byte // the whole entry array
	numEntries      uint32
}

// ReadGPT reads the GPT of the disk r of size bytes: the primary header
// and entries, checked by their CRC32s, and the backup header. The sector
// size is 512 unless the header is found at 4096.
func ReadGPT(r io.ReaderAt, size int64) (*GPT, error) {
	var errs []error
	for _, sector := range []int64{512, 4096} {
		g, err := readGPT(r, size, sector)
		if err == nil {
			return g, nil
		}
		errs = append(errs, fmt.Errorf("%d-byte sectors: %w", sector, err))
	}
	return nil, fmt.Errorf("reading the GPT: %w", errors.Join(errs...))
}

func readHeader(r io.ReaderAt, lba uint64, sector int64) ([]byte, error) {
	h := make([]byte, sector)
	if _, err := r.ReadAt(h, int64(lba)*sector); err != nil {
		return nil, err
	}
	if string(h[:8]) != gptSignature {
		return nil, fmt.Errorf("no GPT header at LBA %d", lba)
	}
	hs := binary.LittleEndian.Uint32(h[12:])
	if hs < gptHeaderSize || int64(hs) > sector {
		return nil, fmt.Errorf("GPT header at LBA %d has size %d", lba, hs)
	}
	want := binary.LittleEndian.Uint32(h[16:])
	c := bytes.Clone(h[:hs])
	binary.LittleEndian.PutUint32(c[16:], 0)
	if crc32.ChecksumIEEE(c) != want {
		return nil, fmt.Errorf("GPT header at LBA %d: bad CRC32", lba)
	}
	if got := binary.LittleEndian.Uint64(h[24:]); got != lba {
		return nil, fmt.Errorf("GPT header at LBA %d says it is at LBA %d", lba, got)
	}
	return h, nil
}

func readGPT(r io.ReaderAt, size, sector int64) (*GPT, error) {
	p, err := readHeader(r, 1, sector)
	if err != nil {
		return nil, err
	}
	g := &GPT{Sector: sector, primary: p}
	copy(g.DiskGUID[:], p[56:72])
	g.numEntries = binary.LittleEndian.Uint32(p[80:])
	if es := binary.LittleEndian.Uint32(p[84:]); es != gptEntrySize {
		return nil, fmt.Errorf("GPT entries of %d bytes, want %d", es, gptEntrySize)
	}
	if g.numEntries == 0 || g.numEntries > 1024 {
		return nil, fmt.Errorf("GPT with %d entries", g.numEntries)
	}
	g.entries = make([]byte, int(g.numEntries)*gptEntrySize)
	if _, err := r.ReadAt(g.entries, int64(binary.LittleEndian.Uint64(p[72:]))*sector); err != nil {
		return nil, fmt.Errorf("reading the GPT entries: %w", err)
	}
	if crc32.ChecksumIEEE(g.entries) != binary.LittleEndian.Uint32(p[88:]) {
		return nil, errors.New("the GPT entries do not match their CRC32")
	}
	backupLBA := binary.LittleEndian.Uint64(p[32:])
	if int64(backupLBA+1)*sector > size {
		return nil, fmt.Errorf("the backup GPT header (LBA %d) lies past the end of the disk", backupLBA)
	}
	if g.backup, err = readHeader(r, backupLBA, sector); err != nil {
		return nil, fmt.Errorf("backup header: %w", err)
	}
	if binary.LittleEndian.Uint32(g.backup[80:]) != g.numEntries || binary.LittleEndian.Uint32(g.backup[84:]) != gptEntrySize {
		return nil, errors.New("the backup GPT header's entry array differs from the primary's")
	}
	backupEntries := make([]byte, len(g.entries))
	if _, err := r.ReadAt(backupEntries, int64(binary.LittleEndian.Uint64(g.backup[72:]))*sector); err != nil {
		return nil, fmt.Errorf("reading the backup GPT entries: %w", err)
	}
	// A backup entry array that does not match its CRC32 (a rewrite
	// interrupted between the backup's entries and its header) is
	// noted; the primary table is whole, and Rewrite writes both.
	g.BackupStale = crc32.ChecksumIEEE(backupEntries) != binary.LittleEndian.Uint32(g.backup[88:])
	first, last := binary.LittleEndian.Uint64(p[40:]), binary.LittleEndian.Uint64(p[48:])
	for i := 0; i < int(g.numEntries); i++ {
		e := g.entries[i*gptEntrySize : (i+1)*gptEntrySize]
		var pt Partition
		copy(pt.Type[:], e[0:16])
		if pt.Type == (GUID{}) {
			continue
		}
		copy(pt.UUID[:], e[16:32])
		pt.FirstLBA = binary.LittleEndian.Uint64(e[32:])
		pt.LastLBA = binary.LittleEndian.Uint64(e[40:])
		pt.Attrs = binary.LittleEndian.Uint64(e[48:])
		copy(pt.rawName[:], e[56:128])
		pt.Label = decodeName(pt.rawName)
		pt.Index = i + 1
		pt.entryByte = int64(i * gptEntrySize)
		if pt.FirstLBA < first || pt.LastLBA > last || pt.LastLBA < pt.FirstLBA {
			return nil, fmt.Errorf("partition %d (LBA %d-%d) lies outside the usable LBAs %d-%d", pt.Index, pt.FirstLBA, pt.LastLBA, first, last)
		}
		g.Partitions = append(g.Partitions, pt)
	}
	return g, nil
}

func decodeName(raw [72]byte) string {
	u := make([]uint16, 0, gptNameChars)
	for i := 0; i < len(raw); i += 2 {
		c := binary.LittleEndian.Uint16(raw[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func encodeName(s string) ([72]byte, error) {
	var raw [72]byte
	u := utf16.Encode([]rune(s))
	if len(u) > gptNameChars {
		return raw, fmt.Errorf("partition label %q is longer than %d UTF-16 characters", s, gptNameChars)
	}
	for i, c := range u {
		binary.LittleEndian.PutUint16(raw[2*i:], c)
	}
	return raw, nil
}

// EntryUpdate is a new label and PARTUUID for the partition Index.
type EntryUpdate struct {
	Index int
	Label string
	UUID  GUID
}

// Rewrite sets the label and PARTUUID of some partitions in both the
// backup and the primary GPT (entries and headers, with their CRC32s), and
// syncs w in between, so that an interruption leaves one valid table. It
// touches no other entry.
func (g *GPT) Rewrite(w interface {
	io.WriterAt
	Sync() error
}, ups ...EntryUpdate) error {
	entries := bytes.Clone(g.entries)
	for _, u := range ups {
		i := u.Index - 1
		if i < 0 || i >= int(g.numEntries) {
			return fmt.Errorf("no GPT entry %d", u.Index)
		}
		name, err := encodeName(u.Label)
		if err != nil {
			return err
		}
		e := entries[i*gptEntrySize : (i+1)*gptEntrySize]
		if bytes.Equal(e[0:16], make([]byte, 16)) {
			return fmt.Errorf("GPT entry %d is unused", u.Index)
		}
		copy(e[16:32], u.UUID[:])
		copy(e[56:128], name[:])
	}
	crc := crc32.ChecksumIEEE(entries)
	primary, backup := bytes.Clone(g.primary), bytes.Clone(g.backup)
	for _, h := range []struct {
		hdr []byte
	}{{backup}, {primary}} {
		hdr := h.hdr
		binary.LittleEndian.PutUint32(hdr[88:], crc)
		hs := binary.LittleEndian.Uint32(hdr[12:])
		binary.LittleEndian.PutUint32(hdr[16:], 0)
		binary.LittleEndian.PutUint32(hdr[16:], crc32.ChecksumIEEE(hdr[:hs]))
		entLBA := int64(binary.LittleEndian.Uint64(hdr[72:]))
		if _, err := w.WriteAt(entries, entLBA*g.Sector); err != nil {
			return fmt.Errorf("writing the GPT entries: %w", err)
		}
		if _, err := w.WriteAt(hdr, int64(binary.LittleEndian.Uint64(hdr[24:]))*g.Sector); err != nil {
			return fmt.Errorf("writing the GPT header: %w", err)
		}
		if err := w.Sync(); err != nil {
			return fmt.Errorf("syncing the GPT: %w", err)
		}
	}
	g.entries, g.primary, g.backup, g.BackupStale = entries, primary, backup, false
	for i := range g.Partitions {
		p := &g.Partitions[i]
		e := entries[p.entryByte : p.entryByte+gptEntrySize]
		copy(p.UUID[:], e[16:32])
		copy(p.rawName[:], e[56:128])
		p.Label = decodeName(p.rawName)
	}
	return nil
}
