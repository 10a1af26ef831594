// Package ctxio makes long copies stop when their context ends: a Reader
// or Writer that returns the context's error once it is done, so that a
// copy loop of gigabytes (a layer, a disk, an ISO, a hash) ends within one
// buffer of a Ctrl-C, not at its end.
package ctxio

import (
	"context"
	"io"
)

// Reader returns r, failing with ctx.Err() once ctx is done.
func Reader(ctx context.Context, r io.Reader) io.Reader {
	if ctx.Done() == nil {
		return r
	}
	return &reader{ctx: ctx, r: r}
}

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (r *reader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// Writer returns w, failing with ctx.Err() once ctx is done.
func Writer(ctx context.Context, w io.Writer) io.Writer {
	if ctx.Done() == nil {
		return w
	}
	return &writer{ctx: ctx, w: w}
}

type writer struct {
	ctx context.Context
	w   io.Writer
}

func (w *writer) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	return w.w.Write(p)
}

// Copy is io.Copy that stops with ctx.Err() once ctx is done.
func Copy(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	return io.Copy(dst, Reader(ctx, src))
}
