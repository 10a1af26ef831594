package main

import (
	"os/exec"
	"strings"
	"testing"
)

// builderOnly are the packages and modules of the image builder. The agent
// runs on every node: it links none of them, so that a builder-only change
// or module bump changes no image.
var builderOnly = []string{
	"github.com/imgforge/imgforge/pkg/build",
	"github.com/imgforge/imgforge/pkg/debian",
	"github.com/imgforge/imgforge/pkg/disk",
	"github.com/imgforge/imgforge/pkg/oci",
	"github.com/imgforge/imgforge/pkg/cache",
	"github.com/imgforge/imgforge/pkg/imgforge",
	"github.com/imgforge/imgforge/pkg/plan",
	"github.com/imgforge/imgforge/pkg/layer",
	"github.com/imgforge/imgforge/pkg/boot",
	"github.com/imgforge/imgforge/pkg/rootfs",
	"github.com/imgforge/imgforge/pkg/sbom",
	"github.com/imgforge/imgforge/pkg/verify",
	"github.com/imgforge/imgforge/pkg/serve",
	"github.com/imgforge/imgforge/pkg/qemu",
	"github.com/diskfs/go-diskfs",
	"github.com/google/go-containerregistry",
	"github.com/docker/",
}

// TestAgentLinksNoBuilder fails when the agent's dependency list holds a
// package of the image builder or one of its modules.
func TestAgentLinksNoBuilder(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, pkg := range []string{".", "../../pkg/agent/..."} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		for _, d := range deps {
			for _, b := range builderOnly {
				if d == b || strings.HasPrefix(d, strings.TrimSuffix(b, "/")+"/") {
					t.Errorf("%s links builder package %s", pkg, d)
				}
			}
		}
		t.Logf("%s: %d packages", pkg, len(deps))
	}
}
