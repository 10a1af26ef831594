package mariadb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeNode plays mbstream, mariadb-backup, systemctl and mariadb.
type fakeNode struct {
	calls      []string
	stdin      []byte
	binlogInfo string
	fail       map[string]error // by the call's first two words
	running    bool
}

func (f *fakeNode) Run(ctx context.Context, argv []string, stdin io.Reader) ([]byte, error) {
	call := strings.Join(argv, " ")
	f.calls = append(f.calls, call)
	key := strings.Join(argv[:min(2, len(argv))], " ")
	if err := f.fail[key]; err != nil {
		return []byte("some diagnostics\nthe reason it failed\n"), err
	}
	switch argv[0] {
	case "mbstream":
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, err
		}
		f.stdin = b
		dir := argv[len(argv)-1]
		if err := os.WriteFile(filepath.Join(dir, "ibdata1"), b, 0o640); err != nil {
			return nil, err
		}
		return nil, os.WriteFile(filepath.Join(dir, BinlogInfo), []byte(f.binlogInfo), 0o640)
	case "systemctl":
		f.running = argv[1] == "start"
	}
	return nil, nil
}

type seedTest struct {
	t       *testing.T
	parent  string
	datadir string
	sql     string
	node    *fakeNode
	fetched int
	body    func() io.ReadCloser
}

func newSeedTest(t *testing.T) *seedTest {
	parent := t.TempDir()
	s := &seedTest{t: t, parent: parent, datadir: filepath.Join(parent, "mysql"), sql: filepath.Join(parent, "replica.sql"),
		node: &fakeNode{binlogInfo: "mysql-bin.000002\t1234\t0-1-42\n", fail: map[string]error{}, running: true}}
	if err := os.MkdirAll(filepath.Join(s.datadir, "mysql"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.datadir, "ibdata1"), []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.sql, []byte("START SLAVE;"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.body = func() io.ReadCloser { return io.NopCloser(strings.NewReader("snapshot bytes")) }
	return s
}

func (s *seedTest) seed() (Result, error) {
	return Seed(context.Background(), Options{
		Datadir: s.datadir, ReplicaSQL: s.sql, Run: s.node,
		Fetch: func(context.Context) (io.ReadCloser, error) {
			s.fetched++
			if s.body == nil {
				return nil, errors.New("connection refused")
			}
			return s.body(), nil
		},
		Owner: func() (int, int, error) { return os.Getuid(), os.Getgid(), nil },
		Now:   func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) },
		Logf:  s.t.Logf,
	})
}

// datadir is the content of the datadir's ibdata1.
func (s *seedTest) ibdata() string {
	b, err := os.ReadFile(filepath.Join(s.datadir, "ibdata1"))
	if err != nil {
		s.t.Fatal(err)
	}
	return string(b)
}

// leftovers are the folders beside the datadir but the datadir.
func (s *seedTest) leftovers() []string {
	es, err := os.ReadDir(s.parent)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		if e.IsDir() && e.Name() != "mysql" {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestSeed(t *testing.T) {
	s := newSeedTest(t)
	res, err := s.seed()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Seeded || res.GTID != "0-1-42" || res.Aside != s.datadir+".pre-seed-20260301T120000Z" {
		t.Errorf("result %+v", res)
	}
	if got := s.ibdata(); got != "snapshot bytes" {
		t.Errorf("the datadir holds %q, not the snapshot", got)
	}
	if !bytes.Equal(s.node.stdin, []byte("snapshot bytes")) {
		t.Errorf("mbstream read %q", s.node.stdin)
	}
	old, err := os.ReadFile(filepath.Join(res.Aside, "ibdata1"))
	if err != nil || string(old) != "old" {
		t.Errorf("the old datadir aside: %q %v", old, err)
	}
	marker, err := os.ReadFile(filepath.Join(s.datadir, Marker))
	if err != nil || !strings.Contains(string(marker), "gtid 0-1-42") {
		t.Errorf("marker %q %v", marker, err)
	}
	if st, err := os.Stat(s.datadir); err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("the new datadir's mode: %v %v (the old one's was 0750)", st.Mode(), err)
	}
	want := []string{
		"mbstream -x -C " + filepath.Join(s.parent, "*"),
		"mariadb-backup --prepare --target-dir=" + filepath.Join(s.parent, "*"),
		"systemctl stop mariadb.service",
		"systemctl start mariadb.service",
		"mariadb --batch --execute=SET GLOBAL gtid_slave_pos = '0-1-42'",
		"mariadb --batch --execute=source " + s.sql,
	}
	s.checkCalls(want)
	// Seeded: no second seed, but the replica's SQL runs (the primary
	// changed, or the SQL did).
	s.node.calls = nil
	if res, err := s.seed(); err != nil || res.Seeded || s.fetched != 1 {
		t.Errorf("a seeded datadir: %+v %v, %d fetches", res, err, s.fetched)
	}
	s.checkCalls([]string{"mariadb --batch --execute=source " + s.sql})
}

func (s *seedTest) checkCalls(want []string) {
	s.t.Helper()
	if len(s.node.calls) != len(want) {
		s.t.Fatalf("calls\n  %s\nwant\n  %s", strings.Join(s.node.calls, "\n  "), strings.Join(want, "\n  "))
	}
	for i, w := range want {
		if ok, _ := filepath.Match(w, s.node.calls[i]); !ok && w != s.node.calls[i] {
			s.t.Errorf("call %d: %q, want %q", i, s.node.calls[i], w)
		}
	}
}

// TestSeedFailsBeforeSwap: whatever fails before the new datadir is in
// place leaves the old one as it was, MariaDB running on it (never
// stopped) and nothing beside it.
func TestSeedFailsBeforeSwap(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(s *seedTest)
		want string
	}{
		{"fetch", func(s *seedTest) { s.body = nil }, "connection refused"},
		{"cut", func(s *seedTest) {
			s.body = func() io.ReadCloser {
				return io.NopCloser(io.MultiReader(strings.NewReader("half"), iotestErr{errors.New("node db-1's snapshot ended without saying it is complete: it was cut")}))
			}
		}, "receiving the snapshot: node db-1's snapshot ended without saying it is complete"},
		{"mbstream", func(s *seedTest) { s.node.fail["mbstream -x"] = errors.New("exit status 1") }, "mbstream -x: exit status 1: the reason it failed"},
		{"prepare", func(s *seedTest) { s.node.fail["mariadb-backup --prepare"] = errors.New("exit status 1") }, "mariadb-backup --prepare: exit status 1"},
		{"no gtid", func(s *seedTest) { s.node.binlogInfo = "mysql-bin.000002\t1234\n" }, "no GTID"},
		{"injected gtid", func(s *seedTest) { s.node.binlogInfo = "mysql-bin.000002\t1234\t0-1-42'; DROP DATABASE x; --\n" }, "not a GTID list"},
		{"stop", func(s *seedTest) { s.node.fail["systemctl stop"] = errors.New("exit status 1") }, "systemctl stop mariadb.service: exit status 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSeedTest(t)
			tt.edit(s)
			_, err := s.seed()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if got := s.ibdata(); got != "old" {
				t.Errorf("the datadir holds %q", got)
			}
			if l := s.leftovers(); len(l) != 0 {
				t.Errorf("left beside the datadir: %q", l)
			}
			if !s.node.running {
				t.Errorf("MariaDB is left stopped: %q", s.node.calls)
			}
			if _, err := os.Stat(filepath.Join(s.datadir, Marker)); err == nil {
				t.Error("a marker was written")
			}
		})
	}
}

type iotestErr struct{ err error }

func (e iotestErr) Read([]byte) (int, error) { return 0, e.err }

// TestSeedFailsAfterSwap: a failure once the snapshot is in place leaves
// no marker, so the next run seeds again and sets the position.
func TestSeedFailsAfterSwap(t *testing.T) {
	s := newSeedTest(t)
	s.node.fail["mariadb --batch"] = errors.New("exit status 1")
	if _, err := s.seed(); err == nil || !strings.Contains(err.Error(), "setting gtid_slave_pos") {
		t.Fatalf("error %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.datadir, Marker)); err == nil {
		t.Fatal("a marker was written though the position was not set")
	}
	delete(s.node.fail, "mariadb --batch")
	s.node.calls = nil
	res, err := s.seed()
	if err != nil || !res.Seeded {
		t.Fatalf("the second run: %+v %v", res, err)
	}
	if !slices.Contains(s.node.calls, "mariadb --batch --execute=SET GLOBAL gtid_slave_pos = '0-1-42'") {
		t.Errorf("calls %q", s.node.calls)
	}
}

// TestSeedReplicaSQL: the replica's SQL runs only once rendered, and its
// errors show MariaDB's code, not the statement (it holds the password).
func TestSeedReplicaSQL(t *testing.T) {
	s := newSeedTest(t)
	if err := os.Remove(s.sql); err != nil {
		t.Fatal(err)
	}
	if _, err := s.seed(); err != nil {
		t.Fatal(err)
	}
	for _, c := range s.node.calls {
		if strings.Contains(c, "source") {
			t.Errorf("ran %q without the file", c)
		}
	}
	s = newSeedTest(t)
	s.node.fail["mariadb --batch"] = nil
	node := &leakyNode{fakeNode: s.node}
	_, err := Seed(context.Background(), Options{Datadir: s.datadir, ReplicaSQL: s.sql, Run: node,
		Fetch: func(context.Context) (io.ReadCloser, error) { return s.body(), nil },
		Owner: func() (int, int, error) { return os.Getuid(), os.Getgid(), nil }})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "ERROR 1064 (42000) at line 2") {
		t.Errorf("error %v", err)
	}
}

// leakyNode fails the replica's SQL with an error that quotes it.
type leakyNode struct{ *fakeNode }

func (n *leakyNode) Run(ctx context.Context, argv []string, stdin io.Reader) ([]byte, error) {
	if len(argv) == 3 && strings.HasPrefix(argv[2], "--execute=source") {
		return []byte("ERROR 1064 (42000) at line 2 in file: 'x': You have an error in your SQL syntax near 'MASTER_PASSWORD = 's3cret''\n"), fmt.Errorf("exit status 1")
	}
	return n.fakeNode.Run(ctx, argv, stdin)
}

func TestParseBinlogInfo(t *testing.T) {
	for _, tt := range []struct {
		in, gtid, err string
	}{
		{"mysql-bin.000002\t1234\t0-1-42\n", "0-1-42", ""},
		{"mysql-bin.000002\t1234\t0-1-42,1-2-7\n", "0-1-42,1-2-7", ""},
		{"mysql-bin.000001\t328\t\n", "", ""},
		{"mysql-bin.000002\t1234\n", "", "no GTID"},
		{"mysql-bin.000002 1234 0-1-42\n", "", "tab-separated"},
		{"mysql-bin.000002\t1234\t0-1-42\nx\n", "", "more than one line"},
		{"mysql-bin.000002\tx\t0-1-42\n", "", "position"},
		{"../x\t1\t0-1-42\n", "", "file name"},
		{"mysql-bin.000002\t1234\t0-1-42,\n", "", "not a GTID list"},
		{"mysql-bin.000002\t1234\t0-1-42 \n", "", "not a GTID list"},
		{"mysql-bin.000002\t1234\t4294967296-1-1\n", "", "out of range"},
		{"mysql-bin.000002\t1234\t0-1-1,0-2-5\n", "", "domain 0 twice"},
		{"mysql-bin.000002\t1234\t0-1-42'\n", "", "not a GTID list"},
	} {
		got, err := ParseBinlogInfo([]byte(tt.in))
		if tt.err == "" && (err != nil || got != tt.gtid) || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("ParseBinlogInfo(%q) = %q, %v; want %q, %q", tt.in, got, err, tt.gtid, tt.err)
		}
	}
}

// FuzzParseBinlogInfo: whatever it accepts is digits, '-' and ',' only:
// safe inside the SQL string it goes into.
func FuzzParseBinlogInfo(f *testing.F) {
	for _, s := range []string{"mysql-bin.000002\t1234\t0-1-42\n", "mysql-bin.000001\t328\t\n", "f\t1\t0-1-1,2-3-4", "f\t1\t0-1-1'"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ParseBinlogInfo(b)
		if err != nil {
			return
		}
		if strings.Trim(g, "0123456789-,") != "" {
			t.Fatalf("accepted %q", g)
		}
	})
}

func TestParseSeedFile(t *testing.T) {
	good := `{"primary": {"name": "db-01", "address": "10.0.4.1", "port": 9443}}`
	f, err := ParseSeedFile("seed.json", []byte(good))
	if err != nil || f.Primary.Addr() != "10.0.4.1:9443" || f.Primary.Name != "db-01" {
		t.Fatalf("%+v %v", f, err)
	}
	if f, err := ParseSeedFile("seed.json", []byte(`{"primary": {"name": "db-01", "address": "fd00::1", "port": 9443}}`)); err != nil || f.Primary.Addr() != "[fd00::1]:9443" {
		t.Errorf("IPv6: %+v %v", f, err)
	}
	for _, tt := range []struct{ in, want string }{
		{`{"primary": {"name": "db 01", "address": "10.0.4.1", "port": 9443}}`, `field "primary.name"`},
		{`{"primary": {"name": "db-01", "address": "db-01", "port": 9443}}`, `field "primary.address"`},
		{`{"primary": {"name": "db-01", "address": "0.0.0.0", "port": 9443}}`, `field "primary.address"`},
		{`{"primary": {"name": "db-01", "address": "10.0.4.1", "port": 0}}`, `field "primary.port"`},
		{`{"primary": {"name": "db-01", "address": "10.0.4.1", "port": 9443}, "x": 1}`, `unknown field "x"`},
		{`{"primary": {"name": "db-01", "address": "10.0.4.1", "port": 9443}} {}`, `more than one`},
		{``, `EOF`},
	} {
		if _, err := ParseSeedFile("seed.json", []byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "seed.json: ") {
			t.Errorf("%s: %v, want %q", tt.in, err, tt.want)
		}
	}
}

// TestSeedOnOverlay seeds a datadir that is a folder of the image's /var
// on a node: an overlay whose lower layer has the (empty) datadir, which
// overlayfs cannot rename (EXDEV without redirect_dir), while the files
// MariaDB made in it are in the upper layer. It needs root to mount.
func TestSeedOnOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting an overlay needs root")
	}
	base := t.TempDir()
	lower, upper, work, merged := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "merged")
	for _, d := range []string{filepath.Join(lower, "mysql"), upper, work, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mount("overlay", merged, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
		t.Skipf("mounting an overlay: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(merged, 0) })
	s := newSeedTest(t)
	s.parent, s.datadir = merged, filepath.Join(merged, "mysql")
	if err := os.Rename(s.datadir, s.datadir+".x"); !errors.Is(err, syscall.EXDEV) {
		t.Fatalf("renaming the overlay's lower folder: %v, want EXDEV (the case this test is for)", err)
	}
	if err := os.WriteFile(filepath.Join(s.datadir, "ibdata1"), []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	res, err := s.seed()
	if err != nil {
		t.Fatal(err)
	}
	if got := s.ibdata(); got != "snapshot bytes" || !res.Seeded {
		t.Errorf("the datadir holds %q (%+v), not the snapshot", got, res)
	}
	if old, err := os.ReadFile(filepath.Join(res.Aside, "ibdata1")); err != nil || string(old) != "old" {
		t.Errorf("the old datadir aside: %q %v", old, err)
	}
	if left := s.leftovers(); len(left) != 1 || filepath.Join(merged, left[0]) != res.Aside {
		t.Errorf("beside the datadir: %q, want only %s", left, res.Aside)
	}
}
