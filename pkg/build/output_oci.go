package build

import (
	"context"
	"path/filepath"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/oci"
)

// ociOutput writes oci/, an OCI image layout of the image's layers.
var ociOutput = output{
	format: "oci",
	write: func(ctx context.Context, j *outputJob) error {
		dir := filepath.Join(j.dir, "oci")
		if err := oci.WriteLayout(ctx, dir, j.img, j.im.Plan.Role, j.layers); err != nil {
			return err
		}
		j.arts = append(j.arts, imagemeta.Output{Path: "oci", Format: "oci", Size: dirSize(dir), Digest: j.digest})
		return nil
	},
}
