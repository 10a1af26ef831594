package imgforge

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestMain builds the real imgforge-agent, as `make build` does, and points
// IMGFORGE_AGENT at it unless the environment already names one: the
// builds these tests run bake it into the images.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("IMGFORGE_AGENT") == "" {
		dir, err := os.MkdirTemp("", "imgforge-agent-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		agent := filepath.Join(dir, "imgforge-agent")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", agent, "./cmd/imgforge-agent")
		cmd.Dir = filepath.Join("..", "..", "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building imgforge-agent: %v\n%s", err, out)
			return 1
		}
		os.Setenv("IMGFORGE_AGENT", agent)
	}
	return m.Run()
}
