package imgforge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
)

// syncBuffer is what the UI writes to, read while a build runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testUI is the SDK's test UI (packersdk.TestUi) writing to w.
func testUI(t *testing.T, w io.Writer) packersdk.Ui {
	ui := packersdk.TestUi(t).(*packersdk.BasicUi)
	ui.Writer, ui.ErrorWriter = w, w
	return ui
}

// prepared is a Builder prepared for role lb into out with the test's
// cache: the shared one, as `imgforge build` uses, unless cacheDir is set.
func prepared(t *testing.T, out, cacheDir string, extra map[string]interface{}) *Builder {
	t.Helper()
	cfg := map[string]interface{}{"role": "lb", "output_dir": out}
	if cacheDir != "" {
		cfg["cache_dir"] = cacheDir
	}
	for k, v := range extra {
		cfg[k] = v
	}
	b := &Builder{}
	if _, _, err := b.Prepare(cfg); err != nil {
		t.Fatal(err)
	}
	return b
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		t.Errorf("%s holds %s after a build that did not finish", dir, e.Name())
	}
}

func TestRunBeforePrepare(t *testing.T) {
	_, err := (&Builder{}).Run(context.Background(), packersdk.TestUi(t), nil)
	if err == nil || !strings.Contains(err.Error(), "before a successful Prepare") {
		t.Fatalf("Run before Prepare: %v", err)
	}
}

// TestRunCancelled: a context cancelled before Run gives an error naming
// the cancel and writes nothing.
func TestRunCancelled(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	b := prepared(t, out, t.TempDir(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var ui syncBuffer
	a, err := b.Run(ctx, testUI(t, &ui), nil)
	if a != nil || err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "cancelled") {
		t.Fatalf("Run with a cancelled context: artifact %v, error %v", a, err)
	}
	assertEmpty(t, out)
}

// TestRun builds lb's OCI outputs through Run, as Packer does, and checks
// the artifact against the SHA256SUMS and manifest imgforge wrote.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lb (mmdebstrap and the Debian mirror when the cache is cold)")
	}
	out := t.TempDir()
	b := prepared(t, out, "", map[string]interface{}{"formats": []string{"oci", "docker-archive"}})
	var ui syncBuffer
	art, err := b.Run(context.Background(), testUI(t, &ui), nil)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, ui.String())
	}
	if !strings.Contains(ui.String(), "lb     outputs") {
		t.Errorf("the UI did not show the stages:\n%s", ui.String())
	}
	dir := filepath.Join(out, "lb")
	if art.BuilderId() != BuilderID || art.State("dir") != dir || art.State("role") != "lb" {
		t.Errorf("artifact %s dir %v role %v", art.BuilderId(), art.State("dir"), art.State("role"))
	}
	if !strings.HasPrefix(art.Id(), "sha256:") || art.Id() != art.State("image_digest") {
		t.Errorf("artifact id %q, image digest %v", art.Id(), art.State("image_digest"))
	}

	// Every file of the folder, and nothing else; not the build's own
	// record of its outputs (.imgforge-state.json, for no-op rebuilds).
	var want []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && d.Name() != ".imgforge-state.json" {
			want = append(want, p)
		}
		return err
	})
	if got := art.Files(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Every file's digest is right, and String lists it.
	digests := art.State("digests").(map[string]string)
	if len(digests) != len(want) {
		t.Errorf("%d digests for %d files", len(digests), len(want))
	}
	for _, f := range want {
		if got := digests[f]; got != "sha256:"+sha256File(t, f) {
			t.Errorf("digest of %s: %s, want sha256:%s", f, got, sha256File(t, f))
		}
		if !strings.Contains(art.String(), "\n  "+digests[f]+" "+f) {
			t.Errorf("String() does not list %s:\n%s", f, art.String())
		}
	}

	if err := art.Destroy(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Destroy left %s: %v", dir, err)
	}
}

// TestRunInterrupt cancels the context Packer passes to Run (what Ctrl-C
// does) while the disk images are being written: Run fails and the output
// folder holds nothing. (The cache's tmp/ is not checked: the cache is
// shared, and another build may use it as soon as Run lets go of it.)
func TestRunInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lb (mmdebstrap and the Debian mirror when the cache is cold)")
	}
	out := t.TempDir()
	b := prepared(t, out, "", map[string]interface{}{"formats": []string{"raw", "qcow2", "iso"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ui syncBuffer
	done := make(chan error, 1)
	go func() {
		_, err := b.Run(ctx, testUI(t, &ui), nil)
		done <- err
	}()
	// The outputs stage (tens of seconds) begins when rootfs ends.
	for !strings.Contains(ui.String(), "lb     rootfs") {
		select {
		case err := <-done:
			t.Fatalf("Run ended before the outputs stage: %v\n%s", err, ui.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	time.Sleep(2 * time.Second) // inside the disk writing
	cancel()
	cancelled := time.Now()
	var err error
	select {
	case err = <-done:
		t.Logf("Run returned %.1fs after the cancel", time.Since(cancelled).Seconds())
	case <-time.After(2 * time.Minute):
		t.Fatalf("Run did not return within 2 minutes of the cancel\n%s", ui.String())
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel: %v\n%s", err, ui.String())
	}
	assertEmpty(t, out)
}

func sha256File(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestLineWriter(t *testing.T) {
	var got []string
	w := newLineWriter(func(s string) { got = append(got, s) })
	io.WriteString(w, "one\ntw")
	io.WriteString(w, "o  \n\nthree\nfour")
	if strings.Join(got, "|") != "one|two|three" {
		t.Errorf("lines %q", got)
	}
	w.Close()
	if strings.Join(got, "|") != "one|two|three|four" {
		t.Errorf("after Close: %q", got)
	}
}
