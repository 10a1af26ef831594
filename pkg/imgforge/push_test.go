package imgforge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// TestBootFiles: push --boot-from takes the bootable artefacts of a
// build only when that build is of the image pushed.
func TestBootFiles(t *testing.T) {
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "pxe"), 0o755)
	for _, f := range []string{"pxe/vmlinuz", "pxe/initrd.img", "pxe/root.img"} {
		os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644)
	}
	for _, tc := range []struct{ digest, err string }{
		{d.String(), ""},
		{"sha256:" + strings.Repeat("0", 64), "not of the one pushed"},
	} {
		b, _ := (&imagemeta.Manifest{Role: "lb", ImageDigest: tc.digest}).Marshal()
		os.WriteFile(filepath.Join(dir, imagemeta.ManifestName), b, 0o644)
		files, err := bootFiles(dir, img)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.digest, err, tc.err)
			}
			continue
		}
		if err != nil || len(files) != 4 {
			t.Errorf("%v %v", files, err)
		}
	}
}
