package update

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// FuzzReadGPT feeds arbitrary disks to the GPT reader: it must not
// panic, and a table it accepts must be one it can rewrite.
func FuzzReadGPT(f *testing.F) {
	f.Add(make([]byte, 4096))
	f.Add(tinyGPT())
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ReadGPT(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		for _, p := range g.Partitions {
			_ = p.Label
		}
		_, _ = ReadLayout(g)
	})
}

// TestReadGPTBroken: a cut disk or a flipped bit is refused.
func TestReadGPTBroken(t *testing.T) {
	v1 := makeImage(t, "lb", 1)
	disk, _ := makeDisk(t, v1)
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadGPT(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
	// Cut the disk: the backup header is gone.
	if _, err := ReadGPT(bytes.NewReader(b[:len(b)/2]), int64(len(b)/2)); err == nil {
		t.Error("a disk without its backup GPT was read")
	}
	// A flipped bit in an entry breaks its CRC32.
	b[1024+200] ^= 1
	if _, err := ReadGPT(bytes.NewReader(b), int64(len(b))); err == nil {
		t.Error("an entry array with a wrong CRC32 was read")
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("console=ttyS0 boot=imgforge imgforge.slot=a imgforge.root=PARTUUID=1d2c3b4a-0000-4000-8000-000000000000")
	f.Add("imgforge.slot=b imgforge.root=LABEL=x")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCmdline(s)
		if err == nil && (c.Slot != "a" && c.Slot != "b" || c.Root == "") {
			t.Errorf("accepted %q as %+v", s, c)
		}
	})
}

func TestSlotLabel(t *testing.T) {
	for _, tc := range []struct{ role, version, want string }{
		{"lb", "0123456789ab", "lb_0123456789ab"},
		{"a-very-long-role-name-of-thirty", "0123456789ab", "a-very-long-role-name-o_0123456789ab"},
	} {
		got := SlotLabel(tc.role, tc.version)
		if got != tc.want {
			t.Errorf("SlotLabel(%q, %q) = %q", tc.role, tc.version, got)
		}
		if _, err := encodeName(got); err != nil {
			t.Error(err)
		}
	}
}

// tinyGPT is a 20-sector disk with the slot layout: 8 GPT entries, six
// partitions of two sectors.
func tinyGPT() []byte {
	const sector, entries, sectors = 512, 8, 20
	b := make([]byte, sectors*sector)
	ents := make([]byte, entries*gptEntrySize)
	for i, ty := range []string{TypeESP, TypeRoot, TypeVerity, TypeRoot, TypeVerity, TypeVar} {
		e := ents[i*gptEntrySize:]
		g, _ := ParseGUID(ty)
		copy(e, g[:])
		e[16] = byte(i + 1)
		binary.LittleEndian.PutUint64(e[32:], uint64(4+2*i))
		binary.LittleEndian.PutUint64(e[40:], uint64(5+2*i))
		name, _ := encodeName([]string{"esp", "lb_0123456789ab", "lb_0123456789ab", EmptyLabel, EmptyLabel, "imgforge-state"}[i])
		copy(e[56:], name[:])
	}
	hdr := func(my, alt, ent uint64) []byte {
		h := make([]byte, sector)
		copy(h, gptSignature)
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], gptHeaderSize)
		binary.LittleEndian.PutUint64(h[24:], my)
		binary.LittleEndian.PutUint64(h[32:], alt)
		binary.LittleEndian.PutUint64(h[40:], 4)
		binary.LittleEndian.PutUint64(h[48:], 16)
		h[56] = 0xd1
		binary.LittleEndian.PutUint64(h[72:], ent)
		binary.LittleEndian.PutUint32(h[80:], entries)
		binary.LittleEndian.PutUint32(h[84:], gptEntrySize)
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(ents))
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:gptHeaderSize]))
		return h
	}
	copy(b[1*sector:], hdr(1, sectors-1, 2))
	copy(b[2*sector:], ents)
	copy(b[(sectors-3)*sector:], ents)
	copy(b[(sectors-1)*sector:], hdr(sectors-1, 1, sectors-3))
	return b
}

func TestTinyGPT(t *testing.T) {
	g, err := ReadGPT(bytes.NewReader(tinyGPT()), 20*512)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLayout(g); err != nil {
		t.Fatal(err)
	}
	if *writeCorpus {
		dir := filepath.Join("testdata", "fuzz", "FuzzReadGPT")
		os.MkdirAll(dir, 0o755)
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\n", strconv.Quote(string(tinyGPT())))
		if err := os.WriteFile(filepath.Join(dir, "tiny-slot-layout"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var writeCorpus = flag.Bool("write-corpus", false, "write the seed corpus of FuzzReadGPT into testdata/fuzz")
