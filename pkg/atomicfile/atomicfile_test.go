package atomicfile

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

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

func TestWriteFile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		existing []byte // nil: no file before
		data     []byte
		perm     os.FileMode
	}{
		{"new file", nil, []byte("hello"), 0o644},
		{"replaces a file", []byte("an older and longer content"), []byte("new"), 0o644},
		{"private mode", nil, []byte("secret"), 0o600},
		{"mode is set exactly, despite umask", []byte("x"), []byte("y"), 0o666},
		{"empty", nil, []byte{}, 0o640},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "record.json")
			if tc.existing != nil {
				if err := os.WriteFile(p, tc.existing, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(p, tc.data, tc.perm); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(p)
			if err != nil || string(b) != string(tc.data) {
				t.Errorf("content %q, %v; want %q", b, err, tc.data)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tc.perm {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tc.perm)
			}
			if got := names(t, dir); !slices.Equal(got, []string{"record.json"}) {
				t.Errorf("directory holds %v, want just the file", got)
			}
		})
	}
	t.Run("missing directory", func(t *testing.T) {
		dir := t.TempDir()
		err := WriteFile(filepath.Join(dir, "no", "file"), []byte("x"), 0o644)
		if err == nil || !strings.Contains(err.Error(), "writing "+filepath.Join(dir, "no", "file")) {
			t.Errorf("WriteFile into a missing directory: %v", err)
		}
	})
	t.Run("target is a directory", func(t *testing.T) {
		dir := t.TempDir()
		p := filepath.Join(dir, "d")
		if err := os.MkdirAll(filepath.Join(p, "child"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(p, []byte("x"), 0o644); err == nil {
			t.Error("WriteFile over a non-empty directory succeeded")
		}
		if got := names(t, dir); !slices.Equal(got, []string{"d"}) {
			t.Errorf("directory holds %v after a failed write, want no temporary file", got)
		}
	})
}

// TestCreateCommit: until Commit, the target keeps its old content and the
// new one is in a hidden file beside it, which a checker can read.
func TestCreateCommit(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(p, []byte("old"), 0o644)
	f, err := Create(p, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if _, err := f.WriteString("new"); err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(f.Name()) != dir || !strings.HasPrefix(filepath.Base(f.Name()), ".haproxy.cfg.tmp-") {
		t.Errorf("temporary file %s, want a hidden one beside the target", f.Name())
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("target before Commit: %q", b)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Errorf("target after Commit: %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if err := f.Commit(); err == nil {
		t.Error("a second Commit succeeded")
	}
	f.Abort() // after Commit: nothing
	if got := names(t, dir); !slices.Equal(got, []string{"haproxy.cfg"}) {
		t.Errorf("directory holds %v", got)
	}
}

func TestAbort(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("old"), 0o644)
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("half")
	f.Abort()
	f.Abort()
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("target after Abort: %q", b)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"f"}) {
		t.Errorf("directory holds %v after Abort", got)
	}
	if err := f.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}
}

func TestSyncDir(t *testing.T) {
	if err := SyncDir(t.TempDir()); err != nil {
		t.Error(err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("SyncDir of a missing folder succeeded")
	}
}

// TestCommitSteps checks what makes a write survive a crash: the file is
// synced before the rename, and the folder after it.
func TestCommitSteps(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	var steps []string
	oldSync, oldRename := syncFile, rename
	defer func() { syncFile, rename = oldSync, oldRename }()
	syncFile = func(f *os.File) error {
		switch f.Name() {
		case dir:
			steps = append(steps, "sync folder")
		default:
			steps = append(steps, "sync "+filepath.Base(f.Name())[:len(".f.tmp-")])
		}
		return oldSync(f)
	}
	rename = func(from, to string) error {
		steps = append(steps, "rename")
		return oldRename(from, to)
	}
	if err := WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if want := []string{"sync .f.tmp-", "rename", "sync folder"}; !slices.Equal(steps, want) {
		t.Errorf("steps %q, want %q", steps, want)
	}
}
