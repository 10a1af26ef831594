package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// helloDigest is the sha256 of "hello".
const helloDigest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

func open(t *testing.T, dir string) *Cache {
	t.Helper()
	c, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestOpenLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet", "there")
	c := open(t, dir)
	if c.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", c.Dir(), dir)
	}
	if c.DebDir() != filepath.Join(dir, "debs") {
		t.Errorf("DebDir() = %q", c.DebDir())
	}
	for _, d := range []string{"blobs/sha256", "stages", "debs", "tmp"} {
		fi, err := os.Stat(filepath.Join(dir, d))
		if err != nil || !fi.IsDir() {
			t.Errorf("%s: %v, want a directory", d, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "lock")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("lock: %v, want a file", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenClearsTmp(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	// What an interrupted build leaves: a blob, a work directory with a
	// read-only tree in it, and a record that must survive.
	w, err := c.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("half")); err != nil {
		t.Fatal(err)
	}
	work, err := c.TempDir("role-")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(work) != filepath.Join(dir, "tmp") || !strings.HasPrefix(filepath.Base(work), "role-") {
		t.Errorf("TempDir = %s, want tmp/role-*", work)
	}
	if err := os.MkdirAll(filepath.Join(work, "root", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "root", "etc", "passwd"), []byte("x"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tmp", ".hidden"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Put("base", "sha256:abc", map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	d, err := c.PutBlob([]byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if len(names(t, filepath.Join(dir, "tmp"))) != 3 {
		t.Fatalf("tmp/ has %v, want 3 entries", names(t, filepath.Join(dir, "tmp")))
	}
	c.Close()

	c2 := open(t, dir)
	if got := names(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ after Open: %v, want it empty", got)
	}
	var v map[string]int
	if !c2.Get("base", "sha256:abc", &v) || v["a"] != 1 {
		t.Errorf("record lost by Open: %v", v)
	}
	if err := c2.Verify(context.Background(), d); err != nil {
		t.Errorf("blob lost by Open: %v", err)
	}
}

func TestOpenNotADirectory(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := Open(context.Background(), f); err == nil {
		c.Close()
		t.Fatal("Open on a file succeeded")
	}
}

func TestOpenWaitsForTheLock(t *testing.T) {
	dir := t.TempDir()
	first, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		c   *Cache
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := Open(context.Background(), dir)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.c != nil {
			r.c.Close()
		}
		first.Close()
		t.Fatalf("second Open returned (%v) while the first held the lock", r.err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("second Open: %v", r.err)
		}
		r.c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("second Open still waits after the first Close")
	}
}

func TestOpenContextEnds(t *testing.T) {
	dir := t.TempDir()
	open(t, dir) // holds the lock throughout
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, context.DeadlineExceeded},
		{"already cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			c, err := Open(ctx, dir)
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded while another holds the lock")
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want one wrapping %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), dir) {
				t.Errorf("err = %v, want it to name the cache", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Open took %v after its context ended", d)
			}
		})
	}
}

func TestOpenCancelledButFree(t *testing.T) {
	// A free lock is taken even when the context has already ended:
	// waiting is what the context bounds.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestBlobWriter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		chunks []string
	}{
		{"one write", []string{"hello"}},
		{"several writes", []string{"he", "", "l", "lo"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := open(t, dir)
			w, err := c.NewBlob()
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.chunks {
				n, err := w.Write([]byte(s))
				if err != nil || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			d, size, err := w.Commit()
			if err != nil {
				t.Fatal(err)
			}
			if d != helloDigest || size != 5 {
				t.Errorf("Commit = %s, %d; want %s, 5", d, size, helloDigest)
			}
			p := filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(helloDigest, "sha256:"))
			if c.BlobPath(d) != p {
				t.Errorf("BlobPath = %s, want %s", c.BlobPath(d), p)
			}
			if b, err := os.ReadFile(p); err != nil || string(b) != "hello" {
				t.Errorf("blob file: %q, %v", b, err)
			}
			if got := names(t, filepath.Join(dir, "tmp")); len(got) != 0 {
				t.Errorf("tmp/ after Commit: %v", got)
			}
			w.Abort() // safe after Commit, and keeps the blob
			if err := c.Verify(context.Background(), d); err != nil {
				t.Errorf("Verify after Abort following Commit: %v", err)
			}
			if err := c.Verify(context.Background(), "sha256:"+strings.Repeat("0", 64)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Verify of a missing blob: %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestBlobAbort(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	w, err := c.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	w.Abort()
	if got := names(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/ after Abort: %v", got)
	}
	if got := names(t, filepath.Join(dir, "blobs", "sha256")); len(got) != 0 {
		t.Errorf("blobs after Abort: %v", got)
	}
	if _, err := os.Stat(c.BlobPath(helloDigest)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("aborted blob: %v, want it missing", err)
	}
}

func TestPutBlobTwice(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	for i := 0; i < 2; i++ {
		d, err := c.PutBlob([]byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		if d != helloDigest {
			t.Errorf("PutBlob = %s", d)
		}
	}
	if got := names(t, filepath.Join(dir, "blobs", "sha256")); len(got) != 1 {
		t.Errorf("blobs: %v, want one", got)
	}
	if got := names(t, filepath.Join(dir, "tmp")); len(got) != 0 {
		t.Errorf("tmp/: %v", got)
	}
}

func TestVerifyAndReadBlob(t *testing.T) {
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, path string)
		digest  string // default: that of the stored blob
		corrupt bool
	}{
		{name: "intact"},
		{name: "flipped byte", corrupt: true, damage: func(t *testing.T, p string) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "truncated", corrupt: true, damage: func(t *testing.T, p string) {
			if err := os.Truncate(p, 3); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "empty", corrupt: true, damage: func(t *testing.T, p string) {
			if err := os.Truncate(p, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "missing", corrupt: true, damage: func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a directory", corrupt: true, damage: func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "digest without algorithm", digest: strings.TrimPrefix(helloDigest, "sha256:"), corrupt: true},
		{name: "unknown digest", digest: "sha256:" + strings.Repeat("a", 64), corrupt: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := open(t, t.TempDir())
			d, err := c.PutBlob([]byte("hello, world"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.damage != nil {
				tc.damage(t, c.BlobPath(d))
			}
			if tc.digest != "" {
				d = tc.digest
			}
			err = c.Verify(context.Background(), d)
			if got := errors.Is(err, ErrCorrupt); got != tc.corrupt || (err != nil) != tc.corrupt {
				t.Errorf("Verify = %v, want corrupt %v", err, tc.corrupt)
			}
			b, err := c.ReadBlob(d)
			if got := errors.Is(err, ErrCorrupt); got != tc.corrupt || (err != nil) != tc.corrupt {
				t.Errorf("ReadBlob = %v, want corrupt %v", err, tc.corrupt)
			}
			if !tc.corrupt && string(b) != "hello, world" {
				t.Errorf("ReadBlob = %q", b)
			}
			if tc.corrupt && b != nil {
				t.Errorf("ReadBlob returned %q with an error", b)
			}
		})
	}
}

type record struct {
	Blob  string   `json:"blob"`
	Size  int64    `json:"size"`
	Files []string `json:"files,omitempty"`
}

func TestRecords(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir)
	key := Key("base", "bookworm")
	want := record{Blob: helloDigest, Size: 5, Files: []string{"etc/passwd"}}
	var r record
	if c.Get("base", key, &r) {
		t.Fatal("Get before Put hit")
	}
	if err := c.Put("base", key, want); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "stages", "base", strings.TrimPrefix(key, "sha256:")+".json")
	if _, err := os.Stat(p); err != nil {
		t.Errorf("record file: %v", err)
	}
	if !c.Get("base", key, &r) || r.Blob != want.Blob || r.Size != want.Size || !slices.Equal(r.Files, want.Files) {
		t.Errorf("Get = %+v, want %+v", r, want)
	}
	// Stages and keys are separate.
	if c.Get("role", key, &r) {
		t.Error("Get of another stage hit")
	}
	if c.Get("base", Key("base", "trixie"), &r) {
		t.Error("Get of another key hit")
	}
	// Put replaces.
	want2 := record{Blob: "sha256:" + strings.Repeat("b", 64), Size: 9}
	if err := c.Put("base", key, want2); err != nil {
		t.Fatal(err)
	}
	var r2 record
	if !c.Get("base", key, &r2) || r2.Blob != want2.Blob || r2.Size != 9 || r2.Files != nil {
		t.Errorf("Get after second Put = %+v, want %+v", r2, want2)
	}
	if got := names(t, filepath.Dir(p)); len(got) != 1 {
		t.Errorf("stage directory: %v, want just the record", got)
	}
	if err := c.Delete("base", key); err != nil {
		t.Fatal(err)
	}
	if c.Get("base", key, &r) {
		t.Error("Get after Delete hit")
	}
	if err := c.Delete("base", key); err != nil {
		t.Errorf("Delete of a missing record: %v", err)
	}
	if err := c.Delete("never", key); err != nil {
		t.Errorf("Delete in a missing stage: %v", err)
	}
	if err := c.Put("base", key, make(chan int)); err == nil {
		t.Error("Put of a value JSON cannot encode succeeded")
	}
}

func TestGetBadRecord(t *testing.T) {
	for _, tc := range []struct{ name, content string }{
		{"truncated JSON", `{"blob": "sha256:ab`},
		{"empty", ``},
		{"garbage", "\x00\x01\x02"},
		{"wrong type", `"just a string"`},
		{"wrong field type", `{"blob": 5}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := open(t, t.TempDir())
			key := Key(tc.name)
			if err := c.Put("base", key, record{Blob: "x"}); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(c.recordPath("base", key), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			var r record
			if c.Get("base", key, &r) {
				t.Errorf("Get of a corrupt record hit: %+v", r)
			}
		})
	}
}

func TestKey(t *testing.T) {
	// The key is the sha256 of the parts' JSON encodings, one a line.
	lines := `"base"` + "\n" + `["a","b"]` + "\n" + `{"x":1,"y":"z"}` + "\n" + `1735689600` + "\n"
	h := sha256.Sum256([]byte(lines))
	want := "sha256:" + hex.EncodeToString(h[:])
	if got := Key("base", []string{"a", "b"}, map[string]any{"y": "z", "x": 1}, 1735689600); got != want {
		t.Errorf("Key = %s, want %s", got, want)
	}
	if Key() != "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("Key() = %s, want the sha256 of nothing", Key())
	}

	type parts struct {
		Packages []string
		Epoch    int64
	}
	for _, tc := range []struct {
		name string
		a, b []any
		same bool
	}{
		{"same parts", []any{"role", parts{[]string{"nginx"}, 1}}, []any{"role", parts{[]string{"nginx"}, 1}}, true},
		{"map order does not matter", []any{map[string]int{"a": 1, "b": 2}}, []any{map[string]int{"b": 2, "a": 1}}, true},
		{"stage differs", []any{"base", "k"}, []any{"role", "k"}, false},
		{"second part differs", []any{"base", "k1"}, []any{"base", "k2"}, false},
		{"package added", []any{parts{[]string{"nginx"}, 1}}, []any{parts{[]string{"nginx", "curl"}, 1}}, false},
		{"package order", []any{[]string{"a", "b"}}, []any{[]string{"b", "a"}}, false},
		{"epoch differs", []any{parts{nil, 1}}, []any{parts{nil, 2}}, false},
		{"boundaries between parts", []any{"ab", "c"}, []any{"a", "bc"}, false},
		{"one part or two", []any{"a", "b"}, []any{[]string{"a", "b"}}, false},
		{"extra empty part", []any{"a"}, []any{"a", ""}, false},
		{"nil and empty list", []any{[]string(nil)}, []any{[]string{}}, false},
		{"string and number", []any{"1"}, []any{1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ka, kb := Key(tc.a...), Key(tc.b...)
			if ka != Key(tc.a...) {
				t.Error("Key is not stable")
			}
			if (ka == kb) != tc.same {
				t.Errorf("Key(%v) == Key(%v) is %v, want %v", tc.a, tc.b, ka == kb, tc.same)
			}
			if !strings.HasPrefix(ka, "sha256:") || len(ka) != 7+64 {
				t.Errorf("Key = %q, want sha256:HEX", ka)
			}
		})
	}

	defer func() {
		if recover() == nil {
			t.Error("Key of a channel did not panic")
		}
	}()
	Key(make(chan int))
}

func TestDefaultDir(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    string
		wantErr bool
	}{
		{"XDG_CACHE_HOME", map[string]string{"XDG_CACHE_HOME": "/xdg/cache", "HOME": "/home/u"}, "/xdg/cache/imgforge", false},
		{"XDG_CACHE_HOME alone", map[string]string{"XDG_CACHE_HOME": "/xdg/cache/"}, "/xdg/cache/imgforge", false},
		{"only HOME", map[string]string{"HOME": "/home/u"}, "/home/u/.cache/imgforge", false},
		{"empty XDG_CACHE_HOME", map[string]string{"XDG_CACHE_HOME": "", "HOME": "/home/u"}, "/home/u/.cache/imgforge", false},
		{"relative XDG_CACHE_HOME is ignored", map[string]string{"XDG_CACHE_HOME": "cache", "HOME": "/home/u"}, "/home/u/.cache/imgforge", false},
		{"dot-relative XDG_CACHE_HOME is ignored", map[string]string{"XDG_CACHE_HOME": "./.cache", "HOME": "/root"}, "/root/.cache/imgforge", false},
		{"relative XDG_CACHE_HOME and no HOME", map[string]string{"XDG_CACHE_HOME": "cache"}, "", true},
		{"neither", map[string]string{}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DefaultDir(func(k string) string { return tc.env[k] })
			if tc.wantErr {
				if err == nil {
					t.Errorf("DefaultDir = %q, want an error", got)
				} else if !strings.Contains(err.Error(), "neither XDG_CACHE_HOME nor HOME is set") || strings.Contains(err.Error(), "--") {
					t.Errorf("error %q: want the variables named and no flag (the caller names its own)", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("DefaultDir = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestKeyOf checks that a typed key hashes as the positional Key of its
// fields, in order, without the fields tagged key:"-": the stages' keys
// did not change when they became structs.
func TestKeyOf(t *testing.T) {
	type k struct {
		Name     string
		List     []string
		Nil      []string
		Epoch    int64
		Rootless bool
		Skipped  map[string]int `key:"-"`
		hidden   int
	}
	v := k{Name: "base", List: []string{"a", "b"}, Epoch: 7, Rootless: true, Skipped: map[string]int{"x": 1}, hidden: 3}
	want := Key("base-v1", "base", []string{"a", "b"}, []string(nil), int64(7), true)
	if got := KeyOf("base-v1", v); got != want {
		t.Errorf("KeyOf = %s, want %s", got, want)
	}
	if got := KeyOf("base-v1", &v); got != want {
		t.Errorf("KeyOf(pointer) = %s, want %s", got, want)
	}
	v.Skipped = nil
	if got := KeyOf("base-v1", v); got != want {
		t.Errorf("a key:\"-\" field changed the key")
	}
	if KeyOf("base-v2", v) == want {
		t.Errorf("the version is not in the key")
	}
}

// TestVerifyCanceled: a Verify cut short by its context is not a
// corrupt blob, so that a Ctrl-C does not make a build drop its cache.
func TestVerifyCanceled(t *testing.T) {
	c, err := Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := c.PutBlob([]byte(strings.Repeat("x", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = c.Verify(ctx, d)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrCorrupt) {
		t.Errorf("Verify with a cancelled context = %v, want context.Canceled and not ErrCorrupt", err)
	}
}
