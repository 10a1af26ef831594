package ctxio

import (
	"context"
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// zeros stands in for a hole's bytes.
var zeros = make([]byte, 1<<20)

// CopyFile copies the whole of f, from its start, to dst, as a read of it
// would give it, but reads only its data: a hole (SEEK_HOLE) is written
// to dst as zeros from memory, not read from the kernel, which would
// clear a page for each of its 4 KiB. Hashing the 2 GiB raw disk, mostly
// holes, was most of an overlay edit's rebuild (the kernel's page
// clearing a quarter of its CPU). Where the file system does not report
// holes, it is an ordinary copy. It stops with ctx.Err() once ctx is done.
func CopyFile(ctx context.Context, dst io.Writer, f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	fd := int(f.Fd())
	var n int64
	for off := int64(0); off < size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO): // no data after off: a hole to the end
			data = size
		case err != nil:
			if off != 0 { // SEEK_DATA worked before: a real error
				return n, err
			}
			// No hole reporting here: read it all.
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return n, err
			}
			return Copy(ctx, dst, f)
		}
		data = min(data, size)
		// The hole [off, data).
		for off < data {
			if err := ctx.Err(); err != nil {
				return n, err
			}
			k, err := dst.Write(zeros[:min(int64(len(zeros)), data-off)])
			n += int64(k)
			off += int64(k)
			if err != nil {
				return n, err
			}
		}
		if data == size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return n, err
		}
		hole = min(hole, size)
		// The data [data, hole).
		k, err := Copy(ctx, dst, io.NewSectionReader(f, data, hole-data))
		n += k
		off = data + k
		if err != nil {
			return n, err
		}
		if off < hole {
			return n, io.ErrUnexpectedEOF
		}
	}
	return n, nil
}
