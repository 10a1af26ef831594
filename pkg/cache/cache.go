// Package cache is imgforge's content-addressed store of build stages.
//
// A stage's result is found by a key, the sha256 of everything the stage
// reads. The result is a small JSON record that names blobs by their sha256
// digest; blobs live once under blobs/sha256/. Everything is written to a
// temporary file first and renamed into place, so an interrupted build
// leaves no half-written entry: at worst an unreferenced blob, or a
// temporary directory that the next Open removes. A blob whose content no
// longer matches its name is reported by Verify and rebuilt by the caller.
//
// Layout, under the cache directory:
//
//	blobs/sha256/HEX     content-addressed blobs
//	stages/STAGE/KEY.json stage records
//	debs/                downloaded .deb files, shared by every build
//	lists/KEY/           the apt lists of the base with that key
//	builds/ROLE/NS.json  build records: the stage records a build used (prune.go)
//	tmp/                 work in progress; removed by Open
//	lock                 held while a process uses the cache
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imgforge/imgforge/pkg/atomicfile"
	"github.com/imgforge/imgforge/pkg/ctxio"
)

// ErrCorrupt is returned (wrapped) when a blob does not match its digest.
var ErrCorrupt = errors.New("cache entry is corrupt")

// Cache is an open cache directory, locked for this process.
type Cache struct {
	dir  string
	lock *os.File
}

// DefaultDir is $XDG_CACHE_HOME/imgforge, or $HOME/.cache/imgforge.
func DefaultDir(getenv func(string) string) (string, error) {
	if d := getenv("XDG_CACHE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "imgforge"), nil
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".cache", "imgforge"), nil
	}
	return "", errors.New("finding the cache directory: neither XDG_CACHE_HOME nor HOME is set")
}

// Open creates (if needed) and locks the cache at dir, waiting for another
// imgforge process that holds it, and clears what interrupted builds left in
// tmp/.
func Open(ctx context.Context, dir string) (*Cache, error) {
	for _, d := range []string{"blobs/sha256", "stages", "debs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("creating cache directory: %w", err)
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening cache lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking cache %s: %w", dir, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the cache %s, which another imgforge holds: %w", dir, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	c := &Cache{dir: dir, lock: f}
	if err := c.clearTmp(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close releases the lock.
func (c *Cache) Close() error {
	if c.lock == nil {
		return nil
	}
	err := c.lock.Close()
	c.lock = nil
	return err
}

// Dir is the cache directory.
func (c *Cache) Dir() string { return c.dir }

// DebDir holds downloaded .deb files shared by every build.
func (c *Cache) DebDir() string { return filepath.Join(c.dir, "debs") }

// clearTmp removes what interrupted builds left, never crossing into a
// mount point (a chroot an interrupted tool left mounted).
func (c *Cache) clearTmp() error {
	tmp := filepath.Join(c.dir, "tmp")
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("reading %s: %w", tmp, err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, e := range entries {
		p := filepath.Join(tmp, e.Name())
		if strings.Contains(string(mounts), " "+p+"/") || strings.Contains(string(mounts), " "+p+" ") {
			return fmt.Errorf("cleaning cache: %s still has file systems mounted under it; unmount them (umount -R %s) and run again", p, p)
		}
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("cleaning cache: %w", err)
		}
	}
	return nil
}

// TempDir makes a directory for work in progress under tmp/.
func (c *Cache) TempDir(pattern string) (string, error) {
	return os.MkdirTemp(filepath.Join(c.dir, "tmp"), pattern)
}

// BlobPath is where the blob with digest ("sha256:HEX") lives.
func (c *Cache) BlobPath(digest string) string {
	return filepath.Join(c.dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

// Verify re-hashes a blob and returns ErrCorrupt when it does not match.
// It stops with ctx's error (not ErrCorrupt) once ctx is done.
func (c *Cache) Verify(ctx context.Context, digest string) error {
	f, err := os.Open(c.BlobPath(digest))
	if err != nil {
		return fmt.Errorf("%w: blob %s: %w", ErrCorrupt, digest, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := ctxio.Copy(ctx, h, f); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: reading blob %s: %w", ErrCorrupt, digest, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("%w: blob %s hashes to %s", ErrCorrupt, digest, got)
	}
	return nil
}

// BlobWriter writes a new blob: its digest is computed as it is written, and
// Commit moves it into place.
type BlobWriter struct {
	c    *Cache
	f    *os.File
	h    hash.Hash
	n    int64
	done bool
}

// NewBlob starts a blob in tmp/.
func (c *Cache) NewBlob() (*BlobWriter, error) {
	f, err := os.CreateTemp(filepath.Join(c.dir, "tmp"), "blob-*")
	if err != nil {
		return nil, fmt.Errorf("creating blob: %w", err)
	}
	return &BlobWriter{c: c, f: f, h: sha256.New()}, nil
}

func (w *BlobWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Commit syncs and renames the blob into place and returns its digest and size.
func (w *BlobWriter) Commit() (string, int64, error) {
	w.done = true
	digest := "sha256:" + hex.EncodeToString(w.h.Sum(nil))
	if err := w.f.Sync(); err != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		return "", 0, fmt.Errorf("writing blob: %w", err)
	}
	if err := w.f.Close(); err != nil {
		os.Remove(w.f.Name())
		return "", 0, fmt.Errorf("writing blob: %w", err)
	}
	if err := os.Rename(w.f.Name(), w.c.BlobPath(digest)); err != nil {
		os.Remove(w.f.Name())
		return "", 0, fmt.Errorf("storing blob: %w", err)
	}
	return digest, w.n, nil
}

// Abort discards an uncommitted blob; it is safe to call after Commit.
func (w *BlobWriter) Abort() {
	if !w.done {
		w.done = true
		w.f.Close()
		os.Remove(w.f.Name())
	}
}

// PutBlob stores data as a blob and returns its digest.
func (c *Cache) PutBlob(data []byte) (string, error) {
	w, err := c.NewBlob()
	if err != nil {
		return "", err
	}
	defer w.Abort()
	if _, err := w.Write(data); err != nil {
		return "", fmt.Errorf("writing blob: %w", err)
	}
	d, _, err := w.Commit()
	return d, err
}

// ReadBlob reads a whole (small) blob and checks its digest.
func (c *Cache) ReadBlob(digest string) ([]byte, error) {
	b, err := os.ReadFile(c.BlobPath(digest))
	if err != nil {
		return nil, fmt.Errorf("%w: blob %s: %w", ErrCorrupt, digest, err)
	}
	sum := sha256.Sum256(b)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != digest {
		return nil, fmt.Errorf("%w: blob %s hashes to %s", ErrCorrupt, digest, got)
	}
	return b, nil
}

func (c *Cache) recordPath(stage, key string) string {
	return filepath.Join(c.dir, "stages", stage, strings.TrimPrefix(key, "sha256:")+".json")
}

// Get reads the record of stage under key into v. It reports false when
// there is none, or when it cannot be read (a corrupt record is a miss).
func (c *Cache) Get(stage, key string, v any) bool {
	b, err := os.ReadFile(c.recordPath(stage, key))
	if err != nil {
		return false
	}
	return json.Unmarshal(b, v) == nil
}

// Put stores v as the record of stage under key, atomically.
func (c *Cache) Put(stage, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s record: %w", stage, err)
	}
	p := c.recordPath(stage, key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("storing %s record: %w", stage, err)
	}
	return atomicfile.WriteFile(p, b, 0o644)
}

// Delete forgets the record of stage under key.
func (c *Cache) Delete(stage, key string) error {
	err := os.Remove(c.recordPath(stage, key))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Key hashes the JSON encoding of parts into a cache key.
func Key(parts ...any) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for _, p := range parts {
		if err := enc.Encode(p); err != nil {
			panic(fmt.Sprintf("cache: key part %T cannot be encoded: %v", p, err))
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// KeyOf is the key of a stage's typed key struct: the hash of version
// and then of each exported field of key, in the order the struct
// declares them, as Key hashes its parts. A field tagged `key:"-"` is an
// input the others already determine (a lower stage's record, found by
// its key) and is not hashed. So that old cache entries stay valid, add a
// field at the end, and bump the stage's version when what the stage
// writes changes.
func KeyOf(version string, key any) string {
	v := reflect.ValueOf(key)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		panic(fmt.Sprintf("cache: key of %s is a %T, not a struct", version, key))
	}
	parts := []any{version}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("key") == "-" {
			continue
		}
		parts = append(parts, v.Field(i).Interface())
	}
	return Key(parts...)
}
