package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/verify/verifytest"
)

func TestVerify(t *testing.T) {
	verifytest.NeedTools(t, true)
	// OUT/test/ holds test.raw and its manifest, as imgforge build
	// leaves them; iso/ an ISO and its manifest.
	out := t.TempDir()
	roleDir := filepath.Join(out, "test")
	os.Mkdir(roleDir, 0o755)
	raw := verifytest.Raw(t, roleDir)
	isoOut := t.TempDir()
	os.Mkdir(filepath.Join(isoOut, "test"), 0o755)
	iso := verifytest.ISO(t, filepath.Join(isoOut, "test"))
	bad := raw.Copy(t, t.TempDir())
	bad.EditManifest(t, func(m *imagemeta.Manifest) { m.Disk.Cmdline += " quiet" })
	qcow2 := filepath.Join(roleDir, "test.qcow2") // findImage only needs it to exist
	os.WriteFile(qcow2, []byte("QFI"), 0o644)
	elsewhere := filepath.Join(t.TempDir(), "lb.manifest.json")
	if b, err := os.ReadFile(raw.Manifest); err != nil || os.WriteFile(elsewhere, b, 0o644) != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		args   []string
		stdout []string // regexps
		err    string   // in the error; empty: none
	}{
		{"role", []string{"verify", "--output-dir", out, "test"},
			[]string{`(?m)^` + regexp.QuoteMeta(raw.Path) + ` \(manifest ` + regexp.QuoteMeta(raw.Manifest) + `\)$`, `(?m)^  ok\s+dm-verity\s+76 blocks match root hash`, `(?m)^all 17 checks passed$`}, ""},
		{"raw path", []string{"verify", raw.Path}, []string{`(?m)^  ok\s+loader-entry\s+options equal the manifest's cmdline$`}, ""},
		{"manifest elsewhere", []string{"verify", raw.Path, "--manifest", elsewhere}, []string{`manifest ` + regexp.QuoteMeta(elsewhere)}, ""},
		{"iso", []string{"verify", iso.Path}, []string{`(?m)^  ok\s+el-torito\s+volume IMGFORGE_TEST`, `(?m)^  ok\s+bios-entry\s+ISOLINUX boots /imgforge/vmlinuz 11 B and /imgforge/initrd.img 11 B and /imgforge/overlay.cpio 17 B;`, `(?m)^all 13 checks passed$`}, ""},
		{"iso of a role", []string{"verify", "--output-dir", isoOut, "--format", "iso", "test"}, []string{`(?m)^all 13 checks passed$`}, ""},
		{"no iso of a role", []string{"verify", "--output-dir", out, "--format", "iso", "test"}, nil,
			"image " + filepath.Join(out, "test", "test.iso") + " not found: build role test first"},
		{"failed check", []string{"verify", bad.Path},
			[]string{`(?m)^  FAILED\s+loader-entry\s+the loader entry's options differ from the manifest's cmdline: word 11: missing "quiet"$`, `(?m)^1 of 17 checks failed$`},
			bad.Path + `: verification failed: loader-entry: the loader entry's options differ from the manifest's cmdline: word 11: missing "quiet"`},
		{"no such role", []string{"verify", "--output-dir", out, "nope"}, nil, "image " + filepath.Join(out, "nope", "nope.raw") + " not found: build role nope first"},
		{"qcow2", []string{"verify", "--output-dir", out, "--format", "qcow2", "test"}, nil, "image " + qcow2 + ": verify reads raw disks and ISOs, not qcow2"},
		{"no manifest", []string{"verify", raw.Path, "--manifest", filepath.Join(out, "nope.json")}, nil,
			"verifying " + raw.Path + ": reading the manifest: open " + filepath.Join(out, "nope.json")},
		{"bad output", []string{"verify", "-o", "yaml", raw.Path}, nil, `--output "yaml": accepted: text, json`},
		{"no args", []string{"verify"}, nil, "accepts 1 arg(s), received 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, _, err := runCLI(t, nil, tt.args...)
			if tt.err == "" && err != nil {
				t.Fatalf("error %v\n%s", err, stdout)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || strings.Contains(err.Error(), "\n")) {
				t.Fatalf("error %v\nwant one line containing %q", err, tt.err)
			}
			for _, re := range tt.stdout {
				if !regexp.MustCompile(re).MatchString(stdout) {
					t.Errorf("output does not match %s:\n%s", re, stdout)
				}
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		stdout, _, err := runCLI(t, nil, "verify", "-o", "json", bad.Path)
		if err == nil {
			t.Fatal("no error for a failed check")
		}
		var r struct {
			Image  string
			Format string
			OK     bool
			Checks []struct {
				Name   string
				OK     bool
				Reason string
			}
		}
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("%v:\n%s", err, stdout)
		}
		if r.Image != bad.Path || r.Format != "raw" || r.OK || len(r.Checks) != 17 {
			t.Errorf("report %+v", r)
		}
		for _, c := range r.Checks {
			if c.OK == (c.Name == "loader-entry") {
				t.Errorf("check %s: ok %v", c.Name, c.OK)
			}
		}
	})
}
