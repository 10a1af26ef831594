package verify

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/imgforge/imgforge/pkg/units"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/rootfs"
)

// ESP paths the boot needs (see boot.ESP).
const (
	loaderPath = boot.LoaderPath
	loaderConf = boot.LoaderConf
)

// tool finds a program on PATH or, as for an ordinary user on Debian,
// in the sbin folders that are not on it.
func tool(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (apt-get install %s)", name, pkg)
}

// checkESP runs the ESP checks on partition p of image: fsck.vfat, the
// boot files, whose sha256 must be those of digests (the manifest's field
// digestsFrom), and the loader entry, whose options must be want (of
// wantFrom, for the reason).
func (r *run) checkESP(image string, p *gpt.Partition, want, wantFrom string, digests map[string]string, digestsFrom string) {
	img := filepath.Join(r.tmp, "esp.img")
	copied := false
	r.check(CheckESPFsck, func() (string, error) {
		if err := r.extract(image, int64(p.Start)*sector, int64(p.Size), img); err != nil {
			return "", fmt.Errorf("copying the ESP: %w", err)
		}
		copied = true
		return r.fsck(img)
	})
	if !copied {
		return
	}
	// The files are checked even when fsck.vfat finds something: a FAT
	// may well be readable with a lost cluster.
	files := map[string][]byte{}
	sizes := map[string]int64{}
	var entry string
	ok := r.check(CheckESPFiles, func() (string, error) {
		d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
		if err != nil {
			return "", fmt.Errorf("opening the ESP: %w", err)
		}
		defer d.Close()
		fs, err := d.GetFilesystem(0)
		if err != nil {
			return "", fmt.Errorf("reading the ESP's FAT file system: %w", err)
		}
		if len(digests) == 0 {
			return "", fmt.Errorf("the manifest records no digests of the ESP's files (%s): it was written by an older imgforge; build the image again", digestsFrom)
		}
		paths := []string{loaderPath, loaderConf}
		for p := range digests {
			if p != loaderPath && p != loaderConf {
				paths = append(paths, p)
			}
		}
		sort.Strings(paths[2:])
		for _, p := range paths {
			f, err := fs.OpenFile(p, os.O_RDONLY)
			if err != nil {
				return "", fmt.Errorf("the ESP has no %s", p)
			}
			// Every file is hashed; the small ones are kept to be
			// checked.
			h := sha256.New()
			var w io.Writer = h
			var kept bytes.Buffer
			if p == loaderConf || strings.HasPrefix(p, boot.EntriesDir+"/") || path.Base(p) == boot.UKIFile {
				w = io.MultiWriter(h, &kept)
			}
			n, err := io.Copy(w, f)
			f.Close()
			if err != nil {
				return "", fmt.Errorf("reading %s on the ESP: %w", p, err)
			}
			if n == 0 {
				return "", fmt.Errorf("%s on the ESP is empty", p)
			}
			if kept.Len() > 0 {
				files[p] = kept.Bytes()
			}
			sizes[p] = n
			got := "sha256:" + hex.EncodeToString(h.Sum(nil))
			if wantDigest, ok := digests[p]; !ok {
				return "", fmt.Errorf("the manifest's %s has no digest of %s", digestsFrom, p)
			} else if got != wantDigest {
				return "", fmt.Errorf("%s on the ESP (%d bytes) has %s; the manifest's %s says %s", p, n, got, digestsFrom, wantDigest)
			}
		}
		var entries []string
		var total int64
		for p, n := range sizes {
			total += n
			if strings.HasPrefix(p, boot.EntriesDir+"/") {
				entries = append(entries, p)
			}
		}
		sort.Strings(entries)
		if len(entries) == 0 {
			return "", fmt.Errorf("the manifest's %s names no loader entry under %s", digestsFrom, boot.EntriesDir)
		}
		entry = entries[0]
		return fmt.Sprintf("%d files (%s), loader entries %s: sha256 as the manifest's %s",
			len(sizes), units.Bytes(total), strings.Join(entries, ", "), digestsFrom), nil
	})
	if !ok {
		return
	}
	r.check(CheckLoaderEntry, func() (string, error) {
		if string(files[loaderConf]) != boot.LoaderConfig {
			return "", fmt.Errorf("%s is not imgforge's (%q)", loaderConf, boot.LoaderConfig)
		}
		e := map[string][]string{}
		for _, line := range strings.Split(string(files[entry]), "\n") {
			k, v, _ := strings.Cut(strings.TrimSpace(line), " ")
			if k != "" {
				e[k] = append(e[k], strings.TrimSpace(v))
			}
		}
		slot := slotOfEntry(entry)
		f := boot.FilesOf(slot)
		if efi := e["efi"]; len(efi) > 0 {
			// A unified kernel image (Secure Boot): the command line is
			// its .cmdline section, which its signature covers.
			if first(efi) != f.UKI || len(e["linux"]) > 0 || len(e["options"]) > 0 {
				return "", fmt.Errorf("the loader entry %s boots efi %q (linux %q, options %q); want efi %s alone", entry, first(efi), first(e["linux"]), first(e["options"]), f.UKI)
			}
			uki, ok := files[f.UKI]
			if !ok {
				return "", fmt.Errorf("the manifest's %s has no %s, which the loader entry %s boots", digestsFrom, f.UKI, entry)
			}
			cl, err := boot.UKISectionData(uki, ".cmdline")
			if err != nil {
				return "", fmt.Errorf("%s: %w", f.UKI, err)
			}
			if string(cl) != want {
				return "", fmt.Errorf("the command line of %s differs from %s: %s", f.UKI, wantFrom, firstDifference(string(cl), want))
			}
			return fmt.Sprintf("efi %s, a unified kernel image whose command line equals %s", f.UKI, wantFrom), nil
		}
		wantInitrd := []string{f.Initrd}
		if _, ok := digests[f.Overlay]; ok {
			wantInitrd = append(wantInitrd, f.Overlay)
		}
		if first(e["linux"]) != f.Kernel || strings.Join(e["initrd"], " ") != strings.Join(wantInitrd, " ") {
			return "", fmt.Errorf("the loader entry %s boots linux %q with initrd %q, not %s with %s", entry, first(e["linux"]), e["initrd"], f.Kernel, wantInitrd)
		}
		if options := first(e["options"]); options != want {
			return "", fmt.Errorf("the loader entry's options differ from %s: %s", wantFrom, firstDifference(options, want))
		}
		return "options equal " + wantFrom, nil
	})
}

// slotOfEntry is the slot a loader entry file (imgforge-GEN-SLOT[+T].conf) boots.
func slotOfEntry(p string) string {
	n := strings.TrimSuffix(path.Base(p), ".conf")
	if i := strings.IndexByte(n, '+'); i >= 0 {
		n = n[:i]
	}
	if i := strings.LastIndexByte(n, '-'); i >= 0 {
		return n[i+1:]
	}
	return n
}

func first(ss []string) string {
	if len(ss) == 0 {
		return ""
	}
	return ss[0]
}

// firstDifference says where two command lines first differ, word by
// word.
func firstDifference(got, want string) string {
	g, w := strings.Fields(got), strings.Fields(want)
	for i := 0; i < max(len(g), len(w)); i++ {
		switch {
		case i >= len(g):
			return fmt.Sprintf("word %d: missing %q", i+1, w[i])
		case i >= len(w):
			return fmt.Sprintf("word %d: %q is extra", i+1, g[i])
		case g[i] != w[i]:
			return fmt.Sprintf("word %d: %q, want %q", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("%q, want %q", got, want)
}

// fsck runs fsck.vfat -n on the FAT image at img.
func (r *run) fsck(img string) (string, error) {
	fsck, err := tool("fsck.vfat", "dosfstools")
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(r.ctx, fsck, "-n", img).CombinedOutput()
	problems, summary := fsckProblems(string(out), img)
	if err != nil {
		if len(problems) == 0 {
			problems = []string{err.Error()}
		}
		if n := len(problems); n > 3 {
			problems = append(problems[:3], fmt.Sprintf("and %d more", n-3))
		}
		return "", fmt.Errorf("fsck.vfat -n finds the ESP damaged: %s", strings.Join(problems, "; "))
	}
	return "fsck.vfat -n: clean, " + summary, nil
}

// fsckProblems reads fsck.vfat's output: the problems it reports (a
// file's path, as fsck.vfat prints it on a line of its own, joined to
// each of its problems, and without what fsck would do about them) and
// its summary line.
func fsckProblems(out, img string) (problems []string, summary string) {
	path := ""
	for _, line := range strings.Split(out, "\n") {
		indented := strings.HasPrefix(line, " ")
		line = strings.TrimSpace(line)
		switch {
		case line == "", strings.HasPrefix(line, "fsck.fat "), strings.HasPrefix(line, "Leaving filesystem unchanged"):
		case strings.HasPrefix(line, img+": "):
			summary = strings.TrimPrefix(line, img+": ")
		case strings.HasPrefix(line, "/") && !indented:
			path = line
		default:
			for _, action := range []string{" Fixing.", " Truncating file to 0 bytes.", " Assuming EOF."} {
				line = strings.TrimSuffix(line, action)
			}
			line = strings.TrimSuffix(line, ".")
			if indented && path != "" {
				line = path + ": " + line
			}
			problems = append(problems, line)
		}
	}
	return problems, summary
}

// checkRoot runs the root checks: the squashfs at the start of data
// read in full, and data against its hash tree in hash.
func (r *run) checkRoot(data, hash string, v boot.Verity) {
	r.check(CheckSquashfs, func() (string, error) { return r.squashfs(data, v.DataBlocks*rootfs.BlockSize) })
	r.check(CheckVerity, func() (string, error) {
		// rootfs.Check runs veritysetup from PATH.
		if _, err := exec.LookPath("veritysetup"); err != nil {
			return "", errors.New("veritysetup is not on PATH (apt-get install cryptsetup-bin; it lives in /usr/sbin)")
		}
		if err := rootfs.Check(r.ctx, data, hash, v); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d blocks match root hash %s", v.DataBlocks, v.RootHash), nil
	})
}

// squashfs reads the squashfs image at the start of path, which may be
// followed by other data, to the end with sqfs2tar: every inode,
// directory and data block must decompress. limit is where it must end.
func (r *run) squashfs(path string, limit int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	sb := make([]byte, 96)
	_, err = f.ReadAt(sb, 0)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("reading the squashfs superblock: %w", err)
	}
	if string(sb[:4]) != "hsqs" {
		return "", errors.New("no squashfs superblock (hsqs) at the start of the root")
	}
	if used := int64(leUint64(sb[40:])); used > limit {
		return "", fmt.Errorf("the squashfs is %d bytes, more than the %d the manifest's data_blocks cover", used, limit)
	}
	sqfs2tar, err := tool("sqfs2tar", "squashfs-tools-ng")
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(r.ctx, sqfs2tar, path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("running sqfs2tar: %w", err)
	}
	entries, size, tarErr := countTar(out)
	_, _ = io.Copy(io.Discard, out)
	err = cmd.Wait()
	if err != nil || tarErr != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" && tarErr != nil {
			msg = tarErr.Error()
		}
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("sqfs2tar cannot read the squashfs: %s", msg)
	}
	return fmt.Sprintf("sqfs2tar read %d entries, %s of file data", entries, units.Bytes(size)), nil
}

func countTar(r io.Reader) (entries int, size int64, err error) {
	tr := tar.NewReader(r)
	for {
		_, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return entries, size, nil
		}
		if err != nil {
			return entries, size, err
		}
		n, err := io.Copy(io.Discard, tr)
		if err != nil {
			return entries, size, err
		}
		entries++
		size += n
	}
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v
}
