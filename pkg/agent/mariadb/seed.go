// Package mariadb seeds a MariaDB replica from its primary: it fetches
// the snapshot the primary's agent streams (mariadb-backup's xbstream,
// GET /v1/snapshot on the control endpoint), extracts and prepares it
// beside the datadir, puts it in place of the datadir while MariaDB is
// stopped, and sets the replica's GTID position to the snapshot's, so
// that replication starts where the snapshot ends.
//
// It owns the seed's order and its safety: nothing of the running
// datadir changes before the new one is complete and prepared, and a
// datadir counts as seeded only once its position is set (the marker
// file). It does not know how the snapshot travels (Options.Fetch) or
// which node is the primary (the seed file the agent renders).
package mariadb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Defaults on a node.
const (
	DefaultDatadir    = "/var/lib/mysql"
	DefaultReplicaSQL = "/etc/imgforge/db/replica.sql"
	// Marker is the file, in the datadir, that says the datadir was
	// seeded and its GTID position set.
	Marker = ".imgforge-seeded"
	// Service is MariaDB's systemd unit.
	Service = "mariadb.service"
	// BinlogInfo is the file of a mariadb-backup snapshot that holds the
	// primary's binary log position and GTID at the snapshot.
	BinlogInfo = "xtrabackup_binlog_info"
)

// Runner runs a command without a shell, with stdin (nil: none), and
// gives its combined output.
type Runner interface {
	Run(ctx context.Context, argv []string, stdin io.Reader) ([]byte, error)
}

// ExecRunner runs commands with os/exec.
type ExecRunner struct{}

// Run runs argv.
func (ExecRunner) Run(ctx context.Context, argv []string, stdin io.Reader) ([]byte, error) {
	if len(argv) == 0 {
		return nil, errors.New("running: empty command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = stdin
	cmd.WaitDelay = 10 * time.Second
	return cmd.CombinedOutput()
}

// Options configure Seed.
type Options struct {
	// Datadir is MariaDB's datadir (DefaultDatadir); the new one is made
	// beside it, so that moving it in place is a rename.
	Datadir string
	// ReplicaSQL attaches the replica to the primary (DefaultReplicaSQL,
	// rendered by the agent); it is run after the position is set when
	// it exists.
	ReplicaSQL string
	// Fetch opens the primary's snapshot; its reader must fail rather
	// than end when the snapshot was cut (agent.FetchSnapshot does).
	Fetch func(ctx context.Context) (io.ReadCloser, error)
	// Run runs mbstream, mariadb-backup, systemctl and mariadb.
	Run Runner
	// Owner gives the uid and gid of MariaDB's account (default: the
	// user mysql and its group).
	Owner func() (uid, gid int, err error)
	Now   func() time.Time
	Logf  func(format string, args ...any)
}

// Result says what Seed did.
type Result struct {
	// Seeded is false when the datadir carried the marker already.
	Seeded bool
	// GTID is the snapshot's position, now gtid_slave_pos.
	GTID string
	// Aside is where the previous datadir was moved.
	Aside string
}

// Seed seeds the datadir from the primary's snapshot unless it carries
// Marker, then runs the replica's SQL (Options.ReplicaSQL) when it is
// there: on a datadir that carries Marker, only that. A failure before the new datadir is moved in leaves the old
// one in place and MariaDB running on it; a failure after it leaves no
// marker, so the next Seed starts over.
func Seed(ctx context.Context, o Options) (Result, error) {
	o.defaults()
	if _, err := os.Lstat(filepath.Join(o.Datadir, Marker)); err == nil {
		o.Logf("%s carries %s: seeded already", o.Datadir, Marker)
		return Result{}, o.replicate(ctx)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Result{}, fmt.Errorf("looking for %s: %w", Marker, err)
	}
	dir, err := os.MkdirTemp(filepath.Dir(o.Datadir), ".imgforge-seed-")
	if err != nil {
		return Result{}, fmt.Errorf("making the new datadir: %w", err)
	}
	swapped := false
	defer func() {
		if !swapped {
			_ = os.RemoveAll(dir)
		}
	}()
	gtid, err := o.prepare(ctx, dir)
	if err != nil {
		return Result{}, err
	}
	aside, err := o.swap(ctx, dir)
	if err != nil {
		return Result{}, err
	}
	swapped = true
	if err := o.attach(ctx, gtid); err != nil {
		return Result{GTID: gtid, Aside: aside}, err
	}
	if err := os.WriteFile(filepath.Join(o.Datadir, Marker), fmt.Appendf(nil, "gtid %s\nseeded %s\n", gtid, o.Now().UTC().Format(time.RFC3339)), 0o644); err != nil {
		return Result{GTID: gtid, Aside: aside}, fmt.Errorf("writing %s: %w", Marker, err)
	}
	o.Logf("seeded %s from the primary's snapshot at GTID %q; the previous datadir is %s", o.Datadir, gtid, aside)
	return Result{Seeded: true, GTID: gtid, Aside: aside}, nil
}

func (o *Options) defaults() {
	if o.Datadir == "" {
		o.Datadir = DefaultDatadir
	}
	if o.ReplicaSQL == "" {
		o.ReplicaSQL = DefaultReplicaSQL
	}
	if o.Run == nil {
		o.Run = ExecRunner{}
	}
	if o.Owner == nil {
		o.Owner = mysqlOwner
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	o.Datadir = filepath.Clean(o.Datadir)
}

// prepare fills dir with the primary's snapshot, prepared and owned by
// MariaDB's account, and returns its GTID position.
func (o *Options) prepare(ctx context.Context, dir string) (string, error) {
	if o.Fetch == nil {
		return "", errors.New("no way to fetch the snapshot")
	}
	body, err := o.Fetch(ctx)
	if err != nil {
		return "", err
	}
	defer body.Close()
	o.Logf("extracting the primary's snapshot into %s", dir)
	in := &errReader{r: body}
	out, err := o.Run.Run(ctx, []string{"mbstream", "-x", "-C", dir}, in)
	if in.err != nil {
		return "", fmt.Errorf("receiving the snapshot: %w", in.err)
	}
	if err != nil {
		return "", commandError("mbstream -x", out, err)
	}
	o.Logf("preparing the snapshot")
	if out, err := o.Run.Run(ctx, []string{"mariadb-backup", "--prepare", "--target-dir=" + dir}, nil); err != nil {
		return "", commandError("mariadb-backup --prepare", out, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, BinlogInfo))
	if err != nil {
		return "", fmt.Errorf("the snapshot has no binary log position: %w", err)
	}
	gtid, err := ParseBinlogInfo(b)
	if err != nil {
		return "", fmt.Errorf("the snapshot's %s: %w", BinlogInfo, err)
	}
	if err := o.own(dir); err != nil {
		return "", err
	}
	return gtid, nil
}

// own gives dir and everything in it to MariaDB's account, and dir the
// mode of the datadir it replaces (0755 when there is none).
func (o *Options) own(dir string) error {
	uid, gid, err := o.Owner()
	if err != nil {
		return err
	}
	err = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		return fmt.Errorf("giving the new datadir to MariaDB's account: %w", err)
	}
	mode := fs.FileMode(0o755)
	if st, err := os.Stat(o.Datadir); err == nil {
		mode = st.Mode().Perm()
	}
	return os.Chmod(dir, mode)
}

// swap stops MariaDB and moves the datadir's entries aside and dir's
// entries into it. It moves entries, not the datadir itself: on a node
// the datadir is a folder of the image's /var, an overlay whose lower
// folders cannot be renamed (EXDEV without redirect_dir), while the
// entries in it were all made on the node. On failure the old entries
// are back and MariaDB is started on them.
func (o *Options) swap(ctx context.Context, dir string) (string, error) {
	o.Logf("stopping MariaDB to put the snapshot in place")
	if out, err := o.Run.Run(ctx, []string{"systemctl", "stop", Service}, nil); err != nil {
		return "", o.restart(ctx, commandError("systemctl stop "+Service, out, err))
	}
	st, err := os.Stat(o.Datadir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Rename(dir, o.Datadir); err != nil {
			return "", o.restart(ctx, fmt.Errorf("moving the snapshot in place of the datadir: %w", err))
		}
		return "", nil
	case err != nil:
		return "", o.restart(ctx, fmt.Errorf("reading the datadir: %w", err))
	}
	aside := o.asideName()
	if err := os.Mkdir(aside, st.Mode().Perm()); err != nil {
		return "", o.restart(ctx, fmt.Errorf("making the folder for the previous datadir: %w", err))
	}
	if err := moveEntries(o.Datadir, aside); err != nil {
		err = fmt.Errorf("moving the datadir aside: %w", err)
		if rerr := moveEntries(aside, o.Datadir); rerr != nil {
			return "", fmt.Errorf("%w; moving the old datadir back from %s: %w", err, aside, rerr)
		}
		_ = os.Remove(aside)
		return "", o.restart(ctx, err)
	}
	if err := moveEntries(dir, o.Datadir); err != nil {
		err = fmt.Errorf("moving the snapshot into the datadir: %w", err)
		if rerr := moveEntries(o.Datadir, dir); rerr != nil {
			return "", fmt.Errorf("%w; moving the snapshot out again: %w", err, rerr)
		}
		if rerr := moveEntries(aside, o.Datadir); rerr != nil {
			return "", fmt.Errorf("%w; moving the old datadir back from %s: %w", err, aside, rerr)
		}
		_ = os.Remove(aside)
		return "", o.restart(ctx, err)
	}
	if err := os.Remove(dir); err != nil {
		o.Logf("removing the emptied %s: %v", dir, err)
	}
	return aside, nil
}

// moveEntries renames every entry of from into to, which is on the same
// file system.
func moveEntries(from, to string) error {
	entries, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(from, e.Name()), filepath.Join(to, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// asideName is where the datadir goes: DATADIR.pre-seed-TIME, with -N
// after it when a seed of the same second left one there.
func (o *Options) asideName() string {
	base := fmt.Sprintf("%s.pre-seed-%s", o.Datadir, o.Now().UTC().Format("20060102T150405Z"))
	name := base
	for n := 2; ; n++ {
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, n)
	}
}

// restart starts MariaDB again after err, and returns err.
func (o *Options) restart(ctx context.Context, err error) error {
	if out, serr := o.Run.Run(ctx, []string{"systemctl", "start", Service}, nil); serr != nil {
		return fmt.Errorf("%w; starting MariaDB again: %w", err, commandError("systemctl start "+Service, out, serr))
	}
	return err
}

// attach starts MariaDB on the new datadir, sets its GTID position and
// attaches it to the primary when the replica's SQL is there.
func (o *Options) attach(ctx context.Context, gtid string) error {
	if out, err := o.Run.Run(ctx, []string{"systemctl", "start", Service}, nil); err != nil {
		return commandError("systemctl start "+Service, out, err)
	}
	// gtid is a validated GTID list (digits, '-' and ','): safe inside
	// the quotes; no shell runs it.
	set := "--execute=SET GLOBAL gtid_slave_pos = '" + gtid + "'"
	if out, err := o.Run.Run(ctx, []string{"mariadb", "--batch", set}, nil); err != nil {
		return commandError("setting gtid_slave_pos", out, err)
	}
	return o.replicate(ctx)
}

// replicate runs the replica's SQL (CHANGE MASTER TO the primary, START
// SLAVE) when it is there. It runs only on a seeded datadir: before the
// seed, the replica would start from the primary's first binary log, or
// from a position that is not its data's.
func (o *Options) replicate(ctx context.Context) error {
	if _, err := os.Stat(o.ReplicaSQL); err != nil {
		o.Logf("%s is not rendered yet: replication starts when it is", o.ReplicaSQL)
		return nil
	}
	if out, err := o.Run.Run(ctx, []string{"mariadb", "--batch", "--execute=source " + o.ReplicaSQL}, nil); err != nil {
		// The file holds the replication password, and MariaDB
		// quotes the statement it refuses: only its error code.
		return fmt.Errorf("running %s: %w: %s", o.ReplicaSQL, err, sqlErrorCode(out))
	}
	return nil
}

// mysqlOwner is the uid and gid of the user mysql.
func mysqlOwner() (int, int, error) {
	u, err := user.Lookup("mysql")
	if err != nil {
		return 0, 0, fmt.Errorf("looking up MariaDB's account: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("MariaDB's account has uid %q, gid %q: not numbers", u.Uid, u.Gid)
	}
	return uid, gid, nil
}

// commandError says which step failed, with the last line of its output,
// which tells why.
func commandError(what string, out []byte, err error) error {
	if line := lastLine(out); line != "" {
		return fmt.Errorf("%s: %w: %s", what, err, line)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// lastLine is the last non-empty line of out, at most 300 bytes: tools
// such as mariadb-backup end with the line that says what went wrong.
func lastLine(out []byte) string {
	lines := strings.Split(string(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if t := strings.TrimSpace(lines[i]); t != "" {
			return t[:min(len(t), 300)]
		}
	}
	return ""
}

var sqlError = regexp.MustCompile(`ERROR [0-9]{1,5} \([0-9A-Z]{5}\)( at line [0-9]+)?`)

// sqlErrorCode is the code of the MariaDB client's error in out, without
// its message (which may quote a statement and its secrets).
func sqlErrorCode(out []byte) string {
	if m := sqlError.Find(out); m != nil {
		return string(m)
	}
	return "(no MariaDB error code in its output)"
}

// errReader remembers the error (other than io.EOF) its reader gave.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err
}
