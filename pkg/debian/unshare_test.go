package debian

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// recordTmpdir is a fake mmdebstrap that writes to rec the TMPDIR it was
// given, then the mode and path of it and of every folder above it.
func recordTmpdir(t *testing.T, rec string) string {
	return fakeMmdebstrap(t, `d="$TMPDIR"; echo "$d" > `+rec+`; [ -n "$d" ] || exit 0
while :; do stat -c '%a %n' "$d" >> `+rec+`; [ "$d" = / ] && break; d=$(dirname "$d"); done`)
}

// readRecord returns the TMPDIR recordTmpdir saw, and the folders on its
// way that others cannot enter.
func readRecord(t *testing.T, rec string) (tmpdir string, closed []string) {
	t.Helper()
	f, err := os.Open(rec)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	tmpdir = sc.Text()
	for sc.Scan() {
		mode, _, _ := strings.Cut(sc.Text(), " ")
		m, err := strconv.ParseUint(mode, 8, 32)
		if err != nil {
			t.Fatalf("%s: %v", rec, err)
		}
		if m&0o001 == 0 {
			closed = append(closed, sc.Text())
		}
	}
	return tmpdir, closed
}

// searchable makes a folder whose every ancestor others can enter: the
// test's own temporary folder is 0700.
func searchable(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	// d and the test's folder above it, which the testing package made.
	for _, p := range []string{d, filepath.Dir(d)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if blocked, mode, _ := searchableByOthers(d); blocked != "" {
		t.Skipf("%s is mode %o here: others cannot enter %s", blocked, mode, d)
	}
	return d
}

// TestUnshareTempDir: without root, mmdebstrap's unshare mode makes its
// chroot in TMPDIR as a subordinate id, which must be able to enter
// TMPDIR and every folder above it (mmdebstrap(1), TMPDIR). imgforge's
// work folders are made 0700 (os.MkdirTemp): before, mmdebstrap got one
// as TMPDIR and failed at once with "Permission denied".
func TestUnshareTempDir(t *testing.T) {
	tests := []struct {
		name     string
		rootless bool
		chroot   bool // run through Chroot, not Bootstrap
		// private puts the work folder below a folder of mode 0700 (a home
		// folder made by Debian's adduser).
		private bool
	}{
		{name: "bootstrap", rootless: true},
		{name: "chroot", rootless: true, chroot: true},
		{name: "below a private folder", rootless: true, private: true},
		{name: "chroot below a private folder", rootless: true, chroot: true, private: true},
		{name: "root mode keeps TMPDIR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fallback := searchable(t)
			t.Setenv("TMPDIR", fallback)
			parent := searchable(t)
			if tt.private {
				parent = filepath.Join(parent, "home")
				if err := os.Mkdir(parent, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			// The work folder, as the build's cache makes it (0700).
			work, err := os.MkdirTemp(parent, "base-")
			if err != nil {
				t.Fatal(err)
			}
			rec := filepath.Join(t.TempDir(), "rec")
			var log strings.Builder
			cmd := recordTmpdir(t, rec)
			if tt.chroot {
				err = (&Chroot{On: "/b.tar", Suite: "bookworm", TempDir: work, Rootless: tt.rootless, Log: &log, Command: cmd}).Run(context.Background())
			} else {
				err = (&Bootstrap{Suite: "bookworm", Architecture: "amd64", Output: "/dev/null", TempDir: work, Rootless: tt.rootless, Log: &log, Command: cmd}).Run(context.Background())
			}
			if err != nil {
				t.Fatal(err)
			}
			tmpdir, closed := readRecord(t, rec)
			if !tt.rootless {
				if tmpdir != work {
					t.Errorf("root mode: TMPDIR = %q, want %q", tmpdir, work)
				}
				return
			}
			if len(closed) > 0 {
				t.Errorf("TMPDIR %s: the namespace's root cannot enter %q", tmpdir, closed)
			}
			if !tt.private {
				if tmpdir != work {
					t.Errorf("TMPDIR = %q, want %q", tmpdir, work)
				}
				return
			}
			// Below a private folder, the chroot goes to TMPDIR (as
			// mmdebstrap's own default, /tmp), and the log says why.
			if filepath.Dir(tmpdir) != fallback {
				t.Errorf("TMPDIR = %q, want a folder in %s", tmpdir, fallback)
			}
			if !strings.Contains(log.String(), filepath.Dir(work)+" is mode 0700") {
				t.Errorf("the log does not say why the chroot is not in %s: %q", work, log.String())
			}
			if _, err := os.Stat(tmpdir); !os.IsNotExist(err) {
				t.Errorf("TMPDIR %s is left behind (%v)", tmpdir, err)
			}
		})
	}
}

func TestSearchableByOthers(t *testing.T) {
	open := searchable(t)
	closedDir := filepath.Join(open, "closed")
	if err := os.Mkdir(closedDir, 0o750); err != nil {
		t.Fatal(err)
	}
	below := filepath.Join(closedDir, "below")
	if err := os.Mkdir(below, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dir, blocked string
		mode         os.FileMode
	}{
		{open, "", 0},
		{closedDir, closedDir, 0o750},
		{below, closedDir, 0o750},
	}
	for _, tt := range tests {
		got, mode, err := searchableByOthers(tt.dir)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.blocked || mode != tt.mode {
			t.Errorf("searchableByOthers(%s) = %q, %o; want %q, %o", tt.dir, got, mode, tt.blocked, tt.mode)
		}
	}
	if _, _, err := searchableByOthers(filepath.Join(open, "nosuch")); err == nil {
		t.Error("a missing folder gave no error")
	}
}

// TestToolEnv: mmdebstrap, and so every maintainer script, gets PATH and
// the proxies from imgforge's environment and nothing else of it: before,
// it got all of it, and an image differed with the builder's environment
// (PYTHONDONTWRITEBYTECODE changed py3compile's own bytecode) and user
// (HOME).
func TestToolEnv(t *testing.T) {
	rec := filepath.Join(t.TempDir(), "env")
	t.Setenv("HOME", "/home/builder")
	t.Setenv("PYTHONDONTWRITEBYTECODE", "")
	os.Unsetenv("PYTHONDONTWRITEBYTECODE")
	t.Setenv("PYTHONHASHSEED", "7")
	t.Setenv("LD_PRELOAD", "/nonexistent.so")
	t.Setenv("http_proxy", "http://127.0.0.1:3142")
	t.Setenv("LANG", "de_DE.UTF-8")
	b := &Bootstrap{Suite: "bookworm", Architecture: "amd64", Output: "/dev/null", Epoch: 1700000000, Command: fakeMmdebstrap(t, "env > "+rec)}
	if err := b.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	want := map[string]string{
		"PATH": os.Getenv("PATH"), "http_proxy": "http://127.0.0.1:3142", "HOME": "/root", "PYTHONDONTWRITEBYTECODE": "1",
		"SOURCE_DATE_EPOCH": "1700000000", "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
	for _, k := range []string{"PYTHONHASHSEED", "LD_PRELOAD", "LANG"} {
		if v, ok := got[k]; ok {
			t.Errorf("mmdebstrap got %s=%q from imgforge's environment", k, v)
		}
	}
}
