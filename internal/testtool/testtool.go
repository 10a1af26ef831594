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

// CosignEnv is the environment to run cosign in, on loopback only:
// cosign fetches Sigstore's TUF root over HTTPS even to check a key's
// signature (and goes on without it), so every HTTP(S) request other than
// to loopback goes to a closed port on loopback instead of the network,
// with no DNS lookup. tufRoot is an empty folder for its TUF cache.
func CosignEnv(tufRoot string) []string {
	return append(os.Environ(), "HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost",
		"SIGSTORE_NO_CACHE=true", "TUF_ROOT="+tufRoot,
		// verify-blob-attestation reads the blob, a 2 GiB disk, whole.
		"COSIGN_MAX_ATTACHMENT_SIZE=4GiB")
}
