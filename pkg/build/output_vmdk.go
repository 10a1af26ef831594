package build

import "context"

// vmdkOutput writes ROLE.vmdk, the raw disk converted by qemu-img to a
// streamOptimized vmdk, whose content ID is derived from the image (see
// convertDisk).
var vmdkOutput = output{
	format: "vmdk", needs: needBootable | needRaw,
	write: func(ctx context.Context, j *outputJob) error { return j.convert(ctx, "vmdk") },
}
