package build

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// gceName is the name Google Compute Engine requires of the disk in an
// image's tarball.
const gceName = "disk.raw"

// gceOutput writes ROLE.gce.tar.gz, what `gcloud compute images create
// --source-uri` imports: a gzip-compressed tar that holds the raw disk,
// sparse, as disk.raw, whose size must be a whole GiB. The tar is GNU
// tar's oldgnu format with its sparse map, as Google documents
// (tar --format=oldgnu -Sczf); the gzip stream is Go's, with no name and
// no time in its header, so the same image gives the same bytes.
var gceOutput = output{
	format: "gce", needs: needBootable | needRaw,
	write: func(ctx context.Context, j *outputJob) error {
		raw, err := j.raw(ctx)
		if err != nil {
			return err
		}
		if err := checkDiskMultiple(j, raw, gib, "gce", "a whole number of GiB, such as 2GiB (Google Compute Engine's rule)"); err != nil {
			return err
		}
		name := j.im.Plan.Role + ".gce.tar.gz"
		a, err := writeGCE(ctx, j.b.o.Tools, raw, filepath.Join(j.dir, name), j.im.Plan.SourceDateEpoch)
		if err != nil {
			return fmt.Errorf("role %s: writing %s: %w", j.im.Plan.Role, name, err)
		}
		a.Path, a.Format = name, "gce"
		j.arts = append(j.arts, a)
		return nil
	},
}

// writeGCE writes the tarball of the raw disk raw to out (see gceOutput).
func writeGCE(ctx context.Context, tools Tools, raw, out string, epoch int64) (imagemeta.Output, error) {
	// The tar names the file as it is on disk: a hard link named
	// disk.raw, in a folder of its own, shares the raw disk's holes.
	src, err := os.MkdirTemp(filepath.Dir(out), ".gce-")
	if err != nil {
		return imagemeta.Output{}, err
	}
	defer os.RemoveAll(src)
	if err := os.Link(raw, filepath.Join(src, gceName)); err != nil {
		return imagemeta.Output{}, fmt.Errorf("linking the raw disk as %s: %w", gceName, err)
	}
	return writeHashed(ctx, out, func(w io.Writer) error {
		zw, err := gzip.NewWriterLevel(w, gzip.DefaultCompression)
		if err != nil {
			return err
		}
		if err := tools.SparseTar(ctx, zw, src, gceName, epoch); err != nil {
			return err
		}
		return zw.Close()
	})
}

// sparseTar writes to w a GNU tar (oldgnu format) of the one file name in
// dir, stored sparse: the zero runs of 512-byte blocks are not stored, but
// listed in the sparse map. Holes are found by reading the file
// (--hole-detection=raw), not by asking the file system where its holes
// are, so the tar does not depend on how the file was written. The owner
// is root, the mode 0644 and the time epoch.
func sparseTar(ctx context.Context, w io.Writer, dir, name string, epoch int64) error {
	if _, err := exec.LookPath("tar"); err != nil {
		return fmt.Errorf("tar is not installed (apt-get install tar): %w", err)
	}
	cmd := exec.CommandContext(ctx, "tar", "--create", "--format=oldgnu", "--sparse", "--hole-detection=raw",
		"--owner=0", "--group=0", "--numeric-owner", "--mode=0644", "--mtime=@"+strconv.FormatInt(epoch, 10),
		"--directory", dir, "--file", "-", "--", name)
	cmd.Stdout = w
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("tar of %s: %w: %s", name, err, stderr.String())
	}
	return nil
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
