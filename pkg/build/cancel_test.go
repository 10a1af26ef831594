package build

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/layer"
)

// zeros is an endless stream of zeros.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// hugeTar is a tar of one 1 TiB file, made as it is read.
func hugeTar() io.Reader {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		const size = 1 << 40
		if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: size}); err != nil {
			pw.CloseWithError(err)
			return
		}
		_, err := io.CopyN(tw, zeros{}, size)
		pw.CloseWithError(err)
	}()
	return pr
}

// TestWriteLayerCancel cancels the normalising of a large layer: the
// stage must return context.Canceled within a second and leave no blob
// in the cache.
func TestWriteLayerCancel(t *testing.T) {
	dir := t.TempDir()
	c, err := cache.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := &Builder{o: Options{Cache: c}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := hugeTar()
	type result struct {
		err error
		at  time.Time
	}
	done := make(chan result, 1)
	go func() {
		_, err := b.writeLayer(ctx, true, func(w io.Writer) error {
			_, err := layer.Normalize(ctx, w, src, layer.Normalizer{}, nil, nil)
			return err
		})
		done <- result{err, time.Now()}
	}()
	time.Sleep(300 * time.Millisecond) // well into the file
	canceled := time.Now()
	cancel()
	var r result
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("writeLayer did not return within 5s of the cancel")
	}
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("writeLayer = %v, want context.Canceled", r.err)
	}
	if took := r.at.Sub(canceled); took > time.Second {
		t.Errorf("writeLayer returned %v after the cancel, want under a second", took)
	}
	for _, sub := range []string{"blobs/sha256", "tmp"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			t.Errorf("a canceled layer left %s/%s", sub, e.Name())
		}
	}
}

// A tool killed because the build's context ended fails with "signal:
// killed"; Build's error must still say context.Canceled, which the CLI
// and the Packer plugin test for (TestRunInterrupt failed CI once when the
// cancel landed inside qemu-img).
func TestCancelledWrapsTheContextError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cancel()
	err := fmt.Errorf("qemu-img convert: %w", cmd.Wait())
	if errors.Is(err, context.Canceled) {
		t.Fatalf("exec's error already wraps context.Canceled: %v", err)
	}
	got := cancelled(ctx, err)
	if !errors.Is(got, context.Canceled) || !strings.Contains(got.Error(), "signal: killed") {
		t.Errorf("cancelled: %v, want context.Canceled and the tool's error", got)
	}
	if again := cancelled(ctx, got); again.Error() != got.Error() {
		t.Errorf("cancelled wrapped twice: %v", again)
	}
	plain := errors.New("mmdebstrap failed")
	if got := cancelled(context.Background(), plain); got.Error() != plain.Error() {
		t.Errorf("cancelled changed an error of a live context: %v", got)
	}
}
