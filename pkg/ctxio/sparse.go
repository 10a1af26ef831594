package ctxio

import (
	"context"
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// DataRegions calls fn with each data region [start, end) of f, in
// order, as SEEK_DATA and SEEK_HOLE report them; what lies between the
// regions, and after the last one up to f's size, is holes (zeros). Where
// the file system does not report holes, the whole file is one region.
// It stops with ctx.Err() once ctx is done, or with fn's error.
func DataRegions(ctx context.Context, f *os.File, fn func(start, end int64) error) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	fd := int(f.Fd())
	for pos := int64(0); pos < size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		start, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // only a hole is left
		}
		if err != nil {
			start = pos // no SEEK_DATA here: read it all
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			end = size
		}
		end = min(end, size)
		if start >= end {
			return nil
		}
		if err := fn(start, end); err != nil {
			return err
		}
		pos = end
	}
	return nil
}

// zeros stands in for a hole's bytes.
var zeros = make([]byte, 1<<20)

// CopyFile copies the whole of f, from its start, to dst, as a read of it
// would give it, but reads only its data (DataRegions): a hole is written
// to dst as zeros from memory, not read from the kernel, which would
// clear a page for each of its 4 KiB. Hashing the 2 GiB raw disk, mostly
// holes, was most of an overlay edit's rebuild (the kernel's page
// clearing a quarter of its CPU). It stops with ctx.Err() once ctx is
// done.
func CopyFile(ctx context.Context, dst io.Writer, f *os.File) (int64, error) {
	var n int64
	// zerosTo writes the hole [n, to).
	zerosTo := func(to int64) error {
		for n < to {
			if err := ctx.Err(); err != nil {
				return err
			}
			k, err := dst.Write(zeros[:min(int64(len(zeros)), to-n)])
			n += int64(k)
			if err != nil {
				return err
			}
		}
		return nil
	}
	err := DataRegions(ctx, f, func(start, end int64) error {
		if err := zerosTo(start); err != nil {
			return err
		}
		k, err := Copy(ctx, dst, io.NewSectionReader(f, start, end-start))
		n += k
		if err == nil && n < end {
			err = io.ErrUnexpectedEOF
		}
		return err
	})
	if err != nil {
		return n, err
	}
	st, err := f.Stat()
	if err != nil {
		return n, err
	}
	return n, zerosTo(st.Size())
}
