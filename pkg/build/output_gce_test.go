package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/spec"
)

// TestWriteGCE writes the tarball of a sparse 1 GiB disk twice: it must
// hold one entry, disk.raw, stored sparse (GNU tar's 'S' type), of the
// disk's whole GiB and content, and the two must have the same bytes.
func TestWriteGCE(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("GNU tar not installed")
	}
	dir := t.TempDir()
	raw := filepath.Join(dir, "web.raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	chunks := map[int64]string{0: "GPT header here", 300 << 20: "root data", gib - 4096: "backup GPT"}
	for off, s := range chunks {
		if _, err := f.WriteAt([]byte(s), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(gib); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var got [2][]byte
	for i := range got {
		if i == 1 {
			time.Sleep(1100 * time.Millisecond) // a time in the output would differ now
		}
		out := filepath.Join(dir, "web.gce.tar.gz")
		a, err := writeGCE(context.Background(), HostTools(""), raw, out, 1735689600)
		if err != nil {
			t.Fatal(err)
		}
		if got[i], err = os.ReadFile(out); err != nil {
			t.Fatal(err)
		}
		if a.Size != int64(len(got[i])) || !strings.HasPrefix(a.Digest, "sha256:") {
			t.Errorf("output %+v for a %d-byte file", a, len(got[i]))
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 2 {
			t.Errorf("%d files left in the output folder, want the raw disk and the tarball", len(ents))
		}
	}
	if !bytes.Equal(got[0], got[1]) {
		t.Error("two tarballs of the same disk differ")
	}
	if len(got[0]) > 1<<20 {
		t.Errorf("the tarball is %d bytes: the disk's holes were stored", len(got[0]))
	}

	zr, err := gzip.NewReader(bytes.NewReader(got[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header names %q at %v: want neither", zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	hdr, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Name != "disk.raw" || hdr.Typeflag != tar.TypeGNUSparse || hdr.Size != gib || hdr.Size%gib != 0 ||
		hdr.Uid != 0 || hdr.Gid != 0 || hdr.Mode != 0o644 || hdr.ModTime.Unix() != 1735689600 {
		t.Errorf("entry %q type %q size %d uid %d gid %d mode %o time %v; want a sparse disk.raw of a whole GiB, root's, 0644, at SOURCE_DATE_EPOCH",
			hdr.Name, hdr.Typeflag, hdr.Size, hdr.Uid, hdr.Gid, hdr.Mode, hdr.ModTime)
	}
	rf, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	if !sameContent(t, tr, rf) {
		t.Error("disk.raw in the tarball is not the raw disk")
	}
	if _, err := tr.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("a second entry in the tarball: %v", err)
	}
}

// TestDiskMultiple: the vhd and gce outputs refuse a disk whose size is
// not a whole MiB or GiB, naming disk.size where the definition set it.
func TestDiskMultiple(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "d.raw")
	if err := os.WriteFile(raw, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := &plan.Plan{Role: "web", DiskPos: map[string]spec.Pos{"disk.size": {File: "images/x.yaml", Line: 7, Col: 9}}}
	j := &outputJob{im: &Image{Plan: p}}
	for _, tc := range []struct {
		size int64
		unit int64
		want string
	}{
		{2 * gib, gib, ""},
		{1500 * mib, mib, ""},
		{1500 * mib, gib, `role web: images/x.yaml:7:9: field "disk.size": the gce output needs a disk size of N; the disk is 1572864000 bytes`},
		{gib + 512, mib, `role web: images/x.yaml:7:9: field "disk.size": the gce output needs a disk size of N; the disk is 1073742336 bytes`},
	} {
		if err := os.Truncate(raw, tc.size); err != nil {
			t.Fatal(err)
		}
		err := checkDiskMultiple(j, raw, tc.unit, "gce", "N")
		if got := errString(err); got != tc.want {
			t.Errorf("size %d, unit %d: %q, want %q", tc.size, tc.unit, got, tc.want)
		}
	}
}

// sameContent reads a and b to their ends, 1 MiB at a time, and says
// whether they held the same bytes.
func sameContent(t *testing.T, a, b io.Reader) bool {
	t.Helper()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(a, ba)
		nb, eb := io.ReadFull(b, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			if !errors.Is(ea, io.EOF) && !errors.Is(ea, io.ErrUnexpectedEOF) {
				t.Fatal(ea)
			}
			return errors.Is(ea, io.EOF) == errors.Is(eb, io.EOF) && errors.Is(ea, io.ErrUnexpectedEOF) == errors.Is(eb, io.ErrUnexpectedEOF)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
