package build

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/debian"
)

// fakeTools stands in for mmdebstrap and the other programs of the host:
// it writes small tars, so that the stages run in milliseconds. It counts
// the calls, to tell a cache hit from a run.
type fakeTools struct {
	mu    sync.Mutex
	calls map[string]int
	// extra, when set, gives entries Bootstrap adds to what it writes.
	extra func(bs *debian.Bootstrap) []tarEntry
}

func newFakeTools() *fakeTools { return &fakeTools{calls: map[string]int{}} }

func (f *fakeTools) called(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[what]++
}

func (f *fakeTools) count(what string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[what]
}

func (f *fakeTools) MmdebstrapVersion(context.Context) (string, error) {
	return "mmdebstrap 0.0-fake", nil
}

type tarEntry struct {
	name, link string
	typ        byte
	data       string
	uid, gid   int
}

func dpkgStatus(pkgs []string) string {
	var b strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&b, "Package: %s\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n\n", p)
	}
	return b.String()
}

// baseEntries is a root filesystem with what the stages look for.
func baseEntries(pkgs []string) []tarEntry {
	return []tarEntry{
		{name: "boot/", typ: tar.TypeDir},
		{name: "boot/vmlinuz-6.1.0-fake-amd64", data: "kernel"},
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/group", data: "root:x:0:\nwww-data:x:33:\n"},
		{name: "etc/passwd", data: "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/usr/sbin/nologin\n"},
		{name: "usr/lib/os-release", data: "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"},
		{name: "usr/lib/systemd/boot/efi/systemd-bootx64.efi", data: "sd-boot"},
		{name: "var/lib/dpkg/status", data: dpkgStatus(pkgs)},
	}
}

func writeTar(path string, entries []tarEntry) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: 0o644, Linkname: e.link, Size: int64(len(e.data)), Uid: e.uid, Gid: e.gid}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeDir {
			h.Mode, h.Size = 0o755, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.data)); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// Bootstrap writes the base, or (On a base) the base with a file and a
// unit for each package.
func (f *fakeTools) Bootstrap(_ context.Context, bs *debian.Bootstrap) error {
	var extra []tarEntry
	if f.extra != nil {
		extra = f.extra(bs)
	}
	if bs.On == "" {
		f.called("base")
		return writeTar(bs.Output, append(baseEntries(bs.Packages), extra...))
	}
	f.called("role")
	if _, err := os.Stat(bs.On); err != nil {
		return fmt.Errorf("the base tar: %w", err)
	}
	pkgs := append([]string{"systemd"}, bs.Packages...)
	sort.Strings(pkgs)
	entries := baseEntries(pkgs)
	for _, p := range bs.Packages {
		entries = append(entries,
			tarEntry{name: "usr/lib/systemd/system/" + p + ".service", data: "[Service]\nExecStart=/usr/sbin/" + p + "\n"},
			tarEntry{name: "usr/share/doc/" + p + "/README", data: "docs of " + p},
			tarEntry{name: "usr/share/doc/" + p + "/copyright", data: "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: GPL-2+\n"})
	}
	return writeTar(bs.Output, append(entries, extra...))
}

// Chroot "runs" mkinitramfs: it writes the files to download.
func (f *fakeTools) Chroot(_ context.Context, ch *debian.Chroot) error {
	f.called("chroot")
	for _, host := range ch.Download {
		if err := os.WriteFile(host, []byte("initrd of "+ch.On), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Squashfs keeps the flattened tar as it is.
func (f *fakeTools) Squashfs(_ context.Context, r io.Reader, out string, _ int64) error {
	f.called("squashfs")
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return os.WriteFile(out, data, 0o644)
}

// Verity hashes the data in one go.
func (f *fakeTools) Verity(_ context.Context, data, hash, salt string) (boot.Verity, error) {
	f.called("verity")
	b, err := os.ReadFile(data)
	if err != nil {
		return boot.Verity{}, err
	}
	sum := sha256.Sum256(b)
	if err := os.WriteFile(hash, sum[:], 0o644); err != nil {
		return boot.Verity{}, err
	}
	return boot.Verity{RootHash: hex.EncodeToString(sum[:]), Salt: salt, DataBlocks: int64(len(b)+4095) / 4096, HashStart: 1}, nil
}

// ConvertDisk writes a small file that names the disk it converted.
func (f *fakeTools) ConvertDisk(_ context.Context, raw, out, format string) error {
	f.called("convert")
	fi, err := os.Stat(raw)
	if err != nil {
		return err
	}
	return os.WriteFile(out, fmt.Appendf(nil, "%s of a %d-byte raw disk\n", format, fi.Size()), 0o644)
}

// SparseTar writes a line that names the file.
func (f *fakeTools) SparseTar(_ context.Context, w io.Writer, dir, name string, _ int64) error {
	f.called("tar")
	fi, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "tar of %s, %d bytes\n", name, fi.Size())
	return err
}

// StateFS writes a sparse file of the size that names itself.
func (f *fakeTools) StateFS(_ context.Context, out string, size int64, uuid string, _ int64) error {
	f.called("statefs")
	if err := os.WriteFile(out, []byte("fake ext4 "+uuid), 0o644); err != nil {
		return err
	}
	return os.Truncate(out, size)
}
