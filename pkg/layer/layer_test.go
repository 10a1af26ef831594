package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// testEpoch is SOURCE_DATE_EPOCH for every test here.
var testEpoch = time.Unix(1_700_000_000, 0).UTC()

var testNorm = Normalizer{Epoch: testEpoch}

// before is a modification time before the epoch, with a fraction that
// normalization must drop.
var before = time.Unix(1_600_000_000, 700_000_000)

// after is later than the epoch, so normalization clamps it.
var after = time.Unix(1_800_000_000, 123_000_000)

// tent is one entry of a test tar.
type tent struct {
	name         string
	typ          byte
	mode         int64
	body         string
	link         string
	uid, gid     int
	uname        string
	mtime        time.Time
	major, minor int64
	pax          map[string]string
}

func dir(name string, mode int64) tent { return tent{name: name, typ: tar.TypeDir, mode: mode} }
func file(name, body string, mode int64) tent {
	return tent{name: name, typ: tar.TypeReg, mode: mode, body: body}
}
func symlink(name, target string) tent {
	return tent{name: name, typ: tar.TypeSymlink, mode: 0o777, link: target}
}
func hardlink(name, target string) tent {
	return tent{name: name, typ: tar.TypeLink, mode: 0o755, link: target}
}

// tarBytes writes ents as a tar the way mmdebstrap does: user and group
// names, times with fractions, PAX records where given.
func tarBytes(t testing.TB, ents []tent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{
			Typeflag: e.typ, Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Uname: e.uname, Gname: e.uname, Linkname: e.link, ModTime: e.mtime,
			Devmajor: e.major, Devminor: e.minor, PAXRecords: e.pax, Format: tar.FormatPAX,
		}
		if h.ModTime.IsZero() {
			h.ModTime = before
		}
		if h.Uname == "" {
			h.Uname, h.Gname = "root", "root"
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("writing test tar header %s: %v", e.name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("writing test tar %s: %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func tarFile(t testing.TB, ents []tent) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "root.tar")
	if err := os.WriteFile(p, tarBytes(t, ents), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// got is one entry read back from a tar a function here wrote.
type got struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	Uname    string
	Gname    string
	Size     int64
	Link     string
	MTime    time.Time
	Major    int64
	Minor    int64
	Body     string
	PAX      map[string]string
}

func (g got) String() string {
	return fmt.Sprintf("%s %c %o %d:%d size=%d link=%q mtime=%d dev=%d,%d body=%q pax=%v",
		g.Name, g.Type, g.Mode, g.UID, g.GID, g.Size, g.Link, g.MTime.Unix(), g.Major, g.Minor, g.Body, g.PAX)
}

func readTar(t testing.TB, data []byte) []got {
	t.Helper()
	var out []got
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading back the layer: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading back %s: %v", h.Name, err)
		}
		var pax map[string]string
		for k, v := range h.PAXRecords {
			// The tar reader reports every PAX record it parsed; the
			// ones that only encode header fields are not interesting.
			if k == "path" || k == "linkpath" || k == "mtime" || k == "atime" || k == "ctime" || k == "size" {
				continue
			}
			if pax == nil {
				pax = map[string]string{}
			}
			pax[k] = v
		}
		out = append(out, got{
			Name: h.Name, Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid,
			Uname: h.Uname, Gname: h.Gname, Size: h.Size, Link: h.Linkname,
			MTime: h.ModTime.UTC(), Major: h.Devmajor, Minor: h.Devminor, Body: string(body), PAX: pax,
		})
	}
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func compareEntries(t *testing.T, what string, gotList, want []got) {
	t.Helper()
	if reflect.DeepEqual(gotList, want) {
		return
	}
	t.Errorf("%s: entries differ", what)
	for i := 0; i < max(len(gotList), len(want)); i++ {
		var g, w string
		if i < len(gotList) {
			g = gotList[i].String()
		}
		if i < len(want) {
			w = want[i].String()
		}
		if g != w {
			t.Errorf("  [%d]\n    got  %s\n    want %s", i, g, w)
		}
	}
}

func compareIndex(t *testing.T, what string, gotIdx, want Index) {
	t.Helper()
	if reflect.DeepEqual(gotIdx, want) {
		return
	}
	for _, p := range slices.Sorted(maps.Keys(want)) {
		g, ok := gotIdx[p]
		if !ok {
			t.Errorf("%s: %s missing, want %+v", what, p, want[p])
		} else if g != want[p] {
			t.Errorf("%s: %s\n  got  %+v\n  want %+v", what, p, g, want[p])
		}
	}
	for p := range gotIdx {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected %s: %+v", what, p, gotIdx[p])
		}
	}
}

// capability is a binary security.capability xattr, as ping has.
const capability = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// rootfs is a small root filesystem as mmdebstrap writes it.
func rootfs() []tent {
	return []tent{
		dir("./", 0o755),
		dir("./bin", 0o755), // no trailing slash: must still be a directory "bin/"
		file("./bin/ping", "ping binary", 0o4755),
		dir("./dev/", 0o755),
		{name: "./dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		{name: "./dev/sda", typ: tar.TypeBlock, mode: 0o660, major: 8, minor: 0, gid: 6},
		symlink("./dev/fd", "/proc/self/fd"),
		dir("./dev/pts/", 0o755),
		dir("./etc/", 0o755),
		{name: "./etc/passwd", typ: tar.TypeReg, mode: 0o644, body: "root:x:0:0:root:/root:/bin/bash\n", mtime: after},
		{name: "./etc/shadow", typ: tar.TypeReg, mode: 0o640, body: "root:*:19000:0:99999:7:::\n", gid: 42, uname: "shadow"},
		{name: "./etc/empty", typ: tar.TypeReg, mode: 0o644},
		symlink("./etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
		{name: "./run/initctl", typ: tar.TypeFifo, mode: 0o600},
		dir("./usr/", 0o755),
		dir("./usr/bin/", 0o755),
		file("./usr/bin/perl", "#!perl", 0o755),
		hardlink("./usr/bin/perl5.36.0", "./usr/bin/perl"),
		{name: "./usr/bin/ping", typ: tar.TypeReg, mode: 0o755, body: "ping", pax: map[string]string{
			"SCHILY.xattr.security.capability": capability,
			"SCHILY.xattr.user.note":           "hello=world",
			"comment":                          "not an xattr",
		}},
		{name: "./var/", typ: tar.TypeDir, mode: 0o755, mtime: time.Unix(0, 0)},
		dir("./var/lib/", 0o755),
		dir("./var/lib/dpkg/", 0o755),
		{name: "./var/lib/dpkg/status", typ: tar.TypeReg, mode: 0o644, body: "Package: base-files\nStatus: install ok installed\n", mtime: after.Add(time.Hour)},
		{name: "./tmp/", typ: tar.TypeDir, mode: 0o1777 | int64(0o40000)}, // c_ISDIR bits beyond 07777
	}
}

func TestClean(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"./", "."},
		{".", "."},
		{"", "."},
		{"/", "."},
		{"./etc/", "etc"},
		{"etc/passwd", "etc/passwd"},
		{"./etc//passwd", "etc/passwd"},
		{"/usr/bin/", "usr/bin"},
		{"../../etc/passwd", "etc/passwd"},
		{"./a/../b", "b"},
	} {
		if got := Clean(tc.in); got != tc.want {
			t.Errorf("Clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDropDeviceNodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  byte
		want bool
	}{
		{"dev", tar.TypeDir, true}, // the mount point itself stays
		{"dev/null", tar.TypeChar, false},
		{"dev/pts", tar.TypeDir, false},
		{"dev/fd", tar.TypeSymlink, false},
		{"dev/shm/file", tar.TypeReg, false},
		{"devices", tar.TypeReg, true},
		{"usr/share/dev/x", tar.TypeReg, true},
		{"run/initctl", tar.TypeFifo, false},
		{"lib/blk", tar.TypeBlock, false},
		{"lib/chr", tar.TypeChar, false},
		{"etc/passwd", tar.TypeReg, true},
		{"bin", tar.TypeSymlink, true},
		{"usr/bin/perl5", tar.TypeLink, true},
	} {
		if got := DropDeviceNodes(tc.name, &tar.Header{Typeflag: tc.typ}); got != tc.want {
			t.Errorf("DropDeviceNodes(%q, %c) = %v, want %v", tc.name, tc.typ, got, tc.want)
		}
	}
}

func TestNormalizerTimes(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   time.Time
		want time.Time
	}{
		{"after the epoch is clamped", after, testEpoch},
		{"the epoch itself", testEpoch, testEpoch},
		{"before keeps its second", before, time.Unix(before.Unix(), 0).UTC()},
		{"Unix zero is a real time", time.Unix(0, 0), time.Unix(0, 0).UTC()},
		{"no time becomes the epoch", time.Time{}, testEpoch},
		{"one nanosecond after", testEpoch.Add(1), testEpoch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := testNorm.header("f", &tar.Header{Typeflag: tar.TypeReg, ModTime: tc.in})
			if !h.ModTime.Equal(tc.want) || h.ModTime.Location() != time.UTC {
				t.Errorf("ModTime = %v, want %v (UTC)", h.ModTime, tc.want)
			}
		})
	}
}

// TestNormalizerRootOwned: the paths RootOwned names become root's, the
// others keep their owners.
func TestNormalizerRootOwned(t *testing.T) {
	n := Normalizer{Epoch: testEpoch, RootOwned: []string{"var/lib/apt/lists/partial"}}
	for _, tc := range []struct {
		name     string
		uid, gid int
		want     [2]int
	}{
		{"var/lib/apt/lists/partial", 42, 0, [2]int{0, 0}},
		{"var/lib/apt/lists/partial", 0, 0, [2]int{0, 0}},
		{"var/lib/apt/lists/partial", 1001, 1001, [2]int{0, 0}},
		{"var/lib/apt/lists/partial/x", 42, 42, [2]int{42, 42}},
		{"var/lib/apt/lists", 42, 7, [2]int{42, 7}},
	} {
		h := n.header(tc.name, &tar.Header{Typeflag: tar.TypeDir, Uid: tc.uid, Gid: tc.gid, Mode: 0o700})
		if got := [2]int{h.Uid, h.Gid}; got != tc.want {
			t.Errorf("%s owned by %d:%d: %d:%d, want %d:%d", tc.name, tc.uid, tc.gid, got[0], got[1], tc.want[0], tc.want[1])
		}
	}
}

func TestNormalize(t *testing.T) {
	in := tarBytes(t, rootfs())
	var out bytes.Buffer
	res, err := Normalize(context.Background(), &out, bytes.NewReader(in), testNorm, DropDeviceNodes, []string{"etc/passwd", "var/lib/dpkg/status", "etc/missing", "usr/bin"})
	if err != nil {
		t.Fatal(err)
	}
	bt := time.Unix(before.Unix(), 0).UTC()
	e := testEpoch
	want := []got{
		{Name: "bin/", Type: tar.TypeDir, Mode: 0o755, MTime: bt},
		{Name: "bin/ping", Type: tar.TypeReg, Mode: 0o4755, Size: 11, MTime: bt, Body: "ping binary"},
		{Name: "dev/", Type: tar.TypeDir, Mode: 0o755, MTime: bt},
		{Name: "etc/", Type: tar.TypeDir, Mode: 0o755, MTime: bt},
		{Name: "etc/passwd", Type: tar.TypeReg, Mode: 0o644, Size: 32, MTime: e, Body: "root:x:0:0:root:/root:/bin/bash\n"},
		{Name: "etc/shadow", Type: tar.TypeReg, Mode: 0o640, GID: 42, Size: 26, MTime: bt, Body: "root:*:19000:0:99999:7:::\n"},
		{Name: "etc/empty", Type: tar.TypeReg, Mode: 0o644, MTime: bt},
		{Name: "etc/localtime", Type: tar.TypeSymlink, Mode: 0o777, Link: "/usr/share/zoneinfo/Etc/UTC", MTime: bt},
		{Name: "usr/", Type: tar.TypeDir, Mode: 0o755, MTime: bt},
		{Name: "usr/bin/", Type: tar.TypeDir, Mode: 0o755, MTime: bt},
		{Name: "usr/bin/perl", Type: tar.TypeReg, Mode: 0o755, Size: 6, MTime: bt, Body: "#!perl"},
		{Name: "usr/bin/perl5.36.0", Type: tar.TypeLink, Mode: 0o755, Link: "usr/bin/perl", MTime: bt},
		{Name: "usr/bin/ping", Type: tar.TypeReg, Mode: 0o755, Size: 4, MTime: bt, Body: "ping", PAX: map[string]string{
			"SCHILY.xattr.security.capability": capability,
			"SCHILY.xattr.user.note":           "hello=world",
		}},
		{Name: "var/", Type: tar.TypeDir, Mode: 0o755, MTime: time.Unix(0, 0).UTC()},
		{Name: "var/lib/", Type: tar.TypeDir, Mode: 0o755, MTime: bt},
		{Name: "var/lib/dpkg/", Type: tar.TypeDir, Mode: 0o755, MTime: bt},
		{Name: "var/lib/dpkg/status", Type: tar.TypeReg, Mode: 0o644, Size: 49, MTime: e, Body: "Package: base-files\nStatus: install ok installed\n"},
		{Name: "tmp/", Type: tar.TypeDir, Mode: 0o1777, MTime: bt},
	}
	entries := readTar(t, out.Bytes())
	compareEntries(t, "normalized tar", entries, want)

	wantIdx := Index{}
	for _, w := range want {
		d := ""
		if w.Type == tar.TypeReg {
			d = sum(w.Body)
		}
		x := ""
		if w.PAX != nil {
			x = fmt.Sprintf("SCHILY.xattr.security.capability=%x;SCHILY.xattr.user.note=%x;", capability, "hello=world")
		}
		wantIdx[Clean(w.Name)] = Entry{Type: w.Type, Mode: w.Mode, UID: w.UID, GID: w.GID, Size: w.Size, Linkname: w.Link, ModTime: w.MTime.Unix(), Digest: d, Xattrs: x}
	}
	compareIndex(t, "index", res.Index, wantIdx)
	if res.Entries != len(want) {
		t.Errorf("Entries = %d, want %d", res.Entries, len(want))
	}
	// The sha256 in the index is that of the content.
	if d, w := res.Index["etc/passwd"].Digest, sum("root:x:0:0:root:/root:/bin/bash\n"); d != w {
		t.Errorf("etc/passwd digest %s, want %s", d, w)
	}
	if d := res.Index["etc/empty"].Digest; d != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("empty file digest %s", d)
	}

	// No user or group names, PAX format throughout.
	tr := tar.NewReader(bytes.NewReader(out.Bytes()))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s has owner names %q:%q", h.Name, h.Uname, h.Gname)
		}
		if strings.HasPrefix(h.Name, "./") || strings.HasPrefix(h.Name, "/") {
			t.Errorf("%s is not a clean name", h.Name)
		}
	}

	wantFiles := map[string][]byte{
		"etc/passwd":          []byte("root:x:0:0:root:/root:/bin/bash\n"),
		"var/lib/dpkg/status": []byte("Package: base-files\nStatus: install ok installed\n"),
	}
	if !reflect.DeepEqual(res.Files, wantFiles) {
		t.Errorf("Files = %q, want %q", res.Files, wantFiles)
	}

	// Deterministic: the same input gives the same bytes.
	var again bytes.Buffer
	if _, err := Normalize(context.Background(), &again, bytes.NewReader(in), testNorm, DropDeviceNodes, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Error("two runs of Normalize on the same tar differ")
	}
	// Normalizing normalized output changes nothing.
	var twice bytes.Buffer
	if _, err := Normalize(context.Background(), &twice, bytes.NewReader(out.Bytes()), testNorm, DropDeviceNodes, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), twice.Bytes()) {
		t.Error("Normalize is not idempotent")
	}
}

// TestNormalizeCanonical checks that what normalization erases (owner
// names, times after the epoch, fractions of seconds, non-xattr PAX
// records, "./" prefixes, file type bits) makes no difference to the bytes.
func TestNormalizeCanonical(t *testing.T) {
	base := []tent{
		dir("./etc/", 0o755),
		{name: "./etc/a", typ: tar.TypeReg, mode: 0o644, body: "a", mtime: testEpoch},
		{name: "./etc/b", typ: tar.TypeReg, mode: 0o600, body: "b", mtime: time.Unix(1000, 0), pax: map[string]string{"SCHILY.xattr.user.x": "1"}},
	}
	for _, tc := range []struct {
		name   string
		modify func(e []tent)
		same   bool
	}{
		{"identical", func(e []tent) {}, true},
		{"owner names", func(e []tent) { e[1].uname = "daemon" }, true},
		{"later mtime", func(e []tent) { e[1].mtime = after }, true},
		{"fraction of a second", func(e []tent) { e[2].mtime = time.Unix(1000, 999_999_999) }, true},
		{"comment record", func(e []tent) { e[2].pax["comment"] = "x" }, true},
		{"no ./ prefix", func(e []tent) { e[0].name, e[1].name = "etc", "/etc/a" }, true},
		{"file type bits", func(e []tent) { e[1].mode |= 0o100000 }, true},
		{"earlier mtime", func(e []tent) { e[1].mtime = time.Unix(999, 0) }, false},
		{"content", func(e []tent) { e[1].body = "A" }, false},
		{"mode", func(e []tent) { e[1].mode = 0o640 }, false},
		{"uid", func(e []tent) { e[1].uid = 1 }, false},
		{"xattr value", func(e []tent) { e[2].pax["SCHILY.xattr.user.x"] = "2" }, false},
		{"xattr dropped", func(e []tent) { e[2].pax = nil }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mod := slices.Clone(base)
			mod[2].pax = maps.Clone(base[2].pax)
			tc.modify(mod)
			var a, b bytes.Buffer
			ra, err := Normalize(context.Background(), &a, bytes.NewReader(tarBytes(t, base)), testNorm, DropDeviceNodes, nil)
			if err != nil {
				t.Fatal(err)
			}
			rb, err := Normalize(context.Background(), &b, bytes.NewReader(tarBytes(t, mod)), testNorm, DropDeviceNodes, nil)
			if err != nil {
				t.Fatal(err)
			}
			if same := bytes.Equal(a.Bytes(), b.Bytes()); same != tc.same {
				t.Errorf("same bytes = %v, want %v", same, tc.same)
			}
			if same := reflect.DeepEqual(ra.Index, rb.Index); same != tc.same {
				t.Errorf("same index = %v, want %v", same, tc.same)
			}
		})
	}
}

func TestNormalizeErrors(t *testing.T) {
	valid := tarBytes(t, []tent{file("./a", strings.Repeat("x", 2000), 0o644)})
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"truncated content", valid[:2500]},
		{"truncated header", valid[:100]},
		{"garbage", bytes.Repeat([]byte{0xff}, 1024)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Normalize(context.Background(), io.Discard, bytes.NewReader(tc.in), testNorm, nil, nil); err == nil {
				t.Error("Normalize succeeded")
			}
		})
	}
	// A writer that fails is reported.
	if _, err := Normalize(context.Background(), failWriter{}, bytes.NewReader(valid), testNorm, nil, nil); err == nil {
		t.Error("Normalize to a failing writer succeeded")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// fsState is a root filesystem as a map from clean path to entry; a hard
// link carries its target's content so that content can be compared.
type fsState map[string]got

func stateOf(t *testing.T, normalized []byte) fsState {
	t.Helper()
	s := fsState{}
	for _, e := range readTar(t, normalized) {
		p := Clean(e.Name)
		e.Name = p
		if e.Type == tar.TypeLink {
			e.Body = s[e.Link].Body
		}
		s[p] = e
	}
	return s
}

func removeTree(s fsState, p string) {
	for k := range s {
		if k == p || strings.HasPrefix(k, p+"/") {
			delete(s, k)
		}
	}
}

// apply applies an OCI layer to s the way a container runtime does:
// whiteouts delete the path and everything under it; an entry replaces
// what was there (a non-directory replacing a directory removes its
// children); a hard link must point at an entry of the same layer.
func apply(t *testing.T, lower fsState, layerTar []byte) fsState {
	t.Helper()
	s := maps.Clone(lower)
	inLayer := map[string]bool{}
	for _, e := range readTar(t, layerTar) {
		p := Clean(e.Name)
		e.Name = p
		dir, base := path.Split(p)
		if strings.HasPrefix(base, WhiteoutPrefix) {
			victim := path.Join(dir, strings.TrimPrefix(base, WhiteoutPrefix))
			if _, ok := s[victim]; !ok {
				t.Errorf("whiteout %s for %s, which the lower does not have", p, victim)
			}
			if inLayer[victim] {
				t.Errorf("whiteout %s after %s in the same layer", p, victim)
			}
			removeTree(s, victim)
			continue
		}
		if parent := path.Dir(p); parent != "." {
			if pe, ok := s[parent]; !ok || pe.Type != tar.TypeDir {
				t.Errorf("%s: parent %s is not a directory (%v)", p, parent, ok)
			}
		}
		if old, ok := s[p]; ok && old.Type == tar.TypeDir && e.Type != tar.TypeDir {
			removeTree(s, p)
		}
		if e.Type == tar.TypeLink {
			if !inLayer[e.Link] {
				t.Errorf("hard link %s -> %s: the target is not in the layer", p, e.Link)
			}
			e.Body = s[e.Link].Body
		}
		s[p] = e
		inLayer[p] = true
	}
	return s
}

func compareStates(t *testing.T, gotS, want fsState) {
	t.Helper()
	for _, p := range slices.Sorted(maps.Keys(want)) {
		g, ok := gotS[p]
		if !ok {
			t.Errorf("applied: %s missing", p)
		} else if !reflect.DeepEqual(g, want[p]) {
			t.Errorf("applied: %s\n  got  %s\n  want %s", p, g, want[p])
		}
	}
	for p := range gotS {
		if _, ok := want[p]; !ok {
			t.Errorf("applied: unexpected %s", p)
		}
	}
}

func normalizeTents(t *testing.T, ents []tent) ([]byte, *Result) {
	t.Helper()
	var buf bytes.Buffer
	res, err := Normalize(context.Background(), &buf, bytes.NewReader(tarBytes(t, ents)), testNorm, DropDeviceNodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), res
}

func TestDiff(t *testing.T) {
	type tc struct {
		name         string
		lower, upper []tent
		want         []string // names in the layer, in order
	}
	common := []tent{dir("./", 0o755), dir("./etc/", 0o755), file("./etc/os-release", "debian", 0o644)}
	with := func(ents ...tent) []tent { return append(slices.Clone(common), ents...) }
	cases := []tc{
		{
			name: "every kind of change",
			lower: []tent{
				dir("./", 0o755),
				dir("./dev/", 0o755),
				{name: "./dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
				dir("./etc/", 0o755),
				file("./etc/changed", "old", 0o644),
				file("./etc/removed", "bye", 0o644),
				file("./etc/same", "same", 0o644),
				file("./etc/modechg", "m", 0o644),
				symlink("./etc/link", "target1"),
				dir("./opt/", 0o755),
				dir("./opt/app/", 0o755),
				file("./opt/app/a", "a", 0o644),
				dir("./opt/app/sub/", 0o755),
				file("./opt/app/sub/b", "b", 0o644),
				symlink("./opt/app/sub/c", "b"),
				dir("./opt.d/", 0o755), // sorts between opt and opt/app
				file("./opt.d/x", "x", 0o644),
				dir("./optional/", 0o755),
				dir("./usr/", 0o755),
				dir("./usr/bin/", 0o755),
				file("./usr/bin/tool", "tool", 0o755),
				file("./usr/bin/dep", "dep v1", 0o755),
				hardlink("./usr/bin/dep-link", "./usr/bin/dep"),
			},
			upper: []tent{
				dir("./", 0o755),
				dir("./dev/", 0o755),
				{name: "./dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
				{name: "./dev/zero", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 5},
				dir("./etc/", 0o755),
				file("./etc/changed", "new", 0o644),
				file("./etc/added", "hello", 0o644),
				file("./etc/same", "same", 0o644),
				file("./etc/modechg", "m", 0o600),
				symlink("./etc/link", "target2"),
				dir("./optional/", 0o755),
				dir("./usr/", 0o755),
				dir("./usr/bin/", 0o755),
				{name: "./usr/bin/tool", typ: tar.TypeReg, mode: 0o755, body: "tool", mtime: before.Add(time.Millisecond)},
				hardlink("./usr/bin/tool-alias", "./usr/bin/tool"),
				file("./usr/bin/dep", "dep v2", 0o755),
				hardlink("./usr/bin/dep-link", "./usr/bin/dep"),
			},
			want: []string{
				"etc/.wh.removed", ".wh.opt", ".wh.opt.d",
				"etc/changed", "etc/added", "etc/modechg", "etc/link",
				"usr/bin/tool", "usr/bin/tool-alias", "usr/bin/dep", "usr/bin/dep-link",
			},
		},
		{
			name:  "identical trees give an empty layer",
			lower: with(file("./etc/x", "x", 0o644), hardlink("./etc/y", "./etc/x")),
			upper: with(file("./etc/x", "x", 0o644), hardlink("./etc/y", "./etc/x")),
		},
		{
			name:  "new hard link to an unchanged target carries both",
			lower: with(file("./etc/x", "x", 0o644)),
			upper: with(file("./etc/x", "x", 0o644), hardlink("./etc/y", "./etc/x")),
			want:  []string{"etc/x", "etc/y"},
		},
		{
			name:  "unchanged hard link to a changed target is carried",
			lower: with(file("./etc/x", "x", 0o644), hardlink("./etc/y", "./etc/x"), file("./etc/z", "z", 0o644)),
			upper: with(file("./etc/x", "X", 0o644), hardlink("./etc/y", "./etc/x"), file("./etc/z", "z", 0o644)),
			want:  []string{"etc/x", "etc/y"},
		},
		{
			name:  "retargeted hard link",
			lower: with(file("./etc/x", "x", 0o644), file("./etc/w", "w", 0o644), hardlink("./etc/y", "./etc/x")),
			upper: with(file("./etc/x", "x", 0o644), file("./etc/w", "w", 0o644), hardlink("./etc/y", "./etc/w")),
			want:  []string{"etc/w", "etc/y"},
		},
		{
			name:  "second link to a target another new link carries",
			lower: with(file("./etc/x", "x", 0o644), hardlink("./etc/y", "./etc/x")),
			upper: with(file("./etc/x", "x", 0o644), hardlink("./etc/y", "./etc/x"), hardlink("./etc/z", "./etc/x")),
			want:  []string{"etc/x", "etc/y", "etc/z"},
		},
		{
			name:  "removed directory tree: one whiteout",
			lower: with(dir("./srv/", 0o755), dir("./srv/a/", 0o755), file("./srv/a/b", "b", 0o644), file("./srv/c", "c", 0o644), file("./srv-file", "s", 0o644)),
			upper: with(file("./srv-file", "s", 0o644)),
			want:  []string{".wh.srv"},
		},
		{
			name:  "emptied directory: one whiteout per child",
			lower: with(dir("./srv/", 0o755), dir("./srv/a/", 0o755), file("./srv/a/b", "b", 0o644), file("./srv/c", "c", 0o644)),
			upper: with(dir("./srv/", 0o755)),
			want:  []string{"srv/.wh.a", "srv/.wh.c"},
		},
		{
			name:  "directory replaced by a file",
			lower: with(dir("./srv/", 0o755), file("./srv/c", "c", 0o644)),
			upper: with(file("./srv", "now a file", 0o644)),
			want:  []string{"srv/.wh.c", "srv"},
		},
		{
			name:  "file replaced by a directory",
			lower: with(file("./srv", "a file", 0o644)),
			upper: with(dir("./srv/", 0o755), file("./srv/c", "c", 0o644)),
			want:  []string{"srv/", "srv/c"},
		},
		{
			name:  "symlink replaced by a file",
			lower: with(symlink("./etc/l", "os-release")),
			upper: with(file("./etc/l", "os-release", 0o777)),
			want:  []string{"etc/l"},
		},
		{
			name:  "owner change",
			lower: with(file("./etc/x", "x", 0o644)),
			upper: with(tent{name: "./etc/x", typ: tar.TypeReg, mode: 0o644, body: "x", uid: 100, gid: 101}),
			want:  []string{"etc/x"},
		},
		{
			name:  "xattr change",
			lower: with(tent{name: "./etc/x", typ: tar.TypeReg, mode: 0o644, body: "x", pax: map[string]string{"SCHILY.xattr.user.a": "1"}}),
			upper: with(tent{name: "./etc/x", typ: tar.TypeReg, mode: 0o644, body: "x", pax: map[string]string{"SCHILY.xattr.user.a": "2"}}),
			want:  []string{"etc/x"},
		},
		{
			name:  "mtime before the epoch changes",
			lower: with(file("./etc/x", "x", 0o644)),
			upper: with(tent{name: "./etc/x", typ: tar.TypeReg, mode: 0o644, body: "x", mtime: before.Add(time.Second)}),
			want:  []string{"etc/x"},
		},
		{
			name:  "mtimes after the epoch are the same time",
			lower: with(tent{name: "./etc/x", typ: tar.TypeReg, mode: 0o644, body: "x", mtime: after}),
			upper: with(tent{name: "./etc/x", typ: tar.TypeReg, mode: 0o644, body: "x", mtime: after.Add(time.Hour)}),
		},
		{
			name:  "device nodes are never carried",
			lower: with(dir("./dev/", 0o755)),
			upper: with(dir("./dev/", 0o755), tent{name: "./dev/tty", typ: tar.TypeChar, mode: 0o666, major: 5}, tent{name: "./run/fifo", typ: tar.TypeFifo, mode: 0o600}),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lowerTar, lowerRes := normalizeTents(t, tc.lower)
			upperTar, upperRes := normalizeTents(t, tc.upper)
			upperPath := tarFile(t, tc.upper)

			var out bytes.Buffer
			res, err := Diff(context.Background(), &out, lowerRes.Index, upperPath, testNorm, DropDeviceNodes, []string{"etc/changed", "etc/same", "etc/nothing"})
			if err != nil {
				t.Fatal(err)
			}
			entries := readTar(t, out.Bytes())
			var names []string
			for _, e := range entries {
				names = append(names, e.Name)
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("layer entries\n  got  %q\n  want %q", names, tc.want)
			}
			if res.Entries != len(entries) {
				t.Errorf("Entries = %d, but the layer has %d", res.Entries, len(entries))
			}

			// Carried entries are exactly the normalized upper entries;
			// whiteouts are empty files at the epoch.
			upperByName := map[string]got{}
			for _, e := range readTar(t, upperTar) {
				upperByName[e.Name] = e
			}
			for _, e := range entries {
				if strings.HasPrefix(path.Base(e.Name), WhiteoutPrefix) {
					want := got{Name: e.Name, Type: tar.TypeReg, Mode: 0o644, MTime: testEpoch}
					if !reflect.DeepEqual(e, want) {
						t.Errorf("whiteout\n  got  %s\n  want %s", e, want)
					}
					continue
				}
				if w, ok := upperByName[e.Name]; !ok {
					t.Errorf("layer has %s, which upper does not", e.Name)
				} else if !reflect.DeepEqual(e, w) {
					t.Errorf("carried entry differs from upper\n  got  %s\n  want %s", e, w)
				}
			}

			// The result indexes the whole upper.
			compareIndex(t, "Diff index", res.Index, upperRes.Index)

			// Lower plus the layer is upper.
			compareStates(t, apply(t, stateOf(t, lowerTar), out.Bytes()), stateOf(t, upperTar))

			// Deterministic.
			var again bytes.Buffer
			if _, err := Diff(context.Background(), &again, lowerRes.Index, upperPath, testNorm, DropDeviceNodes, nil); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), again.Bytes()) {
				t.Error("two runs of Diff differ")
			}

			// The result can be the lower of a further Diff: nothing changed.
			var none bytes.Buffer
			r2, err := Diff(context.Background(), &none, res.Index, upperPath, testNorm, DropDeviceNodes, nil)
			if err != nil {
				t.Fatal(err)
			}
			if r2.Entries != 0 || len(readTar(t, none.Bytes())) != 0 {
				t.Errorf("diff of upper against its own index has %d entries", r2.Entries)
			}
		})
	}
}

func TestDiffKeep(t *testing.T) {
	lower := []tent{dir("./etc/", 0o755), file("./etc/passwd", "root", 0o644), file("./etc/group", "root", 0o644)}
	upper := []tent{dir("./etc/", 0o755), file("./etc/passwd", "root\nhaproxy", 0o644), file("./etc/group", "root", 0o644), dir("./var/", 0o755), {name: "./var/status", typ: tar.TypeReg, mode: 0o644, body: strings.Repeat("Package: x\n", 1000)},
		dir("./doc/", 0o755), dir("./doc/a/", 0o755), file("./doc/a/copyright", "License: MIT", 0o644), dir("./doc/b/", 0o755), file("./doc/b/changelog", "x", 0o644),
		symlink("./doc/c", "a"), dir("./doc/d/", 0o755), dir("./doc/d/e/", 0o755), file("./doc/d/e/copyright", "deeper", 0o644)}
	_, lr := normalizeTents(t, lower)
	// A pattern matches within one path element, as path.Match does;
	// a malformed one matches nothing.
	res, err := Diff(context.Background(), io.Discard, lr.Index, tarFile(t, upper), testNorm, DropDeviceNodes, []string{"etc/passwd", "etc/group", "var/status", "etc/shadow", "etc", "doc/*/copyright", "doc/[/copyright"})
	if err != nil {
		t.Fatal(err)
	}
	// Kept files are returned whether or not the layer carries them.
	want := map[string][]byte{
		"etc/passwd":      []byte("root\nhaproxy"),
		"etc/group":       []byte("root"),
		"var/status":      []byte(strings.Repeat("Package: x\n", 1000)),
		"doc/a/copyright": []byte("License: MIT"),
	}
	if !reflect.DeepEqual(res.Files, want) {
		t.Errorf("Files = %q, want %q", res.Files, want)
	}
}

func TestDiffErrors(t *testing.T) {
	valid := tarBytes(t, []tent{file("./a", strings.Repeat("x", 2000), 0o644)})
	for _, tc := range []struct {
		name string
		data []byte // nil: no file at all
	}{
		{"missing upper", nil},
		{"truncated upper", valid[:2500]},
		{"garbage upper", bytes.Repeat([]byte{0xff}, 1024)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "upper.tar")
			if tc.data != nil {
				if err := os.WriteFile(p, tc.data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := Diff(context.Background(), io.Discard, Index{}, p, testNorm, DropDeviceNodes, nil); err == nil {
				t.Error("Diff succeeded")
			}
		})
	}
}

func TestWriteFiles(t *testing.T) {
	lower := Index{
		"etc":          {Type: tar.TypeDir, Mode: 0o755},
		"etc/hostname": {Type: tar.TypeReg, Mode: 0o644},
		"usr":          {Type: tar.TypeDir, Mode: 0o755},
		"bin":          {Type: tar.TypeSymlink, Mode: 0o777, Linkname: "usr/bin"},
	}
	e := testEpoch
	role := File{Path: "etc/imgforge/role.json", Type: tar.TypeReg, Mode: 0o644, Data: []byte(`{"role":"web"}` + "\n")}
	for _, tc := range []struct {
		name    string
		lower   Index
		files   []File
		want    []got
		wantErr string
	}{
		{
			name:  "adds every missing parent",
			lower: Index{},
			files: []File{{Path: "/etc/imgforge/role.json", Type: tar.TypeReg, Mode: 0o644, UID: 3, GID: 4, Data: []byte("{}")}},
			want: []got{
				{Name: "etc/", Type: tar.TypeDir, Mode: 0o755, MTime: e},
				{Name: "etc/imgforge/", Type: tar.TypeDir, Mode: 0o755, MTime: e},
				{Name: "etc/imgforge/role.json", Type: tar.TypeReg, Mode: 0o644, UID: 3, GID: 4, Size: 2, MTime: e, Body: "{}"},
			},
		},
		{
			name:  "leaves parents the lower has",
			lower: lower,
			files: []File{role, {Path: "usr/local/bin/agent", Type: tar.TypeSymlink, Mode: 0o777, Linkname: "/opt/agent"}},
			want: []got{
				{Name: "etc/imgforge/", Type: tar.TypeDir, Mode: 0o755, MTime: e},
				{Name: "etc/imgforge/role.json", Type: tar.TypeReg, Mode: 0o644, Size: 15, MTime: e, Body: `{"role":"web"}` + "\n"},
				{Name: "usr/local/", Type: tar.TypeDir, Mode: 0o755, MTime: e},
				{Name: "usr/local/bin/", Type: tar.TypeDir, Mode: 0o755, MTime: e},
				{Name: "usr/local/bin/agent", Type: tar.TypeSymlink, Mode: 0o777, Link: "/opt/agent", MTime: e},
			},
		},
		{
			name:  "a given directory is not replaced by a default one",
			lower: lower,
			files: []File{role, {Path: "etc/imgforge/", Type: tar.TypeDir, Mode: 0o700, UID: 7}},
			want: []got{
				{Name: "etc/imgforge/", Type: tar.TypeDir, Mode: 0o700, UID: 7, MTime: e},
				{Name: "etc/imgforge/role.json", Type: tar.TypeReg, Mode: 0o644, Size: 15, MTime: e, Body: `{"role":"web"}` + "\n"},
			},
		},
		{
			name:  "replacing a file of the lower",
			lower: lower,
			files: []File{{Path: "etc/hostname", Type: tar.TypeReg, Mode: 0o644, Data: []byte("web1\n")}},
			want:  []got{{Name: "etc/hostname", Type: tar.TypeReg, Mode: 0o644, Size: 5, MTime: e, Body: "web1\n"}},
		},
		{
			name:  "mode bits beyond permissions are dropped",
			lower: lower,
			files: []File{{Path: "etc/x", Type: tar.TypeReg, Mode: 0o100755}},
			want:  []got{{Name: "etc/x", Type: tar.TypeReg, Mode: 0o755, MTime: e}},
		},
		{name: "parent is a symlink in the lower", lower: lower, files: []File{{Path: "bin/agent", Type: tar.TypeReg, Mode: 0o755}}, wantErr: "/bin is not a directory"},
		{name: "parent is a file in the lower", lower: lower, files: []File{{Path: "etc/hostname/x", Type: tar.TypeReg}}, wantErr: "/etc/hostname is not a directory"},
		{name: "parent is a file of the layer", lower: lower, files: []File{{Path: "etc/app", Type: tar.TypeReg}, {Path: "etc/app/conf", Type: tar.TypeReg}}, wantErr: "etc/app is not a directory"},
		{name: "parent is a symlink of the layer", lower: Index{}, files: []File{{Path: "opt/app", Type: tar.TypeReg}, {Path: "opt", Type: tar.TypeSymlink, Linkname: "srv"}}, wantErr: "opt is not a directory"},
		{name: "duplicate path", lower: lower, files: []File{role, {Path: "./etc/imgforge/role.json", Type: tar.TypeReg}}, wantErr: "given twice"},
		{name: "duplicate spelled differently", lower: lower, files: []File{{Path: "/etc/x", Type: tar.TypeReg}, {Path: "etc//x/", Type: tar.TypeDir}}, wantErr: "given twice"},
		{name: "empty path", lower: lower, files: []File{{Path: "", Type: tar.TypeReg}}, wantErr: "empty path"},
		{name: "root path", lower: lower, files: []File{{Path: "/", Type: tar.TypeDir}}, wantErr: "empty path"},
		{name: "hard links are not supported", lower: lower, files: []File{{Path: "etc/x", Type: tar.TypeLink, Linkname: "etc/hostname"}}, wantErr: "unsupported type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := WriteFiles(&out, tc.files, tc.lower, testNorm)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			entries := readTar(t, out.Bytes())
			compareEntries(t, "layer", entries, tc.want)
			if res.Entries != len(tc.want) {
				t.Errorf("Entries = %d, want %d", res.Entries, len(tc.want))
			}
			wantIdx := Index{}
			for _, w := range tc.want {
				d := ""
				if w.Type == tar.TypeReg {
					d = sum(w.Body)
				}
				wantIdx[Clean(w.Name)] = Entry{Type: w.Type, Mode: w.Mode, UID: w.UID, GID: w.GID, Size: w.Size, Linkname: w.Link, ModTime: e.Unix(), Digest: d}
			}
			compareIndex(t, "index", res.Index, wantIdx)

			// The order of files does not matter, and two runs agree.
			rev := slices.Clone(tc.files)
			slices.Reverse(rev)
			for i := 0; i < 3; i++ {
				var again bytes.Buffer
				if _, err := WriteFiles(&again, rev, tc.lower, testNorm); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), again.Bytes()) {
					t.Fatal("WriteFiles output depends on the run or the order of files")
				}
			}
		})
	}
}

// TestWriteFilesApply checks that a WriteFiles layer applies cleanly on
// top of the lower it was made for.
func TestWriteFilesApply(t *testing.T) {
	lowerTar, lowerRes := normalizeTents(t, []tent{dir("./etc/", 0o755), file("./etc/hostname", "x", 0o644), dir("./usr/", 0o755)})
	files := []File{
		{Path: "etc/hostname", Type: tar.TypeReg, Mode: 0o644, Data: []byte("web1\n")},
		{Path: "etc/imgforge/role.json", Type: tar.TypeReg, Mode: 0o644, Data: []byte("{}")},
		{Path: "usr/local/lib/systemd/system/x.service", Type: tar.TypeReg, Mode: 0o644, Data: []byte("[Unit]\n")},
		{Path: "etc/systemd/system/multi-user.target.wants/x.service", Type: tar.TypeSymlink, Mode: 0o777, Linkname: "/usr/local/lib/systemd/system/x.service"},
	}
	var out bytes.Buffer
	res, err := WriteFiles(&out, files, lowerRes.Index, testNorm)
	if err != nil {
		t.Fatal(err)
	}
	s := apply(t, stateOf(t, lowerTar), out.Bytes())
	for _, f := range files {
		e, ok := s[f.Path]
		if !ok || e.Type != f.Type || e.Body != string(f.Data) || e.Link != f.Linkname {
			t.Errorf("%s after applying: %v (%v)", f.Path, e, ok)
		}
		if res.Index[f.Path].Type != f.Type {
			t.Errorf("index of %s: %+v", f.Path, res.Index[f.Path])
		}
	}
	// The lower's 3 entries, 4 files and 7 directories they need.
	if len(s) != 3+4+7 {
		t.Errorf("applied tree has %d entries: %v", len(s), slices.Sorted(maps.Keys(s)))
	}
}

func FuzzNormalize(f *testing.F) {
	f.Add(tarBytes(f, rootfs()))
	f.Add(tarBytes(f, []tent{dir("./", 0o755), file("./a", "a", 0o644), hardlink("./b", "./a"), symlink("./c", "../../x")}))
	f.Add([]byte{})
	f.Add(make([]byte, 1024))
	keep := []string{"etc/passwd", "a"}
	f.Fuzz(func(t *testing.T, data []byte) {
		// A few bytes of PAX sparse-file header can declare a file of
		// any size, all holes, which Normalize rightly expands; cap the
		// output so such inputs end in an error instead of filling
		// memory.
		var out bytes.Buffer
		res, err := Normalize(context.Background(), &limitWriter{w: &out, n: 1 << 20}, bytes.NewReader(data), testNorm, DropDeviceNodes, keep)
		if err != nil {
			return
		}
		if res.Entries != len(readTar(t, out.Bytes())) {
			t.Fatalf("Entries = %d, but the output has a different number", res.Entries)
		}
		// The output is normalized: doing it again changes nothing.
		var again bytes.Buffer
		res2, err := Normalize(context.Background(), &again, bytes.NewReader(out.Bytes()), testNorm, DropDeviceNodes, keep)
		if err != nil {
			t.Fatalf("normalizing normalized output: %v", err)
		}
		if !bytes.Equal(out.Bytes(), again.Bytes()) {
			t.Fatal("Normalize is not idempotent")
		}
		if !reflect.DeepEqual(res.Index, res2.Index) {
			t.Fatal("index of normalized output differs")
		}
	})
}

// limitWriter fails once more than n bytes have been written to it.
type limitWriter struct {
	w io.Writer
	n int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errors.New("output limit reached")
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}
