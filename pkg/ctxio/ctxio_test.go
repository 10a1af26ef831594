package ctxio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// endless never ends, and cancels ctx after some reads.
type endless struct {
	n      int
	cancel func()
}

func (e *endless) Read(p []byte) (int, error) {
	e.n++
	if e.n == 10 {
		e.cancel()
	}
	return len(p), nil
}

func TestCopyStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	src := &endless{cancel: cancel}
	n, err := Copy(ctx, io.Discard, src)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Copy = %d, %v; want context.Canceled", n, err)
	}
	if src.n > 11 {
		t.Errorf("read %d times after the cancel", src.n-10)
	}
	var buf bytes.Buffer
	if _, err := Writer(ctx, &buf).Write([]byte("x")); !errors.Is(err, context.Canceled) || buf.Len() != 0 {
		t.Errorf("Writer after cancel: %v, wrote %d", err, buf.Len())
	}
	if r := Reader(context.Background(), src); r != io.Reader(src) {
		t.Errorf("a context that never ends wrapped the reader")
	}
}
