package build

import "context"

// qcow2Output writes ROLE.qcow2, the raw disk converted by qemu-img.
var qcow2Output = output{
	format: "qcow2", needs: needBootable | needRaw,
	write: func(ctx context.Context, j *outputJob) error { return j.convert(ctx, "qcow2") },
}
