package main

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRelease writes the release files of a stand-in plugin and reads them
// as Packer's plugin getter does: SHA256SUMS names
// packer-plugin-NAME_vVERSION_xAPI_OS_ARCH.zip with the zip's sha256, and
// the zip holds the binary under the name without .zip.
func TestRelease(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "packer-plugin-imgforge")
	body := "#!/bin/sh\necho '{\"version\":\"0.1.0\",\"sdk_version\":\"0.6.10\",\"api_version\":\"x5.0\",\"builders\":[\"-packer-default-plugin-name-\"]}'\n"
	if err := os.WriteFile(plugin, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "dist")
	if err := run("imgforge", plugin, out, []string{"linux_amd64=" + plugin}, "1700000000"); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(filepath.Join(out, "packer-plugin-imgforge_v0.1.0_x5.0_linux_amd64.zip"))
	if err != nil {
		t.Fatal(err)
	}
	if err := run("imgforge", plugin, out, []string{"linux_arm64=" + plugin}, "1700000000"); err != nil {
		t.Fatal(err)
	}
	sums, err := os.ReadFile(filepath.Join(out, "packer-plugin-imgforge_v0.1.0_SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(sums), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("SHA256SUMS:\n%s", sums)
	}
	for i, platform := range []string{"linux_amd64", "linux_arm64"} {
		sum, name, _ := strings.Cut(lines[i], "  ")
		// Packer's ChecksumFileEntry: the prefix, then version, API
		// version, OS and arch separated by _, then the extension.
		rest, ok := strings.CutPrefix(name, "packer-plugin-imgforge_")
		if !ok || filepath.Ext(rest) != ".zip" {
			t.Fatalf("line %q", lines[i])
		}
		parts := strings.Split(strings.TrimSuffix(rest, ".zip"), "_")
		if len(parts) != 4 || parts[0] != "v0.1.0" || parts[1] != "x5.0" || parts[2]+"_"+parts[3] != platform {
			t.Errorf("%s parses as %q", name, parts)
		}
		zb, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if h := sha256.Sum256(zb); hex.EncodeToString(h[:]) != sum {
			t.Errorf("%s: SHA256SUMS says %s", name, sum)
		}
		zr, err := zip.OpenReader(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(zr.File) != 1 || zr.File[0].Name != strings.TrimSuffix(name, ".zip") || zr.File[0].Mode().Perm() != 0o755 {
			t.Errorf("%s holds %v", name, zr.File)
		} else {
			rc, _ := zr.File[0].Open()
			b, _ := io.ReadAll(rc)
			rc.Close()
			if string(b) != body {
				t.Errorf("%s: the binary's bytes differ", name)
			}
		}
		zr.Close()
	}
	// Reproducible: the same binary and SOURCE_DATE_EPOCH, the same zip.
	if err := run("imgforge", plugin, out, []string{"linux_amd64=" + plugin}, "1700000000"); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(out, "packer-plugin-imgforge_v0.1.0_x5.0_linux_amd64.zip")); string(again) != string(first) {
		t.Error("a second release wrote other bytes")
	}

	for _, tc := range []struct {
		platforms []string
		want      string
	}{
		{[]string{"linux-amd64=" + plugin}, "expected OS_ARCH=BINARY"},
		{[]string{"linux_amd64=" + filepath.Join(dir, "none")}, "reading the plugin binary"},
		{nil, "usage"},
	} {
		if err := run("imgforge", plugin, out, tc.platforms, ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.platforms, err, tc.want)
		}
	}
}
