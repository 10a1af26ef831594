package disk

import (
	"encoding/binary"
	"fmt"
	"io"
)

// fixFAT32 corrects two things go-diskfs v1.9.4 writes that fsck.vfat
// (and the FAT specification) reject, in the FAT32 file system that starts
// at off in f: the ".." entry of a directory in the root must point at
// cluster 0, not at the root's cluster; and the FSInfo sector must carry
// the real free cluster count and next free cluster, not "unknown".
func fixFAT32(f interface {
	io.ReaderAt
	io.WriterAt
}, off int64) error {
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, off); err != nil {
		return fmt.Errorf("reading the FAT boot sector: %w", err)
	}
	bps := int64(binary.LittleEndian.Uint16(bs[11:]))
	spc := int64(bs[13])
	reserved := int64(binary.LittleEndian.Uint16(bs[14:]))
	fats := int64(bs[16])
	total := int64(binary.LittleEndian.Uint32(bs[32:]))
	fatSize := int64(binary.LittleEndian.Uint32(bs[36:]))
	rootCluster := binary.LittleEndian.Uint32(bs[44:])
	fsInfo := int64(binary.LittleEndian.Uint16(bs[48:]))
	if bps == 0 || spc == 0 || fatSize == 0 || string(bs[82:87]) != "FAT32" {
		return fmt.Errorf("not a FAT32 file system")
	}
	fatOff := off + reserved*bps
	dataOff := fatOff + fats*fatSize*bps
	clusterBytes := spc * bps
	clusterOff := func(c uint32) int64 { return dataOff + int64(c-2)*clusterBytes }

	// ".." of the root's subdirectories. The root directory is assumed to
	// fit in its first cluster chain element, which holds for an ESP.
	root := make([]byte, clusterBytes)
	if _, err := f.ReadAt(root, clusterOff(rootCluster)); err != nil {
		return err
	}
	for i := 0; i+32 <= len(root); i += 32 {
		e := root[i : i+32]
		if e[0] == 0 {
			break
		}
		if e[0] == 0xe5 || e[11] == 0x0f || e[11]&0x10 == 0 || e[0] == '.' {
			continue
		}
		c := uint32(binary.LittleEndian.Uint16(e[20:]))<<16 | uint32(binary.LittleEndian.Uint16(e[26:]))
		dotdot := make([]byte, 32)
		at := clusterOff(c) + 32
		if _, err := f.ReadAt(dotdot, at); err != nil {
			return err
		}
		if string(dotdot[:2]) != ".." {
			continue
		}
		dotdot[20], dotdot[21], dotdot[26], dotdot[27] = 0, 0, 0, 0
		if _, err := f.WriteAt(dotdot, at); err != nil {
			return err
		}
	}

	// Free cluster count and next free cluster.
	clusters := (total - reserved - fats*fatSize) / spc
	fat := make([]byte, fatSize*bps)
	if _, err := f.ReadAt(fat, fatOff); err != nil {
		return err
	}
	var free, next uint32
	next = 0xffffffff
	for c := int64(2); c < clusters+2 && 4*c+4 <= int64(len(fat)); c++ {
		if binary.LittleEndian.Uint32(fat[4*c:])&0x0fffffff == 0 {
			free++
			if next == 0xffffffff {
				next = uint32(c)
			}
		}
	}
	info := make([]byte, 512)
	if _, err := f.ReadAt(info, off+fsInfo*bps); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(info[488:], free)
	binary.LittleEndian.PutUint32(info[492:], next)
	if _, err := f.WriteAt(info, off+fsInfo*bps); err != nil {
		return err
	}
	// The backup FSInfo sector, when there is one, says the same.
	backup := int64(binary.LittleEndian.Uint16(bs[50:]))
	if backup > 0 && backup < reserved {
		if _, err := f.WriteAt(info, off+(backup+fsInfo)*bps); err != nil {
			return err
		}
	}
	return nil
}
