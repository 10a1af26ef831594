package imgforge

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// TestNewArtifact reads an output folder as the builder writes it: the
// files of SHA256SUMS, written by imagemeta as the builder does, and
// SHA256SUMS itself from the result.
func TestNewArtifact(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"lb.raw": "disk", "manifest.json": "{}\n", "oci/index.json": "{}"}
	sums := map[string]string{}
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(data))
		sums[name] = hex.EncodeToString(sum[:])
	}
	sumsFile := imagemeta.MarshalSums(sums)
	if err := os.WriteFile(filepath.Join(dir, imagemeta.SumsName), sumsFile, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(sumsFile)
	r := &imagemeta.Result{Role: "lb", ImageDigest: "sha256:c", PlanDigest: "sha256:b", Dir: dir, Artifacts: []imagemeta.Output{
		{Path: filepath.Join(dir, imagemeta.SumsName), Format: "sha256sums", Digest: "sha256:" + hex.EncodeToString(sum[:])},
	}}
	a, err := newArtifact(r)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "SHA256SUMS"), filepath.Join(dir, "lb.raw"), filepath.Join(dir, "manifest.json"), filepath.Join(dir, "oci", "index.json")}
	if got := a.Files(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	digests := a.State("digests").(map[string]string)
	for _, f := range want {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		if digests[f] != "sha256:"+hex.EncodeToString(s[:]) {
			t.Errorf("digest of %s: %s", f, digests[f])
		}
	}
	if a.Id() != "sha256:c" || a.State("plan_digest") != "sha256:b" {
		t.Errorf("Id %s, plan digest %v", a.Id(), a.State("plan_digest"))
	}

	if err := os.WriteFile(filepath.Join(dir, imagemeta.SumsName), []byte("xyz  lb.raw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := newArtifact(r); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a broken SHA256SUMS: %v", err)
	}
}
