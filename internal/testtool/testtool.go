// Package testtool finds the programs that `make syft-tool` and `make
// cosign-tool` build into the tools folder for the tests.
package testtool

import (
	"fmt"
	"os"
	"path/filepath"
)

// Path is the program name: the environment variable env when set (the
// Makefile sets SYFT and COSIGN), else TOOLS_DIR/bin/NAME, TOOLS_DIR being
// $XDG_CACHE_HOME/imgforge-tools or ~/.cache/imgforge-tools. The error
// says which make target builds it.
func Path(name, env string) (string, error) {
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no home folder to find %s in", name)
		}
		cache = filepath.Join(home, ".cache")
	}
	p := filepath.Join(cache, "imgforge-tools", "bin", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is not built (make %s-tool builds it into %s)", name, name, p)
	}
	return p, nil
}
