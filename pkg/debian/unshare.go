package debian

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// In unshare mode (a user that is not root), mmdebstrap makes its chroot
// in $TMPDIR and then hands it to the root of a new user namespace, which
// is one of the user's subordinate ids (/etc/subuid), not the user: to
// every file of the host it is "other". mmdebstrap(1), on TMPDIR: "the
// unshared user must be able to access the directory", and all its
// ancestors "must be at least world-executable". A folder made with
// os.MkdirTemp (0700), or one below a home folder of mode 0700, fails at
// once: "cannot create .../mmdebstrap.XXXX/etc: Permission denied".
//
// Only the chroot needs that: the files of mmdebstrap's special hooks
// (sync-in, tar-in, upload, download, sync-out) and its output tar are
// read and written by mmdebstrap's own process, as the user, so the
// namespace's root needs to enter TMPDIR, not to read the cache. The
// manual also asks for TMPDIR to be world-writable, but only so that the
// namespace can remove the chroot's own folder; when it cannot,
// mmdebstrap removes that (empty) folder as the user. So o+x is enough,
// and no one else may write there.

// searchableByOthers returns the first folder of dir and the folders
// above it that others (the user namespace's root) cannot enter, and its
// mode; "" when every one can be entered.
func searchableByOthers(dir string) (string, fs.FileMode, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", 0, err
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return "", 0, err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return d, fi.Mode().Perm(), nil
		}
		if d == filepath.Dir(d) {
			return "", 0, nil
		}
	}
}

// unshareTempDir returns the folder for mmdebstrap's TMPDIR in unshare
// mode. That is dir, made searchable by others (o+x: they can enter it,
// not list or change it) when every folder above it is; else a new folder
// in os.TempDir() (where mmdebstrap itself would go), with a note for the
// log that says why, and remove removes it.
func unshareTempDir(dir string) (path, note string, remove func(), err error) {
	remove = func() {}
	if dir != "" {
		fi, err := os.Stat(dir)
		if err != nil {
			return "", "", nil, fmt.Errorf("mmdebstrap's temporary folder: %w", err)
		}
		if err := os.Chmod(dir, fi.Mode().Perm()|0o001); err != nil {
			return "", "", nil, fmt.Errorf("letting mmdebstrap's unshared root enter %s: %w", dir, err)
		}
		blocked, mode, err := searchableByOthers(dir)
		if err != nil {
			return "", "", nil, fmt.Errorf("checking that mmdebstrap's unshared root can enter %s: %w", dir, err)
		}
		if blocked == "" {
			return dir, "", remove, nil
		}
		note = fmt.Sprintf("imgforge: %s is mode %04o: mmdebstrap's unshared root (a subordinate id) cannot enter it, so the chroot goes to %s, not %s (chmod o+x %s keeps it there)", blocked, mode, os.TempDir(), dir, blocked)
	}
	if blocked, mode, err := searchableByOthers(os.TempDir()); err != nil || blocked != "" {
		if err == nil {
			err = fmt.Errorf("%s is mode %04o", blocked, mode)
		}
		return "", "", nil, fmt.Errorf("no folder for mmdebstrap's chroot that its unshared root (a subordinate id) can enter: %s; in %s: %w; make them searchable by others (chmod o+x) or set TMPDIR to a folder that is", note, os.TempDir(), err)
	}
	path, err = os.MkdirTemp("", "imgforge-unshare-")
	if err != nil {
		return "", "", nil, fmt.Errorf("making a folder for mmdebstrap's chroot: %w", err)
	}
	// MkdirTemp makes it 0700, which the namespace's root cannot enter.
	if err := os.Chmod(path, 0o711); err != nil {
		os.Remove(path)
		return "", "", nil, fmt.Errorf("making a folder for mmdebstrap's chroot: %w", err)
	}
	remove = func() {
		// mmdebstrap removes its chroot, also when it fails or is
		// stopped with SIGTERM.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			_ = os.RemoveAll(path)
		}
	}
	return path, note, remove, nil
}
