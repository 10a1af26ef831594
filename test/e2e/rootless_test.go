//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/format"
)

// rootlessUser is the unprivileged user TestRootlessBuild builds as.
const rootlessUser = "imgforge-e2e"

// TestRootlessBuild builds lb, every output format, as a normal user with
// subordinate ids (mmdebstrap's unshare mode), from a cold cache that
// holds only the .deb files of a root build, and checks that every output
// file is the same as a root build's. Issue 16: the namespace's root (a
// subordinate id) could not enter the build's 0700 work folder, and the
// build failed in 0.5 s.
func TestRootlessBuild(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("making an unprivileged user with subordinate ids, and building as it, needs root: run the suite as root (README)")
	}
	for _, p := range []string{"newuidmap", "newgidmap", "useradd", "usermod", "runuser"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Fatalf("%s is not installed (hack/setup.sh installs uidmap, which a build without root needs): %v", p, err)
		}
	}
	f := cold(t, 0)
	hostSlots(t, 1)
	u := ensureRootlessUser(t)
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)

	// The user's own folder, in its home: its HOME for the build (so its
	// cache is ~/.cache/imgforge), the binaries (the suite's workdir is
	// root's, 0700) and the outputs.
	home, err := os.MkdirTemp(u.HomeDir, "e2e-")
	if err != nil {
		t.Fatal(err)
	}
	// Root removes it, with what mmdebstrap's subordinate ids own, if any.
	t.Cleanup(func() { os.RemoveAll(home) })
	// Searchable by others, as useradd -m makes homes here (HOME_MODE or
	// UMASK 022): mmdebstrap's chroot then goes to the build's work
	// folder in the cache. (Below a 0700 folder it goes to /tmp; the unit
	// test TestUnshareTempDir covers that.)
	if err := os.Chmod(home, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(home, "bin")
	debs := filepath.Join(home, ".cache", "imgforge", "debs")
	for _, d := range []string{home, bin, filepath.Dir(filepath.Dir(debs)), filepath.Dir(debs), debs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"imgforge", "imgforge-agent"} {
		copyFile(t, filepath.Join(workdir, name), filepath.Join(bin, name), 0o755, 0, 0)
	}
	// The root build's .deb files, copied (root's cache stays out of the
	// user's reach): apt checks each against the mirror's signed indices
	// (size and SHA-256) before it installs it, as it would a download.
	// This saves the downloads, not the build.
	ents, err := os.ReadDir(filepath.Join(f.cache, "imgforge", "debs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".deb") && e.Type().IsRegular() {
			copyFile(t, filepath.Join(f.cache, "imgforge", "debs", e.Name()), filepath.Join(debs, e.Name()), 0o644, uid, gid)
		}
	}

	all := strings.Join(format.Names(), ",")
	// A root build of the same formats, from the cold build's cache: every
	// stage is cached, only the outputs are written. It runs beside the
	// user's build, which mostly waits on dpkg and the disk.
	rootOut := filepath.Join(t.TempDir(), "out")
	rootDone := make(chan result, 1)
	go func() {
		c := exec.Command(binary, "build", "--output-dir", rootOut, "--output", "json", "--format", all, "lb")
		c.Dir = workdir
		// The agent the user's build bakes in, by the same path: the
		// manifest names where it came from.
		c.Env = append(os.Environ(), "XDG_CACHE_HOME="+f.cache, "IMGFORGE_AGENT="+filepath.Join(bin, "imgforge-agent"))
		var o, e bytes.Buffer
		c.Stdout, c.Stderr = &o, &e
		start := time.Now()
		err := c.Run()
		r := result{stdout: o.String(), stderr: e.String(), elapsed: time.Since(start)}
		if err != nil {
			r.code = -1
			r.stderr = err.Error() + "\n" + r.stderr
		}
		rootDone <- r
	}()
	defer func() { <-rootDone }()

	out := filepath.Join(home, "out")
	cmd := exec.Command("runuser", "-u", u.Username, "--", "env", "-i", "PATH="+os.Getenv("PATH"), "HOME="+home, "LANG=C.UTF-8",
		filepath.Join(bin, "imgforge"), "build", "--output-dir", out, "--output", "json", "--format", all, "lb")
	cmd.Dir = home
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("imgforge build as %s (uid %d): %v\n%s", u.Username, uid, err, stderr.String())
	}
	var user buildJSON
	if err := json.Unmarshal(stdout.Bytes(), &user); err != nil {
		t.Fatalf("reading the build's output: %v\n%s", err, stdout.String())
	}
	t.Logf("lb, every format (%s), as %s: %.0fs", all, u.Username, elapsed.Seconds())
	if strings.Contains(stderr.String(), "cannot enter it, so the chroot goes to") {
		t.Errorf("mmdebstrap's chroot was not in the cache:\n%s", stderr.String())
	}
	for _, s := range user.Stages {
		t.Logf("  %-14s %6.1fs  %s", s.Stage, s.Seconds, s.Result)
	}

	rr := <-rootDone
	rootDone <- rr
	if rr.code != 0 {
		t.Fatalf("imgforge build as root: %s", rr.stderr)
	}
	t.Logf("the same as root, from the cold build's cache: %.0fs", rr.elapsed.Seconds())

	a, b := filepath.Join(rootOut, "lb"), filepath.Join(out, "lb")
	ma, mb := readManifest(t, filepath.Join(a, "manifest.json")), readManifest(t, filepath.Join(b, "manifest.json"))
	if ma.ImageDigest != mb.ImageDigest {
		t.Errorf("image digests differ: root %s, %s %s", ma.ImageDigest, u.Username, mb.ImageDigest)
	}
	sa, err := os.ReadFile(filepath.Join(a, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := os.ReadFile(filepath.Join(b, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	// The manifest names the mirror's release files by digest, and the
	// mirror refreshes them (their Date) now and then: when it did between
	// the two builds, the manifests and their keys differ, not the rest.
	if !maps.Equal(ma.Inputs.Releases, mb.Inputs.Releases) {
		t.Logf("the mirror published new release files between the builds (root's %v, %s's %v): manifest.json is not compared", ma.Inputs.Releases, u.Username, mb.Inputs.Releases)
		sa, sb = withoutLine(sa, "  manifest.json"), withoutLine(sb, "  manifest.json")
	}
	if !bytes.Equal(sa, sb) {
		t.Errorf("SHA256SUMS differ between the root build and %s's:\n%s", u.Username, lineDiff(string(sa), string(sb)))
		ja, _ := os.ReadFile(filepath.Join(a, "manifest.json"))
		jb, _ := os.ReadFile(filepath.Join(b, "manifest.json"))
		t.Errorf("manifest.json, root's and %s's:\n%s", u.Username, lineDiff(string(ja), string(jb)))
	}
	for _, name := range []string{"lb.raw", "lb.iso", "pxe/root.img", "lb.gce.tar.gz", "lb.vmdk", "lb.vhd"} {
		if !strings.Contains(string(sb), "  "+name+"\n") {
			t.Errorf("%s's build has no %s", u.Username, name)
		}
	}
	// The build cleaned up after mmdebstrap: its work folders are gone, and
	// nothing in them belongs to a subordinate id.
	left, _ := filepath.Glob(filepath.Join(home, ".cache", "imgforge", "tmp", "*"))
	if len(left) > 0 {
		t.Errorf("the build left %q in its cache", left)
	}
	if err := filepath.WalkDir(home, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != uid && p != bin && filepath.Dir(p) != bin {
			return fmt.Errorf("%s is owned by uid %d, not %s (%d)", p, st.Uid, u.Username, uid)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// ensureRootlessUser returns the test's unprivileged user, made (with a
// home folder) if missing, with subordinate uids and gids.
func ensureRootlessUser(t *testing.T) *user.User {
	t.Helper()
	u, err := user.Lookup(rootlessUser)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		tool(t, "useradd", "--create-home", "--shell", "/usr/sbin/nologin", "--comment", "imgforge e2e, builds without root", rootlessUser)
		u, err = user.Lookup(rootlessUser)
	}
	if err != nil {
		t.Fatal(err)
	}
	hasUID, endUID := subIDs(t, "/etc/subuid", u.Username)
	hasGID, endGID := subIDs(t, "/etc/subgid", u.Username)
	if !hasUID || !hasGID {
		// A range above every one given out.
		start := max(100000, endUID, endGID)
		r := fmt.Sprintf("%d-%d", start, start+65535)
		tool(t, "usermod", "--add-subuids", r, "--add-subgids", r, u.Username)
	}
	return u
}

// subIDs says whether file (/etc/subuid or /etc/subgid) gives name a range,
// and where the highest range in it ends.
func subIDs(t *testing.T, file, name string) (has bool, end int) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) != 3 {
			continue
		}
		first, err1 := strconv.Atoi(f[1])
		n, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil {
			continue
		}
		end = max(end, first+n)
		if f[0] == name && n >= 65536 {
			has = true
		}
	}
	return has, end
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode, uid, gid int) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dst, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// withoutLine drops from a SHA256SUMS the line that ends with suffix.
func withoutLine(sums []byte, suffix string) []byte {
	var out []string
	for _, l := range strings.Split(string(sums), "\n") {
		if !strings.HasSuffix(l, suffix) {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, "\n"))
}

// lineDiff lists the lines only one of a and b has.
func lineDiff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ia, ib := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !ib[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ia[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
