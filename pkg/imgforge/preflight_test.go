package imgforge

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/imgforge/imgforge/pkg/build"
	"github.com/imgforge/imgforge/pkg/plan"
)

// TestBuildPreflight checks that Build refuses, before it opens the cache
// or runs anything, a build whose programs are missing, and names their
// Debian packages; the formats come from the plans when not given.
func TestBuildPreflight(t *testing.T) {
	only := func(names ...string) func(string) (string, error) {
		return func(n string) (string, error) {
			if slices.Contains(names, n) {
				return "/usr/bin/" + n, nil
			}
			return "", &exec.Error{Name: n, Err: exec.ErrNotFound}
		}
	}
	tests := []struct {
		name        string
		formats     []string
		outputs     []string // the plan's
		have        []string
		wantMissing []string
	}{
		{"no mmdebstrap", []string{"oci"}, nil, nil, []string{"mmdebstrap"}},
		{"iso without xorriso", []string{"iso"}, nil, []string{"mmdebstrap", "tar2sqfs", "veritysetup"}, []string{"xorriso"}},
		{"the plan's outputs", nil, []string{"oci", "qcow2"}, []string{"mmdebstrap", "tar2sqfs", "veritysetup", "mke2fs"}, []string{"qemu-img"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cacheDir := filepath.Join(dir, "cache")
			_, err := Build(context.Background(), BuildRequest{
				Plans: []*plan.Plan{{Role: "lb", Outputs: tt.outputs}}, CacheDir: cacheDir,
				OutputDir: filepath.Join(dir, "out"), Formats: tt.formats, LookPath: only(tt.have...),
			})
			var me *build.MissingToolsError
			if !errors.As(err, &me) {
				t.Fatalf("error %v, want a *build.MissingToolsError", err)
			}
			var got []string
			for _, tool := range me.Missing {
				got = append(got, tool.Name)
			}
			if !slices.Equal(got, tt.wantMissing) {
				t.Errorf("missing %v, want %v", got, tt.wantMissing)
			}
			if _, err := os.Stat(cacheDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the cache was opened before the check: %v", err)
			}
		})
	}
}
