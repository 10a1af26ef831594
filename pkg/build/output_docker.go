package build

import (
	"context"
	"io"
	"path/filepath"

	"github.com/imgforge/imgforge/pkg/oci"
)

// dockerArchiveOutput writes ROLE.docker.tar, a `docker save` tarball
// tagged imgforge/ROLE:latest.
var dockerArchiveOutput = output{
	format: "docker-archive",
	write: func(ctx context.Context, j *outputJob) error {
		role := j.im.Plan.Role
		name := role + ".docker.tar"
		a, err := writeHashed(ctx, filepath.Join(j.dir, name), func(w io.Writer) error {
			return oci.WriteDockerArchive(w, "imgforge/"+role+":latest", j.img)
		})
		if err != nil {
			return err
		}
		a.Path, a.Format = name, "docker-archive"
		j.arts = append(j.arts, a)
		return nil
	},
}
