package ctxio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
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

// TestCopyFile checks that CopyFile gives a file's bytes as a read does,
// holes included, wherever they are.
func TestCopyFile(t *testing.T) {
	const mib = 1 << 20
	data := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + 1)
		}
		return b
	}
	tests := []struct {
		name  string
		size  int64
		parts map[int64]int // offset -> data bytes written there
	}{
		{"empty", 0, nil},
		{"no holes", 3*mib + 5, map[int64]int{0: 3*mib + 5}},
		{"all hole", 5*mib + 3, nil},
		{"hole first", 4 * mib, map[int64]int{3 * mib: mib}},
		{"hole last", 6*mib + 1, map[int64]int{0: 100}},
		{"holes between", 20 * mib, map[int64]int{0: 4096, 5 * mib: 70000, 12*mib + 4096: 3, 19 * mib: mib}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f")
			f, err := os.Create(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(tt.size); err != nil {
				t.Fatal(err)
			}
			for off, n := range tt.parts {
				if _, err := f.WriteAt(data(n), off); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			// From wherever the file's offset is: CopyFile reads from the start.
			if _, err := f.Seek(12345, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			n, err := CopyFile(context.Background(), &got, f)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(want)) || !bytes.Equal(got.Bytes(), want) {
				t.Errorf("CopyFile gave %d bytes (equal: %v), want the file's %d", n, bytes.Equal(got.Bytes(), want), len(want))
			}
		})
	}

	// A cancelled context stops it, in a hole too.
	p := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 * mib); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := CopyFile(ctx, io.Discard, f); !errors.Is(err, context.Canceled) {
		t.Errorf("CopyFile with a cancelled context: %v, want context.Canceled", err)
	}
}
