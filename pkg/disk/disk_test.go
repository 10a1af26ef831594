package disk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"

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
		Size: size, ESPSize: 40 << 20, SlotSize: 8 << 20, Root: root, Verity: ver, RootHash: testHash, Label: "lb_0123456789ab", Seed: "sha256:seed", Epoch: 1735689600,
		ESPFiles: boot.ESP([]byte("loader"), boot.Slot{Name: "a", Gen: 1, Title: "imgforge test", Cmdline: "console=ttyS0 boot=imgforge", Kernel: []byte("kernel"), Initrd: []byte("initrd")}),
	}
}

func TestPlaceTooSmall(t *testing.T) {
	l := fakeLayout(t, 64<<20)
	_, err := l.Place()
	if !errors.Is(err, ErrTooSmall) {
		t.Fatalf("err = %v, want ErrTooSmall", err)
	}
	// ESP 40 + 2 x (8 + 1) + state 64, with 1 MiB before and after.
	for _, want := range []string{"the disk size 64MiB (disk.size in the image definition) cannot hold the two slots", "it needs at least 124MiB", "two slots of 8MiB with a hash tree of 1MiB each"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestPlaceSlotTooSmall(t *testing.T) {
	for _, c := range []struct {
		slot int64
		want string
	}{
		{2 << 20, "the slot size 2MiB cannot hold the root filesystem of 3MiB: make it at least 3MiB"},
		{3<<20 + 512, "the slot size 3146240 bytes is not a positive number of MiB"},
	} {
		l := fakeLayout(t, 1<<30)
		l.SlotSize = c.slot
		_, err := l.Place()
		if !errors.Is(err, ErrSlotTooSmall) || errors.Is(err, ErrTooSmall) || err.Error() != c.want {
			t.Errorf("slot %d: err = %v, want ErrSlotTooSmall %q", c.slot, err, c.want)
		}
	}
	// The default slot size is 512 MiB, and both slots count against the disk.
	l := fakeLayout(t, 1<<30)
	l.SlotSize = 0
	if _, err := l.Place(); !errors.Is(err, ErrTooSmall) {
		t.Errorf("two default slots on 1GiB: err = %v, want ErrTooSmall", err)
	}
	l.Size = 2 << 30
	pl, err := l.Place()
	if err != nil {
		t.Fatal(err)
	}
	if got := int64(pl.RootB[1]-pl.RootB[0]+1) * 512; got != DefaultSlotSize || pl.Root[1]-pl.Root[0] != pl.RootB[1]-pl.RootB[0] || pl.Verity[1]-pl.Verity[0] != pl.VerityB[1]-pl.VerityB[0] {
		t.Errorf("plan %+v: the slots differ or are not 512MiB", pl)
	}
	if pl.StateSize() != (2<<30)-(1<<20)-int64(pl.State[0])*512 {
		t.Errorf("state partition of %d bytes does not reach the backup GPT", pl.StateSize())
	}
}

func TestVeritySize(t *testing.T) {
	// 512 MiB: 131072 blocks, hashed into 1024 + 8 + 1 blocks.
	for _, c := range []struct{ slot, want int64 }{{512 << 20, 5 << 20}, {8 << 20, 1 << 20}, {4096, 1 << 20}, {4 << 30, 33 << 20}} {
		if got := VeritySize(c.slot); got != c.want {
			t.Errorf("VeritySize(%d) = %d, want %d", c.slot, got, c.want)
		}
	}
	// veritysetup agrees: its tree of a full slot fits.
	if _, err := exec.LookPath("veritysetup"); err != nil {
		t.Skip("veritysetup is not installed")
	}
	dir := t.TempDir()
	data, hash := filepath.Join(dir, "data"), filepath.Join(dir, "hash")
	const slot = 64 << 20
	if err := os.WriteFile(data, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(data, slot)
	if out, err := exec.Command("veritysetup", "format", "--no-superblock", "--hash=sha256", "--data-block-size=4096", "--hash-block-size=4096", data, hash).CombinedOutput(); err != nil {
		t.Fatalf("veritysetup: %v\n%s", err, out)
	}
	fi, err := os.Stat(hash)
	if err != nil {
		t.Fatal(err)
	}
	if v := VeritySize(slot); fi.Size() > v || fi.Size() <= v-(1<<20) {
		t.Errorf("veritysetup's tree of %d bytes has %d bytes; VeritySize says %d", slot, fi.Size(), v)
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

// stateFS makes the state file system of l's plan with MakeState.
func stateFS(t *testing.T, l *Layout) {
	t.Helper()
	if _, err := exec.LookPath("mke2fs"); err != nil {
		t.Skip("mke2fs is not installed (e2fsprogs)")
	}
	pl, err := l.Place()
	if err != nil {
		t.Fatal(err)
	}
	ids, err := l.IDs()
	if err != nil {
		t.Fatal(err)
	}
	l.State = filepath.Join(t.TempDir(), "state.ext4")
	if err := MakeState(context.Background(), l.State, pl.StateSize(), ids.StateFS, l.Epoch); err != nil {
		t.Fatal(err)
	}
	// The file system fills its partition: block count times block size
	// in its superblock.
	sb := make([]byte, 1024)
	fh, err := os.Open(l.State)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.ReadAt(sb, 1024); err != nil {
		t.Fatal(err)
	}
	blocks := uint64(binary.LittleEndian.Uint32(sb[4:])) | uint64(binary.LittleEndian.Uint32(sb[0x150:]))<<32
	if size := blocks << (10 + binary.LittleEndian.Uint32(sb[24:])); int64(size) != pl.StateSize() {
		t.Fatalf("the state file system has %d bytes; its partition %d", size, pl.StateSize())
	}
}

func TestWriteRaw(t *testing.T) {
	l := fakeLayout(t, 256<<20)
	stateFS(t, &l)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.raw"), filepath.Join(dir, "b.raw")
	ids, err := WriteRaw(context.Background(), a, l)
	if err != nil {
		t.Fatal(err)
	}
	// Same inputs, same bytes: the state file system made again too.
	stateFS(t, &l)
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
	want := []struct{ typ, guid, name string }{
		{TypeESP, ids.ESP, "esp"},
		{TypeRoot, ids.Root, "lb_0123456789ab"}, {TypeRootVerity, ids.Verity, "lb_0123456789ab"},
		{TypeRoot, ids.RootB, "_empty"}, {TypeRootVerity, ids.VerityB, "_empty"},
		{TypeVar, ids.State, "imgforge-state"},
	}
	if len(table.Partitions) != len(want) {
		t.Fatalf("%d partitions", len(table.Partitions))
	}
	for i, p := range table.Partitions {
		if !strings.EqualFold(string(p.Type), want[i].typ) || !strings.EqualFold(p.GUID, want[i].guid) || p.Name != want[i].name {
			t.Errorf("partition %d: type %s guid %s name %q, want %+v", i+1, p.Type, p.GUID, p.Name, want[i])
		}
	}
	if p2, p4 := table.Partitions[1], table.Partitions[3]; p2.Size != p4.Size || p2.Size != 8<<20 || table.Partitions[2].Size != table.Partitions[4].Size {
		t.Errorf("the slots differ: root-a %d, root-b %d bytes", p2.Size, p4.Size)
	}
	// The root is in its partition byte for byte.
	root, _ := os.ReadFile(l.Root)
	start := int64(table.Partitions[1].Start) * 512
	if !bytes.Equal(da[start:start+int64(len(root))], root) {
		t.Error("the root partition does not hold the root filesystem")
	}
	// Slot B is zeros and unwritten: the file has no data there.
	for _, p := range table.Partitions[3:5] {
		s, e := int64(p.Start)*512, int64(p.End+1)*512
		if !allZero(da[s:e]) {
			t.Errorf("slot B partition %d is not zeros", p.Index)
		}
		if next, err := unix.Seek(int(fh.Fd()), s, unix.SEEK_DATA); err == nil && next < e {
			t.Errorf("slot B partition %d has data written at %d", p.Index, next)
		}
	}
	// The whole disk is sparse: far less is allocated than its size.
	var st unix.Stat_t
	if err := unix.Stat(a, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 60<<20 {
		t.Errorf("the 256MiB disk allocates %d bytes", used)
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
	// The state partition is a sound, empty ext4 named as the manifest says.
	sp := table.Partitions[5]
	state := filepath.Join(dir, "state")
	os.WriteFile(state, da[int64(sp.Start)*512:int64(sp.End+1)*512], 0o644)
	if out, err := exec.Command("e2fsck", "-fn", state).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
	out, err := exec.Command("dumpe2fs", "-h", state).CombinedOutput()
	if err != nil {
		t.Fatalf("dumpe2fs: %v\n%s", err, out)
	}
	for _, w := range []string{"Filesystem volume name:   imgforge-state", "Filesystem UUID:          " + strings.ToLower(ids.StateFS), "Inode count:", "metadata_csum"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("dumpe2fs lacks %q:\n%s", w, out)
		}
	}
}

func TestWriteRawChecks(t *testing.T) {
	l := fakeLayout(t, 256<<20)
	l.Label = "root-x86-64"
	if _, err := WriteRaw(context.Background(), filepath.Join(t.TempDir(), "x.raw"), l); err == nil || !strings.Contains(err.Error(), "is not ROLE_VERSION") {
		t.Errorf("a label with no version: err = %v", err)
	}
	l = fakeLayout(t, 256<<20)
	l.State = l.Verity // not the state partition's size
	path := filepath.Join(t.TempDir(), "x.raw")
	if _, err := WriteRaw(context.Background(), path, l); err == nil || !strings.Contains(err.Error(), "its partition") {
		t.Errorf("a state file system of the wrong size: err = %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("a failed write left %s", path)
	}
}
