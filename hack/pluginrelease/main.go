// Command pluginrelease writes the release files of a Packer plugin in the
// layout `packer plugins install` (and `packer init`) fetch from a GitHub
// release: per platform, packer-plugin-NAME_vVERSION_xAPI_OS_ARCH.zip
// holding the binary under that same name without .zip, and one
// packer-plugin-NAME_vVERSION_SHA256SUMS with the zips' sha256. The version
// and API version are what the plugin's own `describe` says, so that the
// names match what Packer checks. make plugin-release runs it.
//
// Usage: pluginrelease -name NAME -describe HOST_BINARY -out DIR OS_ARCH=BINARY...
package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// description is what a plugin's `describe` prints.
type description struct {
	Version    string `json:"version"`
	APIVersion string `json:"api_version"`
}

var (
	versionRe  = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)
	apiRe      = regexp.MustCompile(`^x[0-9]+\.[0-9]+$`)
	platformRe = regexp.MustCompile(`^[a-z0-9]+_[a-z0-9]+$`)
	nameRe     = regexp.MustCompile(`^[a-z0-9-]+$`)
)

func main() {
	name := flag.String("name", "", "the plugin's name (packer-plugin-NAME)")
	describe := flag.String("describe", "", "a binary of the plugin this machine runs, asked for its version")
	out := flag.String("out", "dist", "folder to write the release files into")
	flag.Parse()
	if err := run(*name, *describe, *out, flag.Args(), os.Getenv("SOURCE_DATE_EPOCH")); err != nil {
		fmt.Fprintf(os.Stderr, "pluginrelease: %v\n", err)
		os.Exit(1)
	}
}

func run(name, describe, out string, platforms []string, epoch string) error {
	if !nameRe.MatchString(name) || describe == "" || len(platforms) == 0 {
		return errors.New("usage: pluginrelease -name NAME -describe HOST_BINARY -out DIR OS_ARCH=BINARY [OS_ARCH=BINARY]")
	}
	b, err := exec.Command(describe, "describe").Output()
	if err != nil {
		return fmt.Errorf("running %s describe: %w", describe, err)
	}
	var d description
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("reading %s describe: %w", describe, err)
	}
	mtime := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	if epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil || sec < 315532800 {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a Unix time after 1980", epoch)
		}
		mtime = time.Unix(sec, 0).UTC()
	}
	files, err := release(name, d, out, platforms, mtime)
	for _, f := range files {
		fmt.Println(f)
	}
	return err
}

// release writes a zip per platform ("OS_ARCH=BINARY") and the SHA256SUMS
// into out, keeping the sums of other platforms already there; it returns
// the paths written.
func release(name string, d description, out string, platforms []string, mtime time.Time) ([]string, error) {
	if !versionRe.MatchString(d.Version) || !apiRe.MatchString(d.APIVersion) {
		return nil, fmt.Errorf("the plugin describes itself as version %q, API %q; want such as 0.1.0 and x5.0", d.Version, d.APIVersion)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	prefix := fmt.Sprintf("packer-plugin-%s_v%s_", name, d.Version)
	sumsPath := filepath.Join(out, prefix+"SHA256SUMS")
	sums, err := readSums(sumsPath)
	if err != nil {
		return nil, err
	}
	var written []string
	for _, p := range platforms {
		platform, bin, ok := strings.Cut(p, "=")
		if !ok || !platformRe.MatchString(platform) || bin == "" {
			return written, fmt.Errorf("%q: expected OS_ARCH=BINARY, such as linux_amd64=bin/plugin", p)
		}
		base := prefix + d.APIVersion + "_" + platform
		zipPath := filepath.Join(out, base+".zip")
		sum, err := writeZip(zipPath, base, bin, mtime)
		if err != nil {
			return written, err
		}
		sums[base+".zip"] = sum
		written = append(written, zipPath)
	}
	names := make([]string, 0, len(sums))
	for n := range sums {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	for _, n := range names {
		fmt.Fprintf(&buf, "%s  %s\n", sums[n], n)
	}
	if err := os.WriteFile(sumsPath, buf.Bytes(), 0o644); err != nil {
		return written, err
	}
	return append(written, sumsPath), nil
}

// writeZip writes a zip at path holding bin as entry (mode 0755, mtime)
// and returns the zip's sha256 in hex.
func writeZip(path, entry, bin string, mtime time.Time) (string, error) {
	src, err := os.Open(bin)
	if err != nil {
		return "", fmt.Errorf("reading the plugin binary: %w", err)
	}
	defer src.Close()
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp)
	h := sha256.New()
	zw := zip.NewWriter(io.MultiWriter(f, h))
	hdr := &zip.FileHeader{Name: entry, Method: zip.Deflate, Modified: mtime}
	hdr.SetMode(0o755)
	w, err := zw.CreateHeader(hdr)
	if err == nil {
		_, err = io.Copy(w, src)
	}
	if err == nil {
		err = zw.Close()
	}
	if err == nil {
		err = f.Close()
	} else {
		f.Close()
	}
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readSums reads a SHA256SUMS file (none: empty).
func readSums(path string) (map[string]string, error) {
	sums := map[string]string{}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return sums, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 {
			return nil, fmt.Errorf("%s:%d: expected SHA256  NAME", path, n)
		}
		sums[name] = sum
	}
	return sums, sc.Err()
}
