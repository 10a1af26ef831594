// Package verify checks a built bootable image against its manifest.
//
// Raw checks a raw GPT disk, ISO a hybrid ISO; each runs a list of
// checks and reports every one as ok or failed with a one-line reason.
// A check whose input an earlier check found broken (the partitions of
// an unreadable GPT, say) is not run. The checks cover what a machine
// needs to boot the image as it was built: the file's sha256 against the
// manifest's outputs; the partition table (six partitions: the ESP, slot
// A's root and verity, slot B's, the state) with the partition UUIDs,
// labels and slot sizes the manifest records; slot A's labels against
// the manifest's role and version; slot B, either empty (labelled _empty,
// the build's UUIDs, and zeros: only the allocated parts of the range,
// found with SEEK_DATA, are read, the holes are zeros by definition) or
// labelled with a version of the role (after an update; its content is
// not checked, the manifest describes slot A only); the state partition's
// prebuilt ext4 (UUID, label, e2fsck -fn); the kernel command line; the
// ESP (fsck.vfat, the sha256 of each of its boot files against the
// manifest's esp_files, the loader entry's options against the
// manifest's cmdline); the squashfs (read in full with sqfs2tar) and its
// dm-verity hash tree against the manifest's root hash (veritysetup, as
// the boot does).
//
// Nothing is changed or mounted: the partitions the tools read are
// copied into a temporary folder. The tools are fsck.vfat (dosfstools),
// e2fsck (e2fsprogs), sqfs2tar (squashfs-tools-ng), veritysetup
// (cryptsetup-bin) and, for an ISO, xorriso; a missing tool fails its
// check and says what to install.
package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/imgforge/imgforge/pkg/ctxio"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// ErrFailed is returned (wrapped) by Raw and ISO when a check failed.
var ErrFailed = errors.New("verification failed")

// Check is the outcome of one check.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason"` // one line
}

// Report is what verifying an image found.
type Report struct {
	Image    string  `json:"image"`
	Manifest string  `json:"manifest"`
	Format   string  `json:"format"` // raw or iso
	Checks   []Check `json:"checks"`
}

// OK says whether every check passed.
func (r *Report) OK() bool { return len(r.Failed()) == 0 }

// Failed lists the checks that failed, in the order they ran.
func (r *Report) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// err is the error Raw and ISO return for r: nil when every check
// passed, else one line naming the image and the first failed check.
func (r *Report) err() error {
	failed := r.Failed()
	if len(failed) == 0 {
		return nil
	}
	more := ""
	if n := len(failed) - 1; n == 1 {
		more = " (and 1 more failed check)"
	} else if n > 1 {
		more = fmt.Sprintf(" (and %d more failed checks)", n)
	}
	return fmt.Errorf("%s: %w: %s: %s%s", r.Image, ErrFailed, failed[0].Name, failed[0].Reason, more)
}

// Check names, in the order they run.
const (
	CheckDigest        = "digest"
	CheckProtectiveMBR = "protective-mbr"
	CheckGPT           = "gpt"
	CheckLayout        = "layout"     // the manifest has the disk's layout
	CheckPartition     = "partition-" // + esp, root, verity, state
	CheckLabels        = "labels"     // slot A's labels name the manifest's role and version
	CheckSlotB         = "slot-b"
	CheckStateFS       = "state-fs"
	CheckCmdline       = "cmdline"
	CheckElTorito      = "el-torito"
	CheckESPFsck       = "esp-fsck"
	CheckESPFiles      = "esp-files"
	CheckLoaderEntry   = "loader-entry"
	CheckBIOSEntry     = "bios-entry" // an ISO's ISOLINUX configuration, when it has one
	CheckRootImage     = "root-image"
	CheckSquashfs      = "squashfs"
	CheckVerity        = "dm-verity"
)

// readManifest reads the manifest of a bootable image.
func readManifest(path string) (*imagemeta.Manifest, error) {
	m, err := imagemeta.ReadManifest(path)
	if err != nil {
		return nil, err
	}
	if m.Disk == nil {
		return nil, fmt.Errorf("manifest %s has no disk section: it is not of a bootable image (build it with the raw or iso format)", path)
	}
	return m, nil
}

// run runs the checks of one image.
type run struct {
	ctx    context.Context
	report *Report
	tmp    string
}

func newRun(ctx context.Context, image, manifestPath, format string) (*run, *imagemeta.Manifest, error) {
	r := &run{ctx: ctx, report: &Report{Image: image, Manifest: manifestPath, Format: format}}
	m, err := readManifest(manifestPath)
	if err != nil {
		return r, nil, err
	}
	if fi, err := os.Stat(image); err != nil {
		return r, nil, fmt.Errorf("reading the image: %w", err)
	} else if !fi.Mode().IsRegular() {
		return r, nil, fmt.Errorf("image %s is not a file", image)
	}
	if r.tmp, err = os.MkdirTemp("", "imgforge-verify-"); err != nil {
		return r, nil, fmt.Errorf("making a temporary folder: %w", err)
	}
	return r, m, nil
}

func (r *run) close() {
	if r.tmp != "" {
		os.RemoveAll(r.tmp)
	}
}

// check runs fn as the check name: ok with fn's reason, or failed with
// its error's.
func (r *run) check(name string, fn func() (string, error)) bool {
	if err := r.ctx.Err(); err != nil {
		return false
	}
	reason, err := fn()
	if err != nil {
		if r.ctx.Err() != nil {
			return false
		}
		reason = err.Error()
	}
	r.report.Checks = append(r.report.Checks, Check{Name: name, OK: err == nil, Reason: oneLine(reason)})
	return err == nil
}

// result is what Raw and ISO return once the checks have run.
func (r *run) result() (Report, error) {
	if err := r.ctx.Err(); err != nil {
		return *r.report, err
	}
	return *r.report, r.report.err()
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// checkDigest compares the image's size and sha256 with the manifest's
// output entry of the format: the one named like the image, else the
// only one of that format.
func (r *run) checkDigest(m *imagemeta.Manifest, format string) (string, error) {
	var want *imagemeta.Output
	for i, o := range m.Outputs {
		if o.Format != format {
			continue
		}
		if filepath.Base(o.Path) == filepath.Base(r.report.Image) || want == nil {
			want = &m.Outputs[i]
		}
	}
	if want == nil {
		return "", fmt.Errorf("the manifest lists no %s output", format)
	}
	f, err := os.Open(r.report.Image)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := ctxio.CopyFile(r.ctx, h, f)
	if err != nil {
		return "", fmt.Errorf("reading the image: %w", err)
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if n != want.Size || got != want.Digest {
		return "", fmt.Errorf("the image is %d bytes with %s; the manifest's %s says %d bytes with %s", n, got, want.Path, want.Size, want.Digest)
	}
	return fmt.Sprintf("%d bytes, %s, as the manifest's %s", n, got, filepath.Base(want.Path)), nil
}

// cmdlineParams reads the imgforge.* parameters of a kernel command
// line.
func cmdlineParams(cmdline string) map[string]string {
	params := map[string]string{}
	for _, f := range strings.Fields(cmdline) {
		if k, v, ok := strings.Cut(f, "="); ok && strings.HasPrefix(k, "imgforge.") {
			params[k] = v
		}
	}
	return params
}

// baseCmdline is the image's own part of an imgforge kernel command
// line: what comes before boot=imgforge.
func baseCmdline(cmdline string) string {
	before, _, _ := strings.Cut(" "+cmdline+" ", " boot=imgforge ")
	return strings.TrimSpace(before)
}

// extract copies n bytes at off of the file src into a new file dst,
// leaving runs of zeros as holes.
func (r *run) extract(src string, off, n int64, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for done := int64(0); done < n; {
		if err := r.ctx.Err(); err != nil {
			out.Close()
			return err
		}
		chunk := buf[:min(int64(len(buf)), n-done)]
		if _, err := in.ReadAt(chunk, off+done); err != nil {
			out.Close()
			return fmt.Errorf("reading %s: %w", src, err)
		}
		if !allZero(chunk) {
			if _, err := out.WriteAt(chunk, done); err != nil {
				out.Close()
				return err
			}
		}
		done += int64(len(chunk))
	}
	if err := out.Truncate(n); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
