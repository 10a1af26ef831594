package render

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/imgforge/imgforge/pkg/atomicfile"
)

// Runner runs a command on the node and gives its combined output. The
// Applier runs checkers and the services' commands through it.
type Runner interface {
	Run(ctx context.Context, argv []string) ([]byte, error)
}

// ExecRunner runs commands with os/exec.
//
// A systemctl command that reloads or restarts units first waits (at
// most SettleTimeout, default 3 minutes) until none of them is starting,
// stopping or reloading. systemd folds a reload asked while a unit starts
// into that start job, and the start read its configuration before the
// new file was written: the command succeeds and the new file is never
// loaded. (Seen under load: an lb whose haproxy took 40 s to start kept
// its first-boot configuration and answered 503 to every request, while
// its agent reported the real one rendered.)
type ExecRunner struct {
	Poll          time.Duration // default 500ms
	SettleTimeout time.Duration // default 3m
}

// Run runs argv and returns its combined output.
func (r ExecRunner) Run(ctx context.Context, argv []string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("running: empty command")
	}
	if units := reloadedUnits(argv); len(units) > 0 {
		if err := r.settle(ctx, argv[0], units); err != nil {
			return nil, err
		}
	}
	return exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
}

// reloadedUnits are the units a systemctl command reloads or restarts.
func reloadedUnits(argv []string) []string {
	if filepath.Base(argv[0]) != "systemctl" {
		return nil
	}
	verb := -1
	for i, a := range argv[1:] {
		if !strings.HasPrefix(a, "-") {
			verb = i + 1
			break
		}
	}
	if verb < 0 {
		return nil
	}
	switch argv[verb] {
	case "reload", "restart", "try-restart", "reload-or-restart", "try-reload-or-restart", "force-reload", "condrestart":
	default:
		return nil
	}
	var units []string
	for _, a := range argv[verb+1:] {
		if !strings.HasPrefix(a, "-") {
			units = append(units, a)
		}
	}
	return units
}

// settle waits until no unit of units is in a transition (systemctl
// show's ActiveState activating, deactivating, reloading or refreshing).
func (r ExecRunner) settle(ctx context.Context, systemctl string, units []string) error {
	poll, limit := r.Poll, r.SettleTimeout
	if poll <= 0 {
		poll = 500 * time.Millisecond
	}
	if limit <= 0 {
		limit = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	args := append([]string{"show", "--property=ActiveState", "--value"}, units...)
	busy := ""
	for {
		out, err := exec.CommandContext(ctx, systemctl, args...).Output()
		if err == nil {
			busy = ""
			for i, st := range strings.Fields(string(out)) {
				switch st {
				case "activating", "deactivating", "reloading", "refreshing":
					if i < len(units) {
						busy = units[i] + " is " + st
					}
				}
			}
			if busy == "" {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if busy == "" && err != nil {
				busy = fmt.Sprintf("asking its state: %v", err)
			}
			return fmt.Errorf("waiting to reload %s: %s after %s", strings.Join(units, " "), busy, limit)
		case <-time.After(poll):
		}
	}
}

// Applier writes rendered configurations onto a node.
type Applier struct {
	// Root is the node's root file system: "/" on a node.
	Root string
	// Runner runs the checkers and the services' commands.
	Runner Runner

	mu sync.Mutex
	// failed remembers, per service, the digest of a set of files its
	// checker refused and why, so the same files are not checked again and
	// again.
	failed map[string]failure
}

type failure struct {
	digest string
	err    error
}

// FileReport is the state of one file after Apply.
type FileReport struct {
	Path string `json:"path"`
	// SHA256 is the hex digest of the file as it now is on the node.
	SHA256 string `json:"sha256"`
	// Changed says this Apply wrote it.
	Changed   bool `json:"changed"`
	Sensitive bool `json:"sensitive,omitempty"`
}

// ServiceReport is the outcome for one service.
type ServiceReport struct {
	Name  string       `json:"name"`
	Files []FileReport `json:"files"`
	// Changed says its files changed and its commands ran.
	Changed bool `json:"changed"`
	// Error is why its new files were not kept; empty when they were.
	Error string `json:"error,omitempty"`
}

// Report is the outcome of one Apply.
type Report struct {
	Services []ServiceReport `json:"services"`
	Waiting  []string        `json:"waiting,omitempty"`
}

// ErrCheck wraps a checker's refusal of a candidate file.
var ErrCheck = errors.New("check failed")

// Apply writes every service of c in order. A service whose check or
// command fails gets its previous files back and does not stop the
// others; the error joins every service's error. A set of files a checker
// refused is not tried again until it changes; one whose command failed
// is tried again by the next Apply (the caller paces its retries).
func (a *Applier) Apply(ctx context.Context, c *Config) (*Report, error) {
	if a.Runner == nil {
		return nil, fmt.Errorf("applying: no Runner")
	}
	root := a.Root
	if root == "" {
		root = "/"
	}
	ids, err := readIDs(root)
	if err != nil {
		return nil, err
	}
	rep := &Report{Waiting: c.Waiting}
	var errs []error
	for _, s := range c.Services {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		sr, err := a.applyService(ctx, root, ids, s)
		if err != nil {
			sr.Error = err.Error()
			errs = append(errs, err)
		}
		rep.Services = append(rep.Services, sr)
	}
	return rep, errors.Join(errs...)
}

// onDisk is a file as it was before Apply.
type onDisk struct {
	exists   bool
	data     []byte
	mode     fs.FileMode
	uid, gid int
}

func (a *Applier) applyService(ctx context.Context, root string, ids *idMap, s Service) (ServiceReport, error) {
	sr := ServiceReport{Name: s.Name}
	setDigest := sha256.New()
	old := make([]onDisk, len(s.Files))
	want := make([][2]int, len(s.Files))
	for i, f := range s.Files {
		if !filepath.IsAbs(f.Path) || filepath.Clean(f.Path) != f.Path {
			return sr, fmt.Errorf("%s: %s: not a clean absolute path", s.Name, f.Path)
		}
		uid, gid, err := ids.lookup(f.Owner, f.Group)
		if err != nil {
			return sr, fmt.Errorf("%s: %s: %w", s.Name, f.Path, err)
		}
		want[i] = [2]int{uid, gid}
		old[i] = readOnDisk(filepath.Join(root, f.Path))
		fmt.Fprintf(setDigest, "%s %o %d %d %d\n", f.Path, f.Mode, uid, gid, len(f.Data))
		setDigest.Write(f.Data)
		sr.Files = append(sr.Files, FileReport{Path: f.Path, SHA256: digest(f.Data), Sensitive: f.Sensitive})
	}
	same := func(i int) bool {
		o, f := old[i], s.Files[i]
		return o.exists && bytes.Equal(o.data, f.Data) && o.mode == f.Mode.Perm() && o.uid == want[i][0] && o.gid == want[i][1]
	}
	changed := false
	for i := range s.Files {
		changed = changed || !same(i)
	}
	if !changed {
		a.forget(s.Name)
		return sr, nil
	}
	setSum := hex.EncodeToString(setDigest.Sum(nil))
	if f, ok := a.lastFailure(s.Name); ok && f.digest == setSum {
		a.reportOld(&sr, old)
		return sr, fmt.Errorf("%w (unchanged since it failed; kept the previous files)", f.err)
	}

	var applied []int
	thenRan := false
	fail := func(err error) (ServiceReport, error) {
		if rerr := a.restore(root, s.Files, old, applied); rerr != nil {
			err = fmt.Errorf("%w; restoring the previous files: %w", err, rerr)
		} else if thenRan && allExisted(old, applied) {
			// The commands may have half-run with the new files (a
			// restart that failed): run them with the old ones.
			if rerr := a.runAll(ctx, s.Then); rerr != nil {
				err = fmt.Errorf("%w; then with the previous files: %w", err, rerr)
			}
		}
		if errors.Is(err, ErrCheck) {
			// A checker gives the same answer for the same files; a
			// command may fail for a while (a database still starting).
			a.remember(s.Name, failure{digest: setSum, err: err})
		}
		a.reportOld(&sr, old)
		return sr, err
	}
	for i, f := range s.Files {
		if same(i) {
			continue
		}
		if err := a.replace(ctx, root, f, want[i][0], want[i][1]); err != nil {
			return fail(fmt.Errorf("%s: %w", s.Name, err))
		}
		applied = append(applied, i)
		sr.Files[i].Changed = true
	}
	thenRan = true
	if err := a.runAll(ctx, s.Then); err != nil {
		return fail(fmt.Errorf("%s: %w (the previous files are back)", s.Name, err))
	}
	a.forget(s.Name)
	sr.Changed = true
	return sr, nil
}

// replace writes f beside its target, checks it, and renames it over the
// target.
func (a *Applier) replace(ctx context.Context, root string, f File, uid, gid int) error {
	target := filepath.Join(root, f.Path)
	tmp, err := writeTemp(target, f.Data, f.Mode.Perm(), uid, gid)
	if err != nil {
		return fmt.Errorf("writing %s: %w", f.Path, err)
	}
	defer tmp.Abort() // a no-op once committed
	if f.Validate != nil {
		if err := f.Validate.Check(f.Data); err != nil {
			return fmt.Errorf("checking %s with %s: %w: %w", f.Path, f.Validate.Name, ErrCheck, err)
		}
	}
	if len(f.Check) > 0 {
		candidate := filepath.Join(filepath.Dir(f.Path), filepath.Base(tmp.Name()))
		argv := make([]string, len(f.Check))
		for i, arg := range f.Check {
			argv[i] = strings.ReplaceAll(arg, Candidate, candidate)
		}
		if out, err := a.Runner.Run(ctx, argv); err != nil {
			line := firstError(strings.ReplaceAll(string(out), candidate, f.Path))
			return fmt.Errorf("checking %s with %s: %w: %s", f.Path, argv[0], ErrCheck, orErr(line, err))
		}
	}
	if err := tmp.Commit(); err != nil {
		return fmt.Errorf("replacing %s: %w", f.Path, err)
	}
	return nil
}

// restore puts the files of applied back as they were.
func (a *Applier) restore(root string, files []File, old []onDisk, applied []int) error {
	var errs []error
	for k := len(applied) - 1; k >= 0; k-- {
		i := applied[k]
		target := filepath.Join(root, files[i].Path)
		if !old[i].exists {
			if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		tmp, err := writeTemp(target, old[i].data, old[i].mode, old[i].uid, old[i].gid)
		if err == nil {
			err = tmp.Commit()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", files[i].Path, err))
		}
	}
	return errors.Join(errs...)
}

func (a *Applier) runAll(ctx context.Context, cmds [][]string) error {
	for _, argv := range cmds {
		if out, err := a.Runner.Run(ctx, argv); err != nil {
			return fmt.Errorf("running %s: %s", strings.Join(argv, " "), orErr(firstError(string(out)), err))
		}
	}
	return nil
}

// reportOld sets the reported digests to the files as they are again.
func (a *Applier) reportOld(sr *ServiceReport, old []onDisk) {
	for i := range sr.Files {
		sr.Files[i].Changed = false
		sr.Files[i].SHA256 = ""
		if old[i].exists {
			sr.Files[i].SHA256 = digest(old[i].data)
		}
	}
}

func (a *Applier) lastFailure(name string) (failure, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f, ok := a.failed[name]
	return f, ok
}

func (a *Applier) remember(name string, f failure) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failed == nil {
		a.failed = map[string]failure{}
	}
	a.failed[name] = f
}

func (a *Applier) forget(name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.failed, name)
}

func allExisted(old []onDisk, applied []int) bool {
	for _, i := range applied {
		if !old[i].exists {
			return false
		}
	}
	return true
}

func readOnDisk(p string) onDisk {
	fi, err := os.Lstat(p)
	if err != nil || !fi.Mode().IsRegular() {
		return onDisk{}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return onDisk{}
	}
	d := onDisk{exists: true, data: b, mode: fi.Mode().Perm(), uid: -1, gid: -1}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		d.uid, d.gid = int(st.Uid), int(st.Gid)
	}
	return d
}

// writeTemp writes data to a new hidden file beside target (so that
// committing it is atomic), with its mode and owners; the caller commits
// or aborts it.
func writeTemp(target string, data []byte, mode fs.FileMode, uid, gid int) (*atomicfile.File, error) {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return nil, err
	}
	f, err := atomicfile.Create(target, mode)
	if err != nil {
		return nil, err
	}
	if uid >= 0 {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		_, err = f.Write(data)
	}
	if err != nil {
		f.Abort()
		return nil, err
	}
	return f, nil
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// firstError picks the line of a checker's output that says what is
// wrong: the first that looks like an error, else the first non-empty one.
func firstError(out string) string {
	var first string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if first == "" {
			first = line
		}
		l := strings.ToLower(line)
		for _, w := range []string{"alert", "emerg", "error", "fail", "unknown", "invalid"} {
			if strings.Contains(l, w) {
				return line
			}
		}
	}
	return first
}

func orErr(line string, err error) string {
	if line == "" {
		return err.Error()
	}
	return line
}

// idMap resolves user and group names in the node's /etc/passwd and
// /etc/group (not the host's: a test's root is not the host).
type idMap struct {
	users, groups map[string]int
}

func readIDs(root string) (*idMap, error) {
	m := &idMap{}
	var err error
	if m.users, err = readIDFile(filepath.Join(root, "etc/passwd")); err != nil {
		return nil, err
	}
	if m.groups, err = readIDFile(filepath.Join(root, "etc/group")); err != nil {
		return nil, err
	}
	return m, nil
}

func readIDFile(p string) (map[string]int, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading the node's users: %w", err)
	}
	ids := map[string]int{}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Split(line, ":")
		if len(fields) < 3 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if id, err := strconv.Atoi(fields[2]); err == nil {
			if _, dup := ids[fields[0]]; !dup {
				ids[fields[0]] = id
			}
		}
	}
	return ids, nil
}

func (m *idMap) lookup(user, group string) (int, int, error) {
	uid, ok := m.users[user]
	if !ok {
		return 0, 0, fmt.Errorf("owner %q is not a user in the node's /etc/passwd", user)
	}
	gid, ok := m.groups[group]
	if !ok {
		return 0, 0, fmt.Errorf("group %q is not a group in the node's /etc/group", group)
	}
	return uid, gid, nil
}
