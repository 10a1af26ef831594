package disk

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestWriteRawCancel cancels WriteRaw while it copies a large root into
// the disk: it must return context.Canceled within a second and leave no
// disk behind.
func TestWriteRawCancel(t *testing.T) {
	l := fakeLayout(t, 9<<30)
	l.SlotSize = 4 << 30
	// A sparse 4 GiB root: reading it costs nothing, writing it takes a
	// while.
	if err := os.Truncate(l.Root, 4<<30); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "big.raw")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	at := make(chan time.Time, 1)
	go func() {
		// Cancel once the root's copy is well under way.
		for {
			var st syscall.Stat_t
			if syscall.Stat(out, &st) == nil && st.Blocks*512 > 128<<20 {
				at <- time.Now()
				cancel()
				return
			}
			if ctx.Err() != nil {
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	_, err := WriteRaw(ctx, out, l)
	var took time.Duration
	select {
	case c := <-at:
		took = time.Since(c)
	default:
		t.Fatalf("WriteRaw ended (%v) before the test could cancel it", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("WriteRaw = %v, want context.Canceled", err)
	}
	if took > time.Second {
		t.Errorf("WriteRaw returned %v after the cancel, want under a second", took)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a canceled WriteRaw left %s (%v)", out, err)
	}
}
