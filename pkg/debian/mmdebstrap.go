// Package debian builds Debian root filesystems with mmdebstrap: a base
// from scratch, or more packages installed on top of an earlier root
// filesystem tar. It owns the mmdebstrap command line (dpkg path
// excludes, the shared .deb cache, skipping the initramfs, removing host
// keys) and turns its failures into errors that name the package at fault.
// It does not make layers; package layer does.
//
// No value (a package name, a path, a mirror) is ever written into a hook
// that mmdebstrap gives to a shell: hooks that run commands are constant
// text that reads their arguments from the environment (see argvHook), and
// host paths go only into mmdebstrap's special hooks (sync-in, tar-in,
// upload, ...), which it splits into words itself, quoted by hookWord.
// Run refuses values that could not be passed that way. Pruning is not
// done here either: the role stage drops pruned paths from the layer in Go
// (see layer.PruneFilter).
package debian

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bootstrap is one mmdebstrap run.
type Bootstrap struct {
	Suite        string
	Architecture string
	Sources      []string // one-line apt sources ("deb URI SUITE COMPONENTS")
	Packages     []string
	Exclude      []string // dpkg path-exclude globs
	Include      []string // dpkg path-include globs
	Epoch        int64    // SOURCE_DATE_EPOCH

	// On is a root filesystem tar to install Packages on top of; empty for
	// a new base.
	On string
	// ListsIn is a directory of apt lists to use instead of downloading
	// them (for a build On a base); ListsOut receives the lists a base
	// build downloaded.
	ListsIn, ListsOut string
	// DebCache holds downloaded .deb files between runs.
	DebCache string
	// Output is the root filesystem tar to write.
	Output string
	// TempDir is where mmdebstrap makes its chroot. In unshare mode Run
	// lets others enter it (o+x), or, when a folder above it keeps them
	// out, puts the chroot in os.TempDir() instead (see unshareTempDir).
	TempDir string
	// Rootless runs mmdebstrap in --mode=unshare instead of root mode.
	Rootless bool
	// Log receives mmdebstrap's output.
	Log io.Writer
	// Command is the mmdebstrap binary; "mmdebstrap" when empty.
	Command string
}

// MissingPackageError says the mirror does not have a package.
type MissingPackageError struct {
	Package string
	Detail  string
}

func (e *MissingPackageError) Error() string {
	return fmt.Sprintf("package %q is not available from the mirror: %s", e.Package, e.Detail)
}

var (
	missingRes = []*regexp.Regexp{
		regexp.MustCompile(`E: Unable to locate package (\S+)`),
		regexp.MustCompile(`E: Package '([^']+)' has no installation candidate`),
		regexp.MustCompile(`E: Version '[^']+' for '([^']+)' was not found`),
		regexp.MustCompile(`E: Couldn't find any package by (?:glob|regex) '([^']+)'`),
	}
)

var (
	// packageRe is a Debian package name with an optional =VERSION, as
	// package spec accepts it.
	packageRe = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$`)
	// wordRe is what mmdebstrap itself runs without a shell: no shell
	// metacharacters at all.
	wordRe = regexp.MustCompile(`^[A-Za-z0-9@%+=:,./_-]+$`)
)

// packagesEnv holds the packages a build On a base installs, one a line;
// the install hook reads them from there, never from its own text.
const packagesEnv = "IMGFORGE_PACKAGES"

// argvHook is the text of a hook that runs, chrooted, the command whose
// words are the lines of the environment variable env. The words reach
// the command as arguments through xargs; no shell reads them.
func argvHook(phase, env string, fixed ...string) string {
	cmd := `chroot "$1"`
	if len(fixed) > 0 {
		cmd += " " + strings.Join(fixed, " ")
	}
	return fmt.Sprintf(`--%s-hook=printf '%%s\n' "$%s" | xargs --no-run-if-empty --delimiter='\n' %s`, phase, env, cmd)
}

// hookWord quotes s as one word of a special hook, which mmdebstrap splits
// with Perl's Text::ParseWords::shellwords (never a shell): plain words
// stay as they are, others go in double quotes with '\' and '"' escaped.
// s must not hold control characters (checkValue).
func hookWord(s string) string {
	if wordRe.MatchString(s) {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// checkValue refuses a value with a control character (a newline would
// start a new apt source, dpkg option or hook word).
func checkValue(what, s string) error {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s %q holds a control character", what, s)
		}
	}
	return nil
}

// check refuses what cannot be passed to mmdebstrap safely.
func (b *Bootstrap) check() error {
	for _, p := range b.Packages {
		if !packageRe.MatchString(p) {
			return fmt.Errorf("%q is not a Debian package name (lower-case letters, digits, '+', '-', '.'; optionally =VERSION)", p)
		}
	}
	for _, s := range b.Sources {
		if err := checkValue("apt source", s); err != nil {
			return err
		}
		if !strings.HasPrefix(s, "deb ") {
			return fmt.Errorf("apt source %q: expected \"deb URI SUITE COMPONENTS\"", s)
		}
	}
	for _, g := range append(append([]string(nil), b.Exclude...), b.Include...) {
		if err := checkValue("dpkg path glob", g); err != nil {
			return err
		}
		if strings.ContainsAny(g, " \t") {
			return fmt.Errorf("dpkg path glob %q holds a space", g)
		}
	}
	for _, v := range []struct{ what, s string }{{"suite", b.Suite}, {"architecture", b.Architecture}} {
		if v.s != "" && !wordRe.MatchString(v.s) {
			return fmt.Errorf("%s %q is not one word", v.what, v.s)
		}
	}
	for _, v := range []struct{ what, s string }{{"base tar", b.On}, {"apt lists folder", b.ListsIn}, {"apt lists folder", b.ListsOut}, {"package cache", b.DebCache}, {"output", b.Output}, {"temporary folder", b.TempDir}} {
		if err := checkValue(v.what, v.s); err != nil {
			return err
		}
	}
	return nil
}

// Env is what Args' hooks read from the environment.
func (b *Bootstrap) Env() []string {
	if b.On == "" || len(b.Packages) == 0 {
		return nil
	}
	return []string{packagesEnv + "=" + strings.Join(b.Packages, "\n")}
}

// MergedUsrHooks is mmdebstrap's hook folder that installs usr-is-merged
// before the essential packages. Args adds it for a base whose packages
// list usr-is-merged.
const MergedUsrHooks = "/usr/share/mmdebstrap/hooks/merged-usr"

// ownSyncedIn gives root what the sync-in hooks copied into apt's
// folders: mmdebstrap copies files with the owners they have outside, the
// user's own id in unshare mode, and the folders and apt's lock files stay
// in the image. As root, they are root's already.
const ownSyncedIn = `--setup-hook=chown -R 0:0 "$1"/var/cache/apt/archives/ "$1"/var/lib/apt/lists/`

// Args is the mmdebstrap command line for b; its hooks read Env.
func (b *Bootstrap) Args() []string {
	mode := "root"
	if b.Rootless {
		mode = "unshare"
	}
	args := []string{
		"--mode=" + mode,
		"--format=tar",
		"--verbose",
		"--architectures=" + b.Architecture,
		"--skip=essential/unlink",
		"--dpkgopt=force-unsafe-io",
		"--aptopt=APT::Install-Recommends \"false\"",
		"--aptopt=APT::Install-Suggests \"false\"",
	}
	for _, g := range b.Exclude {
		args = append(args, "--dpkgopt=path-exclude="+g)
	}
	for _, g := range b.Include {
		args = append(args, "--dpkgopt=path-include="+g)
	}
	args = append(args, `--setup-hook=mkdir -p "$1"/var/cache/apt/archives/ "$1"/var/lib/apt/lists/`)
	// Never build an initramfs here: an OCI image does not boot its own
	// kernel, and the bootable outputs make theirs once, for their root.
	divert := `--%s-hook=chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && printf '#!/bin/sh\nexit 0\n' > "$1/usr/sbin/update-initramfs" && chmod 755 "$1/usr/sbin/update-initramfs"`
	undivert := `--customize-hook=rm -f "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs`
	if b.On == "" {
		args = append(args, "--variant=apt")
		if slices.Contains(b.Packages, "usr-is-merged") {
			// init-system-helpers (essential) needs usrmerge | usr-is-merged,
			// and the essential set is installed before --include: without
			// this hook apt takes usrmerge, and with it perl (about 50 MB),
			// to merge a /usr that mmdebstrap has merged already. The hook
			// installs usr-is-merged first.
			args = append(args, "--hook-dir="+MergedUsrHooks)
		}
		if len(b.Packages) > 0 {
			args = append(args, "--include="+strings.Join(b.Packages, ","))
		}
		if b.DebCache != "" {
			args = append(args, "--setup-hook=sync-in "+hookWord(b.DebCache)+" /var/cache/apt/archives/", ownSyncedIn)
		}
		args = append(args, fmt.Sprintf(divert, "essential"))
	} else {
		// The base's resolv.conf is empty: apt in the chroot needs the host's.
		args = append(args, "--variant=custom", "--setup-hook=tar-in "+hookWord(b.On)+" /", "--setup-hook=upload /etc/resolv.conf /etc/resolv.conf")
		if b.DebCache != "" {
			args = append(args, "--setup-hook=sync-in "+hookWord(b.DebCache)+" /var/cache/apt/archives/")
		}
		if b.ListsIn != "" {
			args = append(args, "--skip=update", "--setup-hook=sync-in "+hookWord(b.ListsIn)+" /var/lib/apt/lists/")
		}
		if b.DebCache != "" || b.ListsIn != "" {
			args = append(args, ownSyncedIn)
		}
		args = append(args, fmt.Sprintf(divert, "customize"))
		if len(b.Packages) > 0 {
			args = append(args, argvHook("customize", packagesEnv, "apt-get", "install", "--yes", "--no-install-recommends", "-o", "Dpkg::Use-Pty=false"))
		}
	}
	if b.DebCache != "" {
		args = append(args, "--customize-hook=sync-out /var/cache/apt/archives "+hookWord(b.DebCache))
	}
	if b.ListsOut != "" {
		args = append(args, "--customize-hook=sync-out /var/lib/apt/lists "+hookWord(b.ListsOut))
	}
	args = append(args, undivert,
		// Host keys are per node: cloud-init makes them at first boot.
		`--customize-hook=rm -f "$1"/etc/ssh/ssh_host_*_key "$1"/etc/ssh/ssh_host_*_key.pub`,
		// Caches that hold build times or host details.
		`--customize-hook=rm -f "$1"/var/cache/ldconfig/aux-cache "$1"/var/lib/dbus/machine-id "$1"/etc/hostname`,
		`--customize-hook=printf 'localhost\n' > "$1"/etc/hostname && printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$1"/etc/hosts && : > "$1"/etc/resolv.conf`,
	)
	args = append(args, b.Suite, b.Output)
	args = append(args, b.Sources...)
	return args
}

// Run runs mmdebstrap. When ctx ends it sends mmdebstrap SIGTERM, so that
// it unmounts and removes its chroot, and waits for it.
func (b *Bootstrap) Run(ctx context.Context) error {
	if err := b.check(); err != nil {
		return fmt.Errorf("mmdebstrap: %w", err)
	}
	return b.run(ctx, b.Args(), b.Env())
}

func (b *Bootstrap) run(ctx context.Context, args, extraEnv []string) error {
	name := b.Command
	if name == "" {
		name = "mmdebstrap"
	}
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("mmdebstrap is not installed (apt-get install mmdebstrap): %w", err)
	}
	tmp := b.TempDir
	if b.Rootless {
		dir, note, remove, err := unshareTempDir(b.TempDir)
		if err != nil {
			return fmt.Errorf("mmdebstrap: %w", err)
		}
		defer remove()
		if note != "" && b.Log != nil {
			fmt.Fprintln(b.Log, note)
		}
		tmp = dir
	}
	cmd := exec.CommandContext(ctx, name, args...)
	env := toolEnv(os.Environ())
	env = append(env, "SOURCE_DATE_EPOCH="+strconv.FormatInt(b.Epoch, 10))
	if tmp != "" {
		env = append(env, "TMPDIR="+tmp)
	}
	env = append(env, extraEnv...)
	cmd.Env = env
	// Its own process group: a terminal's Ctrl-C reaches imgforge, which
	// then stops mmdebstrap in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Minute
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	var (
		wg      sync.WaitGroup
		missing []*MissingPackageError
		tail    []string
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if b.Log != nil {
				fmt.Fprintln(b.Log, line)
			}
			for _, re := range missingRes {
				if m := re.FindStringSubmatch(line); m != nil {
					missing = append(missing, &MissingPackageError{Package: m[1], Detail: strings.TrimPrefix(line, "E: ")})
				}
			}
			if strings.HasPrefix(line, "E: ") {
				tail = append(tail, strings.TrimPrefix(line, "E: "))
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	err := cmd.Run()
	pw.Close()
	wg.Wait()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(missing) > 0 {
		sort.Slice(missing, func(i, j int) bool { return missing[i].Package < missing[j].Package })
		return missing[0]
	}
	msg := "mmdebstrap failed"
	if len(tail) > 0 {
		msg += ": " + tail[0]
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%s (exit status %d)", msg, ee.ExitCode())
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// hostEnv are the variables of imgforge's environment that mmdebstrap
// gets: where programs are, and the proxies apt may need to reach the
// mirror. No other: mmdebstrap passes its environment to every package's
// maintainer scripts, and what they write must not depend on who built
// the image, or how. (PYTHONDONTWRITEBYTECODE, which a developer's shell
// may set, decided whether py3compile's own modules were cached by
// import, with timestamps, or compiled with SOURCE_DATE_EPOCH; HOME was
// the user's without root.)
var hostEnv = []string{"PATH", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"}

// fixedEnv is the rest of mmdebstrap's environment, the same for every
// build; Run adds SOURCE_DATE_EPOCH, TMPDIR and what the hooks read.
var fixedEnv = []string{
	"LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive",
	// The maintainer scripts run as root, in the chroot.
	"HOME=/root",
	// Python caches nothing by import: only py3compile writes
	// bytecode, checked by hash under SOURCE_DATE_EPOCH.
	"PYTHONDONTWRITEBYTECODE=1",
}

// toolEnv is mmdebstrap's environment, from imgforge's own, environ.
func toolEnv(environ []string) []string {
	var env []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(hostEnv, k) {
			env = append(env, kv)
		}
	}
	return append(env, fixedEnv...)
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Version is the installed mmdebstrap's version, part of every cache key.
func Version(ctx context.Context, command string) (string, error) {
	if command == "" {
		command = "mmdebstrap"
	}
	out, err := exec.CommandContext(ctx, command, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("mmdebstrap is not installed (apt-get install mmdebstrap): %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
