package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// A unified kernel image (UKI) is systemd's EFI stub (linuxx64.efi.stub,
// from systemd-boot-efi) with the kernel, the initrd, the command line and
// os-release added as PE sections: one file that firmware or systemd-boot
// starts, and that one Authenticode signature covers, command line
// included. systemd's ukify builds them in Python; objcopy can too. This
// does the same in Go, byte for byte the same for the same inputs.

// UKISection is one section to add: a name of at most 8 bytes (.osrel,
// .cmdline, .initrd, .linux, ...) and its contents.
type UKISection struct {
	Name string
	Data []byte
}

// PE/COFF offsets and values used below (the PE format specification).
const (
	peSignatureOffset    = 0x3c
	coffHeaderSize       = 20
	sectionHeaderSize    = 40
	pe32PlusMagic        = 0x20b
	optSizeOfInitData    = 8
	optSectionAlignment  = 32
	optFileAlignment     = 36
	optSizeOfImage       = 56
	optSizeOfHeaders     = 60
	optCheckSum          = 64
	optDataDirectories   = 112
	dataDirSecurity      = 4
	scnInitializedData   = 0x00000040
	scnMemRead           = 0x40000000
	maxUKISectionNameLen = 8
)

// AssembleUKI returns stub with sections appended, in their order, after
// the stub's own: each at the next virtual address aligned to the stub's
// section alignment, its bytes at the end of the file aligned to its file
// alignment. The stub must be an unsigned PE32+ image whose headers have
// room for the new section headers (systemd's stubs have room for
// seven). The header checksum is computed again.
func AssembleUKI(stub []byte, sections []UKISection) ([]byte, error) {
	if len(stub) < 0x40 || stub[0] != 'M' || stub[1] != 'Z' {
		return nil, errors.New("the EFI stub is not a PE image (no MZ header)")
	}
	pe := int(binary.LittleEndian.Uint32(stub[peSignatureOffset:]))
	if pe+4+coffHeaderSize > len(stub) || string(stub[pe:pe+4]) != "PE\x00\x00" {
		return nil, errors.New("the EFI stub is not a PE image (no PE signature)")
	}
	coff := pe + 4
	nsec := int(binary.LittleEndian.Uint16(stub[coff+2:]))
	optSize := int(binary.LittleEndian.Uint16(stub[coff+16:]))
	opt := coff + coffHeaderSize
	if opt+optSize > len(stub) || optSize < optDataDirectories+8*(dataDirSecurity+1) {
		return nil, errors.New("the EFI stub's optional header is truncated")
	}
	if m := binary.LittleEndian.Uint16(stub[opt:]); m != pe32PlusMagic {
		return nil, fmt.Errorf("the EFI stub is not PE32+ (magic %#x)", m)
	}
	if sec := stub[opt+optDataDirectories+8*dataDirSecurity:]; binary.LittleEndian.Uint64(sec) != 0 {
		return nil, errors.New("the EFI stub is signed: sections cannot be added to a signed image; use the unsigned stub")
	}
	secAlign := binary.LittleEndian.Uint32(stub[opt+optSectionAlignment:])
	fileAlign := binary.LittleEndian.Uint32(stub[opt+optFileAlignment:])
	sizeOfHeaders := binary.LittleEndian.Uint32(stub[opt+optSizeOfHeaders:])
	if secAlign == 0 || fileAlign == 0 || secAlign&(secAlign-1) != 0 || fileAlign&(fileAlign-1) != 0 {
		return nil, fmt.Errorf("the EFI stub has alignments %#x and %#x, not powers of two", secAlign, fileAlign)
	}
	table := opt + optSize
	end := table + nsec*sectionHeaderSize
	if uint32(end+len(sections)*sectionHeaderSize) > sizeOfHeaders {
		return nil, fmt.Errorf("the EFI stub's headers have room for %d more sections, not %d", (int(sizeOfHeaders)-end)/sectionHeaderSize, len(sections))
	}
	// Where the stub's sections end, in memory and in the file.
	var vaEnd, rawEnd uint32
	for i := range nsec {
		h := stub[table+i*sectionHeaderSize:]
		vsize, va := binary.LittleEndian.Uint32(h[8:]), binary.LittleEndian.Uint32(h[12:])
		rsize, rptr := binary.LittleEndian.Uint32(h[16:]), binary.LittleEndian.Uint32(h[20:])
		if va < sizeOfHeaders && vsize > 0 {
			return nil, fmt.Errorf("the EFI stub's section %d lies in its headers", i)
		}
		if rptr > 0 && rptr < uint32(end+len(sections)*sectionHeaderSize) {
			return nil, fmt.Errorf("the EFI stub's section %d starts before its headers would end", i)
		}
		vaEnd = max(vaEnd, va+max(vsize, rsize))
		rawEnd = max(rawEnd, rptr+rsize)
	}
	// A COFF symbol table (and its string table) may follow the sections,
	// as in Debian's stub: nothing reads it at run time, so it is left
	// out, unless a section's name lives in its string table.
	symtab := binary.LittleEndian.Uint32(stub[coff+8:])
	if symtab != 0 && symtab == rawEnd {
		for i := range nsec {
			if stub[table+i*sectionHeaderSize] == '/' {
				return nil, errors.New("the EFI stub's section names are in its COFF string table")
			}
		}
		stub = stub[:rawEnd]
	}
	if int(rawEnd) != len(stub) {
		return nil, fmt.Errorf("the EFI stub has %d bytes after its last section (a signature, or data other than a symbol table); accepted: a stub whose sections end the file", len(stub)-int(rawEnd))
	}

	out := append([]byte(nil), stub...)
	if symtab != 0 {
		binary.LittleEndian.PutUint32(out[coff+8:], 0)  // PointerToSymbolTable
		binary.LittleEndian.PutUint32(out[coff+12:], 0) // NumberOfSymbols
	}
	va := alignUp(vaEnd, secAlign)
	var initData uint32
	for i, s := range sections {
		if s.Name == "" || len(s.Name) > maxUKISectionNameLen {
			return nil, fmt.Errorf("section name %q: accepted: 1 to 8 bytes", s.Name)
		}
		raw := alignUp(uint32(len(s.Data)), fileAlign)
		if uint64(len(out))+uint64(raw) > 1<<32-1 || uint64(va)+uint64(len(s.Data)) > 1<<32-1 {
			return nil, errors.New("the unified kernel image would exceed 4 GiB")
		}
		h := out[end+i*sectionHeaderSize : end+(i+1)*sectionHeaderSize]
		clear(h)
		copy(h[0:8], s.Name)
		binary.LittleEndian.PutUint32(h[8:], uint32(len(s.Data)))
		binary.LittleEndian.PutUint32(h[12:], va)
		binary.LittleEndian.PutUint32(h[16:], raw)
		binary.LittleEndian.PutUint32(h[20:], uint32(len(out)))
		binary.LittleEndian.PutUint32(h[36:], scnInitializedData|scnMemRead)
		out = append(out, s.Data...)
		out = append(out, make([]byte, int(raw)-len(s.Data))...)
		initData += raw
		va = alignUp(va+uint32(len(s.Data)), secAlign)
	}
	binary.LittleEndian.PutUint16(out[coff+2:], uint16(nsec+len(sections)))
	binary.LittleEndian.PutUint32(out[opt+optSizeOfImage:], va)
	binary.LittleEndian.PutUint32(out[opt+optSizeOfInitData:], binary.LittleEndian.Uint32(out[opt+optSizeOfInitData:])+initData)
	binary.LittleEndian.PutUint32(out[opt+optCheckSum:], 0)
	binary.LittleEndian.PutUint32(out[opt+optCheckSum:], peChecksum(out, opt+optCheckSum))
	return out, nil
}

func alignUp(n, a uint32) uint32 { return (n + a - 1) &^ (a - 1) }

// peChecksum is the PE image checksum (as imagehlp's CheckSumMappedFile):
// the 16-bit one's-complement sum of the file's 16-bit words, the
// checksum field itself skipped, plus the file's length.
func peChecksum(b []byte, field int) uint32 {
	var sum uint64
	for i := 0; i+1 < len(b); i += 2 {
		if i == field || i == field+2 {
			continue
		}
		sum += uint64(binary.LittleEndian.Uint16(b[i:]))
		sum = (sum & 0xffff) + (sum >> 16)
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1])
		sum = (sum & 0xffff) + (sum >> 16)
	}
	sum = (sum & 0xffff) + (sum >> 16)
	return uint32(sum) + uint32(len(b))
}

// UKI is the unified kernel image of a slot: stub with os-release, the
// command line, the initrds (concatenated, each already padded to 4
// bytes, as the kernel reads a chain of cpio archives) and the kernel.
func UKI(stub, kernel []byte, initrds [][]byte, cmdline string, osRelease []byte) ([]byte, error) {
	return AssembleUKI(stub, []UKISection{
		{Name: ".osrel", Data: osRelease},
		{Name: ".cmdline", Data: []byte(cmdline)},
		{Name: ".initrd", Data: bytes.Join(initrds, nil)},
		{Name: ".linux", Data: kernel},
	})
}

// UKISectionData returns the contents of section name of a UKI (such as
// .cmdline), without the zero padding to its file alignment.
func UKISectionData(uki []byte, name string) ([]byte, error) {
	return imagemeta.UKISection(bytes.NewReader(uki), name)
}
