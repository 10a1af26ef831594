package boot

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/internal/testtool"
)

func TestAssembleUKI(t *testing.T) {
	stubs := map[string][]byte{"tiny": testtool.TinyEFI(0x1000, 0x200)}
	// systemd's own stub, when this machine has it (systemd-boot-efi), or
	// IMGFORGE_EFI_STUB names one.
	p := os.Getenv("IMGFORGE_EFI_STUB")
	if p == "" {
		p = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	}
	if b, err := os.ReadFile(p); err == nil {
		stubs["systemd"] = b
	}
	secs := []UKISection{
		{".osrel", []byte("ID=debian\nVERSION_ID=12\n")},
		{".cmdline", []byte("root=PARTUUID=x roothash=abc quiet")},
		{".initrd", bytes.Repeat([]byte{7}, 5000)},
		{".linux", bytes.Repeat([]byte{9}, 70001)},
	}
	for name, stub := range stubs {
		t.Run(name, func(t *testing.T) {
			uki, err := AssembleUKI(stub, secs)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := AssembleUKI(stub, secs)
			if !bytes.Equal(uki, again) {
				t.Error("two assemblies differ")
			}
			f, err := pe.NewFile(bytes.NewReader(uki))
			if err != nil {
				t.Fatal(err)
			}
			orig, _ := pe.NewFile(bytes.NewReader(stub))
			oh := f.OptionalHeader.(*pe.OptionalHeader64)
			if len(f.Sections) != len(orig.Sections)+len(secs) {
				t.Fatalf("%d sections, want %d", len(f.Sections), len(orig.Sections)+len(secs))
			}
			for i, s := range orig.Sections {
				a, _ := s.Data()
				b, _ := f.Sections[i].Data()
				if !bytes.Equal(a, b) || s.VirtualAddress != f.Sections[i].VirtualAddress {
					t.Errorf("the stub's section %s changed", s.Name)
				}
			}
			prevEnd := uint32(0)
			for _, s := range f.Sections {
				prevEnd = max(prevEnd, s.VirtualAddress+s.VirtualSize)
			}
			for i, want := range secs {
				s := f.Sections[len(orig.Sections)+i]
				data, _ := s.Data()
				if s.Name != want.Name || !bytes.Equal(data[:s.VirtualSize], want.Data) {
					t.Errorf("section %d: %q with %d bytes, want %q with %d", i, s.Name, s.VirtualSize, want.Name, len(want.Data))
				}
				if s.VirtualAddress%oh.SectionAlignment != 0 || s.Offset%oh.FileAlignment != 0 {
					t.Errorf("section %s at %#x (file %#x): not aligned", s.Name, s.VirtualAddress, s.Offset)
				}
				for _, o := range f.Sections {
					if o != s && s.VirtualAddress < o.VirtualAddress+o.VirtualSize && o.VirtualAddress < s.VirtualAddress+s.VirtualSize {
						t.Errorf("sections %s and %s overlap", s.Name, o.Name)
					}
				}
			}
			if oh.SizeOfImage < prevEnd || oh.SizeOfImage%oh.SectionAlignment != 0 {
				t.Errorf("SizeOfImage %#x, sections end at %#x", oh.SizeOfImage, prevEnd)
			}
			if oh.CheckSum != peChecksum(uki, int(binary.LittleEndian.Uint32(uki[0x3c:]))+4+20+64) {
				t.Error("the checksum is not the file's")
			}
		})
	}
}

func TestAssembleUKIErrors(t *testing.T) {
	signed := testtool.TinyEFI(0x1000, 0x200)
	binary.LittleEndian.PutUint64(signed[0x58+112+8*4:], 0x600_00000100)
	trailing := append(testtool.TinyEFI(0x1000, 0x200), "signature"...)
	many := make([]UKISection, 20)
	for i := range many {
		many[i] = UKISection{".s" + string(rune('a'+i)), []byte("x")}
	}
	for _, tc := range []struct {
		name string
		stub []byte
		secs []UKISection
		want string
	}{
		{"not PE", []byte("#!/bin/sh\n" + strings.Repeat(" ", 100)), nil, "no MZ header"},
		{"signed", signed, nil, "the EFI stub is signed"},
		{"trailing data", trailing, nil, "bytes after its last section"},
		{"long name", testtool.TinyEFI(0x1000, 0x200), []UKISection{{".cmdline2", nil}}, `section name ".cmdline2"`},
		{"no room", testtool.TinyEFI(0x1000, 0x200), many, "room for"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := AssembleUKI(tc.stub, tc.secs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestUKIAndSections: UKI puts os-release, the command line, the
// initrds joined and the kernel in their sections, and UKISectionData
// reads each back without its padding.
func TestUKIAndSections(t *testing.T) {
	uki, err := UKI(testtool.TinyEFI(0x1000, 0x200), []byte("KERNEL"), [][]byte{[]byte("init"), nil, []byte("rd")}, "boot=imgforge imgforge.slot=a", []byte("ID=debian\n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{".cmdline": "boot=imgforge imgforge.slot=a", ".initrd": "initrd", ".linux": "KERNEL", ".osrel": "ID=debian\n"} {
		got, err := UKISectionData(uki, name)
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := UKISectionData(uki, ".splash"); err == nil || !strings.Contains(err.Error(), "no .splash section") {
		t.Errorf("a missing section: %v", err)
	}
	if _, err := UKISectionData([]byte("not a PE"), ".cmdline"); err == nil {
		t.Error("a file that is not PE was read")
	}
}

// TestESPWithUKI: a slot with a UKI gets an efi entry with no options
// (the command line is the UKI's, under its signature) and only the UKI
// on the ESP.
func TestESPWithUKI(t *testing.T) {
	files := ESP([]byte("signed loader"), Slot{Name: "a", Gen: 1, Title: "imgforge lb", Cmdline: "boot=imgforge", Kernel: []byte("k"), Initrd: []byte("i"), UKI: []byte("uki")})
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
		if f.Path == EntriesDir+"/imgforge-0001-a.conf" && string(f.Data) != "title imgforge lb\nversion 1\nefi /imgforge/a/imgforge.efi\n" {
			t.Errorf("entry %q", f.Data)
		}
	}
	want := "/EFI/BOOT/BOOTX64.EFI /imgforge/a/imgforge.efi /loader/entries/imgforge-0001-a.conf /loader/loader.conf"
	if strings.Join(paths, " ") != want {
		t.Errorf("ESP files %v, want %s", paths, want)
	}
}
