package build

import (
	"context"
	"fmt"
	"os"
)

// vhdOutput writes ROLE.vhd, the raw disk converted by qemu-img to the
// fixed VHD that Azure takes, whose size must be a whole MiB; its footer's
// UUID and time are derived from the image (see convertDisk).
var vhdOutput = output{
	format: "vhd", needs: needBootable | needRaw,
	write: func(ctx context.Context, j *outputJob) error {
		raw, err := j.raw(ctx)
		if err != nil {
			return err
		}
		if err := checkDiskMultiple(j, raw, mib, "vhd", "a whole number of MiB, such as 2GiB or 1500MiB (Azure's rule)"); err != nil {
			return err
		}
		return j.convert(ctx, "vhd")
	},
}

const (
	mib = 1 << 20
	gib = 1 << 30
)

// checkDiskMultiple fails, naming the image definition's disk.size, when
// the raw disk's size is not a multiple of unit, which format needs.
func checkDiskMultiple(j *outputJob, raw string, unit int64, format, accepted string) error {
	fi, err := os.Stat(raw)
	if err != nil {
		return err
	}
	if fi.Size()%unit == 0 {
		return nil
	}
	p := j.im.Plan
	return fmt.Errorf("role %s: %w", p.Role, diskFieldError(p, "disk.size",
		fmt.Errorf("the %s output needs a disk size of %s; the disk is %d bytes", format, accepted, fi.Size())))
}
