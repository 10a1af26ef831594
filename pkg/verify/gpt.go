package verify

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strings"

	"github.com/imgforge/imgforge/pkg/units"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

const sector = 512

// checkMBR checks that the first sector is a protective MBR: one
// partition of type 0xEE from sector 1 over the whole disk (or as much of
// it as 32 bits say), and no other.
func checkMBR(f *os.File) (string, error) {
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	b := make([]byte, sector)
	if _, err := f.ReadAt(b, 0); err != nil {
		return "", fmt.Errorf("reading the first sector: %w", err)
	}
	if b[510] != 0x55 || b[511] != 0xaa {
		return "", errors.New("the first sector has no MBR signature (55 AA)")
	}
	parts := b[446:510]
	if parts[4] != 0xee {
		return "", fmt.Errorf("the MBR's first partition has type 0x%02X, not 0xEE (GPT protective)", parts[4])
	}
	if !allZero(parts[16:]) {
		return "", errors.New("the MBR has more partitions than the protective one: a hybrid MBR")
	}
	start, size := binary.LittleEndian.Uint32(parts[8:]), binary.LittleEndian.Uint32(parts[12:])
	want := uint32(min(fi.Size()/sector-1, 0xffffffff))
	if start != 1 || size != want {
		return "", fmt.Errorf("the protective partition covers sectors %d to %d; the disk's are 1 to %d", start, uint64(start)+uint64(size)-1, want)
	}
	return fmt.Sprintf("one 0xEE partition over sectors 1 to %d", want), nil
}

// gptHeader is what checkGPT reads of a GPT header.
type gptHeader struct {
	self, alternate  uint64
	first, last      uint64 // usable sectors
	guid             []byte
	entriesLBA       uint64
	count, entrySize uint32
	entries          []byte
}

func readGPTHeader(f *os.File, lba uint64) (*gptHeader, error) {
	b := make([]byte, sector)
	if _, err := f.ReadAt(b, int64(lba)*sector); err != nil {
		return nil, fmt.Errorf("reading sector %d: %w", lba, err)
	}
	if string(b[:8]) != "EFI PART" {
		return nil, fmt.Errorf("no GPT header signature at sector %d", lba)
	}
	size := binary.LittleEndian.Uint32(b[12:])
	if size < 92 || size > sector {
		return nil, fmt.Errorf("the GPT header at sector %d has size %d", lba, size)
	}
	crc := binary.LittleEndian.Uint32(b[16:])
	hdr := bytes.Clone(b[:size])
	copy(hdr[16:20], []byte{0, 0, 0, 0})
	if crc32.ChecksumIEEE(hdr) != crc {
		return nil, fmt.Errorf("the GPT header at sector %d fails its CRC", lba)
	}
	h := &gptHeader{
		self: binary.LittleEndian.Uint64(b[24:]), alternate: binary.LittleEndian.Uint64(b[32:]),
		first: binary.LittleEndian.Uint64(b[40:]), last: binary.LittleEndian.Uint64(b[48:]),
		guid: bytes.Clone(b[56:72]), entriesLBA: binary.LittleEndian.Uint64(b[72:]),
		count: binary.LittleEndian.Uint32(b[80:]), entrySize: binary.LittleEndian.Uint32(b[84:]),
	}
	if h.self != lba {
		return nil, fmt.Errorf("the GPT header at sector %d says it is at sector %d", lba, h.self)
	}
	if h.entrySize < 128 || h.count == 0 || uint64(h.count)*uint64(h.entrySize) > 1<<20 {
		return nil, fmt.Errorf("the GPT header at sector %d has %d entries of %d bytes", lba, h.count, h.entrySize)
	}
	h.entries = make([]byte, int(h.count)*int(h.entrySize))
	if _, err := f.ReadAt(h.entries, int64(h.entriesLBA)*sector); err != nil {
		return nil, fmt.Errorf("reading the GPT entries at sector %d: %w", h.entriesLBA, err)
	}
	if crc32.ChecksumIEEE(h.entries) != binary.LittleEndian.Uint32(b[88:]) {
		return nil, fmt.Errorf("the GPT entries at sector %d fail their CRC", h.entriesLBA)
	}
	return h, nil
}

// checkGPT checks the primary GPT and the backup at the end of the disk
// (headers and entries pass their CRCs, point at each other and agree)
// and returns the table.
func checkGPT(f *os.File) (*gpt.Table, string, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, "", err
	}
	last := uint64(fi.Size()/sector - 1)
	primary, err := readGPTHeader(f, 1)
	if err != nil {
		return nil, "", fmt.Errorf("the primary GPT is damaged: %w", err)
	}
	backup, err := readGPTHeader(f, last)
	if err != nil {
		return nil, "", fmt.Errorf("the backup GPT is damaged: %w", err)
	}
	switch {
	case primary.alternate != last:
		return nil, "", fmt.Errorf("the primary GPT puts the backup at sector %d, but the disk ends at sector %d", primary.alternate, last)
	case backup.alternate != 1:
		return nil, "", fmt.Errorf("the backup GPT puts the primary at sector %d, not 1", backup.alternate)
	case !bytes.Equal(primary.guid, backup.guid) || primary.first != backup.first || primary.last != backup.last:
		return nil, "", errors.New("the primary and backup GPT headers disagree")
	case !bytes.Equal(primary.entries, backup.entries):
		return nil, "", errors.New("the primary and backup GPT partition entries differ")
	case primary.last >= backup.entriesLBA || primary.first <= primary.entriesLBA:
		return nil, "", fmt.Errorf("the usable sectors %d to %d overlap the GPT's own", primary.first, primary.last)
	}
	table, err := gpt.Read(f, sector, sector)
	if err != nil {
		return nil, "", fmt.Errorf("reading the GPT: %w", err)
	}
	for _, p := range table.Partitions {
		if p.Start < primary.first || p.End > primary.last || p.End < p.Start {
			return nil, "", fmt.Errorf("partition %d (sectors %d to %d) lies outside the usable sectors %d to %d", p.Index, p.Start, p.End, primary.first, primary.last)
		}
		for _, q := range table.Partitions {
			if q.Index > p.Index && q.Start <= p.End && p.Start <= q.End {
				return nil, "", fmt.Errorf("partitions %d and %d overlap", p.Index, q.Index)
			}
		}
	}
	return table, fmt.Sprintf("primary and backup GPT agree: disk %s, %d partitions", table.GUID, len(table.Partitions)), nil
}

// partition returns the table's partition with the index.
func partition(t *gpt.Table, index int) *gpt.Partition {
	for _, p := range t.Partitions {
		if p.Index == index {
			return p
		}
	}
	return nil
}

// partSpec is what a partition of an imgforge disk must be.
type partSpec struct {
	index           int
	name, typ, uuid string
	label           string
	size            int64 // 0: any
}

// checkPartition checks that a partition has the type, the label, the
// size unless it is 0, and the UUID unless it is empty.
func checkPartition(t *gpt.Table, want partSpec) (string, error) {
	p := partition(t, want.index)
	if p == nil {
		return "", fmt.Errorf("there is no partition %d", want.index)
	}
	if !strings.EqualFold(string(p.Type), want.typ) {
		return "", fmt.Errorf("partition %d has type %s; want %s", want.index, strings.ToUpper(string(p.Type)), want.typ)
	}
	if want.uuid != "" && !strings.EqualFold(p.GUID, want.uuid) {
		return "", fmt.Errorf("partition %d has UUID %s; the manifest says %s", want.index, p.GUID, strings.ToUpper(want.uuid))
	}
	if p.Name != want.label {
		return "", fmt.Errorf("partition %d is labelled %q; the manifest says %q", want.index, p.Name, want.label)
	}
	if want.size != 0 && int64(p.Size) != want.size {
		return "", fmt.Errorf("partition %d has %s; the manifest's layout says %s", want.index, units.Bytes(int64(p.Size)), units.Bytes(want.size))
	}
	return fmt.Sprintf("partition %d: type %s, UUID %s, label %q, %s", want.index, strings.ToUpper(string(p.Type)), p.GUID, p.Name, units.Bytes(int64(p.Size))), nil
}
