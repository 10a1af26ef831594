package build

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
)

// A fixed VHD (Azure's disk format) is the raw disk followed by a 512-byte
// footer, big-endian, described in Microsoft's "Virtual Hard Disk Image
// Format Specification": the cookie "conectix" at 0, the creation time at
// 24 (seconds since 2000-01-01 UTC), the disk type at 60 (2: fixed), the
// checksum at 64 (the ones' complement of the sum of the footer's bytes,
// itself counted as zero) and the disk's UUID at 68.
const (
	vhdFooterSize   = 512
	vhdTimeOff      = 24
	vhdSizeOff      = 48 // current size
	vhdTypeOff      = 60
	vhdChecksumOff  = 64
	vhdUUIDOff      = 68
	vhdTypeFixed    = 2
	vhdEpochSeconds = 946684800 // 2000-01-01T00:00:00Z
)

// setVHDFooter gives the footer of the fixed VHD at path the UUID uuid
// (16 bytes) and the time epoch (Unix seconds, clamped to the VHD's epoch
// of 2000), and its new checksum. qemu-img writes the current time and a
// random UUID there; nothing else in the file changes.
func setVHDFooter(path string, uuid []byte, epoch int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < vhdFooterSize {
		return fmt.Errorf("vhd %s: %d bytes, shorter than its footer", path, fi.Size())
	}
	at := fi.Size() - vhdFooterSize
	ft := make([]byte, vhdFooterSize)
	if _, err := f.ReadAt(ft, at); err != nil {
		return fmt.Errorf("reading the vhd footer of %s: %w", path, err)
	}
	if !bytes.Equal(ft[:8], []byte("conectix")) {
		return fmt.Errorf("vhd %s: no footer (no conectix cookie)", path)
	}
	if t := binary.BigEndian.Uint32(ft[vhdTypeOff:]); t != vhdTypeFixed {
		return fmt.Errorf("vhd %s: disk type %d, want %d (fixed)", path, t, vhdTypeFixed)
	}
	if sz := binary.BigEndian.Uint64(ft[vhdSizeOff:]); int64(sz) != at {
		return fmt.Errorf("vhd %s: the footer says %d bytes of disk, the file holds %d", path, sz, at)
	}
	ts := max(epoch-vhdEpochSeconds, 0)
	binary.BigEndian.PutUint32(ft[vhdTimeOff:], uint32(ts))
	copy(ft[vhdUUIDOff:vhdUUIDOff+16], uuid)
	binary.BigEndian.PutUint32(ft[vhdChecksumOff:], vhdChecksum(ft))
	if _, err := f.WriteAt(ft, at); err != nil {
		return err
	}
	return f.Close()
}

// vhdChecksum is the checksum of a VHD footer: the ones' complement of
// the sum of its bytes, with the checksum field counted as zero.
func vhdChecksum(ft []byte) uint32 {
	var sum uint32
	for i, b := range ft {
		if i >= vhdChecksumOff && i < vhdChecksumOff+4 {
			continue
		}
		sum += uint32(b)
	}
	return ^sum
}
