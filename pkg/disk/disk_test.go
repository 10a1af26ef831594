package disk

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/imgforge/imgforge/pkg/boot"
)

const testHash = "f7308cce7c040bae6af8be81db336dd10b19ea6352c1a67d978e4cd7124a50d8"

func fakeLayout(t *testing.T, size int64) Layout {
	t.Helper()
	dir := t.TempDir()
	root, ver := filepath.Join(dir, "root"), filepath.Join(dir, "verity")
	os.WriteFile(root, bytes.Repeat([]byte{0xab}, 3*1024*1024), 0o644)
	os.WriteFile(ver, bytes.Repeat([]byte{0xcd}, 8192), 0o644)
	return Layout{
		Size: size, ESPSize: 40 << 20, Root: root, Verity: ver, RootHash: testHash, Seed: "sha256:seed", Epoch: 1735689600,
		ESPFiles: boot.ESP([]byte("loader"), boot.Slot{Name: "a", Gen: 1, Title: "imgforge test", Cmdline: "console=ttyS0 boot=imgforge", Kernel: []byte("kernel"), Initrd: []byte("initrd")}),
	}
}

func TestPlaceTooSmall(t *testing.T) {
	l := fakeLayout(t, 64<<20)
	_, err := l.Place()
	if !errors.Is(err, ErrTooSmall) {
		t.Fatalf("err = %v, want ErrTooSmall", err)
	}
	for _, want := range []string{"the disk size 64MiB (disk.size in the image definition) cannot hold the root filesystem", "it needs at least 110MiB"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestIDs(t *testing.T) {
	l := fakeLayout(t, 1<<30)
	ids, err := l.IDs()
	if err != nil {
		t.Fatal(err)
	}
	// The root and verity partitions are named by the root hash, as the
	// Discoverable Partitions Specification suggests.
	if ids.Root != "F7308CCE-7C04-4BAE-AAF8-BE81DB336DD1" || ids.Verity != "0B19EA63-52C1-467D-978E-4CD7124A50D8" {
		t.Errorf("ids %+v", ids)
	}
	l.RootHash = "xyz"
	if _, err := l.IDs(); err == nil {
		t.Error("a bad root hash gave no error")
	}
}

func TestWriteRaw(t *testing.T) {
	l := fakeLayout(t, 256<<20)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
	ids, err := WriteRaw(context.Background(), a, l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := WriteRaw(context.Background(), b, l); err != nil {
		t.Fatal(err)
	}
	da, _ := os.ReadFile(a)
	db, _ := os.ReadFile(b)
	if !bytes.Equal(da, db) {
		t.Error("two writes of the same layout differ")
	}
	fh, _ := os.Open(a)
	defer fh.Close()
	table, err := gpt.Read(file.New(fh, true), 512, 512)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ typ, guid string }{{TypeESP, ids.ESP}, {TypeRoot, ids.Root}, {TypeRootVerity, ids.Verity}, {TypeVar, ids.State}}
	if len(table.Partitions) != 4 {
		t.Fatalf("%d partitions", len(table.Partitions))
	}
	for i, p := range table.Partitions {
		if !strings.EqualFold(string(p.Type), want[i].typ) || !strings.EqualFold(p.GUID, want[i].guid) {
			t.Errorf("partition %d: type %s guid %s, want %+v", i+1, p.Type, p.GUID, want[i])
		}
	}
	// The root is in its partition byte for byte.
	root, _ := os.ReadFile(l.Root)
	start := int64(table.Partitions[1].Start) * 512
	if !bytes.Equal(da[start:start+int64(len(root))], root) {
		t.Error("the root partition does not hold the root filesystem")
	}
	// The ESP is a sound FAT file system.
	if _, err := exec.LookPath("fsck.vfat"); err == nil {
		esp := filepath.Join(dir, "esp")
		s, e := int64(table.Partitions[0].Start)*512, int64(table.Partitions[0].End+1)*512
		os.WriteFile(esp, da[s:e], 0o644)
		if out, err := exec.Command("fsck.vfat", "-n", esp).CombinedOutput(); err != nil {
			t.Errorf("fsck.vfat: %v\n%s", err, out)
		}
	}
}
