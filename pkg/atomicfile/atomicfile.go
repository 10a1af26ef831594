// Package atomicfile writes files so that a reader sees the old content or
// the new, never a part, and a crash leaves one of them: the data goes to a
// temporary file beside the target, which is synced, renamed over the
// target, and then the folder is synced so that the rename itself is on
// disk.
//
// WriteFile does it in one call. Create and Commit split it for a writer
// that streams, or that checks the temporary file (by its Name) before it
// takes the target's place. The package uses only the standard library,
// so the agent may use it too.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile writes data to path atomically, with the permission bits perm
// exactly (the umask does not apply). The folder of path must exist.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Commit()
}

// File is a temporary file that takes the place of its target on Commit.
// Its Name is the temporary file's. Call Abort (deferred) to remove it when
// Commit is not reached.
type File struct {
	*os.File
	target string
	done   bool
}

// Create makes a temporary file beside path with the permission bits perm
// exactly. The folder of path must exist.
func Create(path string, perm os.FileMode) (*File, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	f := &File{File: tmp, target: path}
	if err := tmp.Chmod(perm); err != nil {
		f.Abort()
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return f, nil
}

// Commit syncs and closes the temporary file, renames it over the target,
// and syncs the target's folder. On an error before the rename, the target
// is as it was and the temporary file is removed.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("writing %s: committed or aborted already", f.target)
	}
	f.done = true
	err := syncFile(f.File)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rename(f.Name(), f.target)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", f.target, err)
	}
	if err := SyncDir(filepath.Dir(f.target)); err != nil {
		return fmt.Errorf("writing %s: syncing its folder: %w", f.target, err)
	}
	return nil
}

// Abort closes and removes the temporary file, unless Commit was called.
// It is safe to call more than once.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// SyncDir syncs the folder dir, so that the names created, renamed or
// removed in it are on disk.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return syncFile(d)
}

// The steps of Commit, replaced by a test that checks their order.
var (
	syncFile = (*os.File).Sync
	rename   = os.Rename
)
