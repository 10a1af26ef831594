package testtool

import "encoding/binary"

// TinyEFI is a minimal unsigned PE32+ EFI application with one .text
// section, aligned to secAlign in memory and fileAlign in the file: a
// stand-in for systemd's EFI stub that sbsign signs and debug/pe reads.
func TinyEFI(secAlign, fileAlign uint32) []byte {
	b := make([]byte, 0x600)
	b[0], b[1] = 'M', 'Z'
	le := binary.LittleEndian
	le.PutUint32(b[0x3c:], 0x40)
	copy(b[0x40:], "PE\x00\x00")
	coff := 0x44
	le.PutUint16(b[coff:], 0x8664)    // x86-64
	le.PutUint16(b[coff+2:], 1)       // one section
	le.PutUint16(b[coff+16:], 240)    // PE32+ optional header with 16 data directories
	le.PutUint16(b[coff+18:], 0x0022) // executable, large-address aware
	opt := coff + 20
	le.PutUint16(b[opt:], 0x20b)
	le.PutUint32(b[opt+32:], secAlign)
	le.PutUint32(b[opt+36:], fileAlign)
	le.PutUint32(b[opt+56:], 0x2000) // SizeOfImage
	le.PutUint32(b[opt+60:], 0x400)  // SizeOfHeaders
	le.PutUint16(b[opt+68:], 10)     // EFI application
	le.PutUint32(b[opt+108:], 16)
	sh := opt + 240
	copy(b[sh:], ".text")
	le.PutUint32(b[sh+8:], 0x10)
	le.PutUint32(b[sh+12:], 0x1000)
	le.PutUint32(b[sh+16:], 0x200)
	le.PutUint32(b[sh+20:], 0x400)
	le.PutUint32(b[sh+36:], 0x60000020)
	copy(b[0x400:], "\xc3 stub code")
	return b
}
