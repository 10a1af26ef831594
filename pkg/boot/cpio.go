package boot

import (
	"bytes"
	"fmt"
	"path"
	"strings"
)

// OverlayPath is where the overlay image (the squashfs of imgforge's own
// files, its hash tree right after it) is in the initramfs: the boot
// entry's second initrd, a cpio archive, puts it there.
const OverlayPath = "/imgforge/overlay.img"

// Cpio writes files as an uncompressed cpio archive in the "newc" format
// that the kernel unpacks into its initramfs (Documentation/
// driver-api/early-userspace/buffer-format.rst), with their parent
// folders first. Every time is epoch and every owner root, so the same
// files give the same bytes. A bootloader may hand the kernel several
// initrds: it unpacks them in order into one file system.
func Cpio(files []File, epoch int64) []byte {
	var b bytes.Buffer
	ino := 0
	dirs := map[string]bool{}
	entry := func(name string, mode int64, data []byte) {
		ino++
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, epoch, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name)
		b.WriteByte(0)
		pad(&b)
		b.Write(data)
		pad(&b)
	}
	for _, f := range files {
		name := strings.TrimPrefix(path.Clean(f.Path), "/")
		var parents []string
		for d := path.Dir(name); d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			dirs[parents[i]] = true
			entry(parents[i], 0o040755, nil)
		}
		entry(name, 0o100000|f.Mode, f.Data)
	}
	ino = -1 // the trailer's fields are all zero
	entry("TRAILER!!!", 0, nil)
	return b.Bytes()
}

func pad(b *bytes.Buffer) {
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
}

// PadInitrd pads an initramfs with zeros to a multiple of 4 bytes. A boot
// loader hands the kernel several initrds one after the other; the kernel
// takes an archive that follows a compressed one for a cpio archive only
// when it starts at a multiple of 4 bytes, and skips zeros before it
// ("invalid magic at start of compressed archive" otherwise).
func PadInitrd(b []byte) []byte {
	if n := len(b) % 4; n != 0 {
		b = append(b, make([]byte, 4-n)...)
	}
	return b
}
