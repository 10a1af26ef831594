package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestManPages(t *testing.T) {
	write := func() string {
		dir := filepath.Join(t.TempDir(), "man")
		if _, _, err := runCLI(t, map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}, "man", "--dir", dir); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	a, b := write(), write()
	for _, page := range []string{"imgforge.1", "imgforge-build.1", "imgforge-cache-prune.1", "imgforge-doctor.1", "imgforge-version.1"} {
		pa, err := os.ReadFile(filepath.Join(a, page))
		if err != nil {
			t.Fatal(err)
		}
		pb, _ := os.ReadFile(filepath.Join(b, page))
		if string(pa) != string(pb) {
			t.Errorf("%s differs between two runs", page)
		}
		if !strings.Contains(string(pa), `.TH "IMGFORGE" "1" "Nov 2023" "imgforge `) {
			t.Errorf("%s: header:\n%.300s", page, pa)
		}
	}
	build, _ := os.ReadFile(filepath.Join(a, "imgforge-build.1"))
	for _, want := range []string{`\fB--no-cache\fP`, `\fB--progress\fP="auto"`, "Build the images of one or more roles"} {
		if !strings.Contains(string(build), want) {
			t.Errorf("imgforge-build.1 lacks %q", want)
		}
	}
	if _, err := os.Stat(filepath.Join(a, "imgforge-man.1")); err == nil {
		t.Error("the hidden man command has a page")
	}
	if _, _, err := runCLI(t, nil, "man"); err == nil || !strings.Contains(err.Error(), "--dir DIR is required") {
		t.Errorf("man without --dir: %v", err)
	}
}
