package build

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/oci"
)

// need is what an output needs besides the image's layers, which every
// output has.
type need int

const (
	// needBootable: the kernel, the initramfs and the verified root.
	needBootable need = 1 << iota
	// needRaw: the raw disk (which needs the bootable root too).
	needRaw
)

// An output writes one format (pkg/format names them) into a role's
// output folder. Each lives in its own file, output_FORMAT.go.
type output struct {
	format string
	needs  need
	// write writes the format's files into j.dir and adds them to j.arts.
	write func(ctx context.Context, j *outputJob) error
}

// outputs are the writers of every format of pkg/format.
var outputs = []output{ociOutput, dockerArchiveOutput, rawOutput, qcow2Output, vmdkOutput, vhdOutput, gceOutput, isoOutput, pxeOutput}

func outputOf(format string) (output, bool) {
	for _, o := range outputs {
		if o.format == format {
			return o, true
		}
	}
	return output{}, false
}

// planOutputs returns the writers of formats, in order, and what they
// need together.
func planOutputs(formats []string) ([]output, need, error) {
	var outs []output
	var needs need
	for _, f := range formats {
		o, ok := outputOf(f)
		if !ok {
			return nil, 0, fmt.Errorf("no writer of output format %q", f)
		}
		outs = append(outs, o)
		needs |= o.needs
	}
	if needs&needRaw != 0 {
		needs |= needBootable
	}
	return outs, needs, nil
}

// outputJob is one role's outputs being written.
type outputJob struct {
	b       *Builder
	im      *Image
	img     v1.Image
	layers  []oci.Layer
	digest  string // the OCI image's digest
	dir     string // the temporary output folder
	formats []string
	// bootable is the verified root, when an output needs it.
	bootable *Bootable
	// arts are the files written so far, with paths relative to dir.
	arts []imagemeta.Output
	// disk is what the manifest says of the boot, from the raw disk;
	// finish adds what the ISO and PXE writers say.
	disk    *imagemeta.Disk
	rawDone bool
	// The kernel command lines of the ISO and the PXE set, and the
	// digests of the ISO's ESP files.
	isoCmdline, pxeCmdline string
	isoESP                 map[string]string
}

// rawPath is where the raw disk is written; it is removed at the end
// when raw is not one of the formats (it was only the source of a qcow2,
// vmdk, vhd or gce tarball).
func (j *outputJob) rawPath() string { return filepath.Join(j.dir, j.im.Plan.Role+".raw") }

// raw writes the raw disk once, and lists it among the outputs when raw
// was asked for (where the first disk format asked for it).
func (j *outputJob) raw(ctx context.Context) (string, error) {
	path := j.rawPath()
	if j.rawDone {
		return path, nil
	}
	info, err := j.b.writeRaw(ctx, path, j.im, j.bootable, j.digest)
	if err != nil {
		return "", err
	}
	j.disk, j.rawDone = info, true
	if slices.Contains(j.formats, "raw") {
		a, err := artifactOf(ctx, path, "raw")
		if err != nil {
			return "", err
		}
		j.arts = append(j.arts, a)
	}
	return path, nil
}

// finish removes the raw disk that was only a source, and completes the
// disk info with the ISO's and the PXE set's command lines.
func (j *outputJob) finish() {
	if !slices.Contains(j.formats, "raw") {
		os.Remove(j.rawPath())
	}
	if (j.isoCmdline != "" || j.pxeCmdline != "") && j.disk == nil {
		ov := j.bootable.OverlayVerity
		j.disk = &imagemeta.Disk{KernelVersion: j.bootable.KernelVersion, Verity: j.bootable.Verity, OverlayVerity: &ov}
	}
	if j.isoCmdline != "" {
		j.disk.ISOCmdline, j.disk.ISOESPFiles = j.isoCmdline, j.isoESP
	}
	if j.pxeCmdline != "" {
		j.disk.PXECmdline = j.pxeCmdline
	}
}
