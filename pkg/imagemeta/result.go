package imagemeta

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Result is what a build of one role gives: its output folder and every
// output in it. `imgforge build -o json` prints it; the Packer plugin's
// artefact wraps it.
type Result struct {
	Role        string   `json:"role"`
	PlanDigest  string   `json:"plan_digest"`
	ImageDigest string   `json:"image_digest"`
	Dir         string   `json:"dir"`
	Artifacts   []Output `json:"artifacts"`
	Seconds     float64  `json:"seconds"`
}

// SumsName is the file name of the checksums in a build's output folder.
const SumsName = "SHA256SUMS"

// StateName is the file name of the build's own record of its outputs in
// an output folder (for no-op rebuilds): not an output, and different on
// every build, since it holds inode numbers and times.
const StateName = ".imgforge-state.json"

// MarshalSums gives SHA256SUMS's bytes for sums, which maps a file's path
// (slash-separated, relative to the output folder) to its sha256 in hex:
// one "SHA256  PATH" line per file, sorted by path, as sha256sum -c reads.
func MarshalSums(sums map[string]string) []byte {
	paths := make([]string, 0, len(sums))
	for p := range sums {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var b bytes.Buffer
	for _, p := range paths {
		b.WriteString(sums[p] + "  " + p + "\n")
	}
	return b.Bytes()
}

// ParseSums reads SHA256SUMS: path (slash-separated) -> sha256 in hex.
func ParseSums(r io.Reader) (map[string]string, error) {
	sums := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || !isHex64(sum) || name == "" {
			return nil, fmt.Errorf("line %d: %q is not \"SHA256  FILE\"", n, sc.Text())
		}
		if _, dup := sums[name]; dup {
			return nil, fmt.Errorf("line %d: %s is listed twice", n, name)
		}
		sums[name] = sum
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return sums, nil
}

// ReadSums reads the SHA256SUMS of the output folder dir.
func ReadSums(dir string) (map[string]string, error) {
	path := filepath.Join(dir, SumsName)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the checksums: %w", err)
	}
	defer f.Close()
	sums, err := ParseSums(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sums, nil
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
