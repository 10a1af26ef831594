package build

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestConvertDiskReproducible converts one raw disk twice to each format:
// the bytes must be the same, and qemu-img must read back the raw content.
func TestConvertDiskReproducible(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (apt-get install qemu-utils)")
	}
	dir := t.TempDir()
	raw := filepath.Join(dir, "d.raw")
	data := make([]byte, 8<<20)
	for i := range data {
		if i%4096 < 64 {
			data[i] = byte(i / 4096)
		}
	}
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"qcow2", "vmdk"} {
		var got [2][]byte
		for i := range got {
			// The same name, in two folders: a vmdk names its own file.
			out := filepath.Join(dir, f+string(rune('a'+i)), "d."+f)
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := convertDisk(context.Background(), raw, out, f, "sha256:1234"); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			got[i] = b
			if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", f, raw, out).CombinedOutput(); err != nil {
				t.Fatalf("%s: qemu-img compare: %v: %s", f, err, out)
			}
		}
		if !bytes.Equal(got[0], got[1]) {
			t.Errorf("%s: two conversions of the same disk differ", f)
		}
		if f == "vmdk" && !bytes.Contains(got[0], []byte("\nCID=")) {
			t.Errorf("vmdk: no CID in the descriptor")
		}
	}
	if err := convertDisk(context.Background(), raw, filepath.Join(dir, "x.vdi"), "vdi", ""); err == nil {
		t.Error("vdi: want an error naming the accepted formats")
	}
}
