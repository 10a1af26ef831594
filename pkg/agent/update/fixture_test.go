package update

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// The test disk: 512-byte sectors, in MiB: ESP 1, root-a 1, verity-a
// 1, root-b 1, verity-b 1, state 1. It is written with go-diskfs, as
// the build writes its disks, so that the reader here is checked
// against another writer.
const (
	testDiskSize = 8 << 20
	mib          = 2048 // sectors
	testBlocks   = 150  // data blocks of a test root: a two-level tree
)

// testImage is a built image as a set folder holds it.
type testImage struct {
	dir      string
	manifest imagemeta.Manifest
	data     []byte // the root's data blocks
	tree     []byte
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// makeImage writes a set (manifest.json, vmlinuz, initrd.img,
// overlay.cpio, root.img) of role with contents drawn from seed.
func makeImage(t *testing.T, role string, seed int64) *testImage {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	dir := t.TempDir()
	im := &testImage{dir: dir, data: make([]byte, testBlocks*BlockSize)}
	rng.Read(im.data)
	saltB := make([]byte, 32)
	rng.Read(saltB)
	salt := hex.EncodeToString(saltB)
	h, _ := newVerityHasher(salt)
	for off := 0; off < len(im.data); off += BlockSize {
		h.block(im.data[off : off+BlockSize])
	}
	root, tree := h.sum()
	im.tree = tree
	files := map[string][]byte{RootFile: append(append([]byte{}, im.data...), tree...)}
	esp := map[string]string{}
	for _, f := range []string{KernelFile, InitrdFile, OverlayFile} {
		b := make([]byte, 3000+rng.Intn(3000))
		rng.Read(b)
		files[f] = b
		esp["/imgforge/a/"+f] = "sha256:" + sum(b)
	}
	digest := make([]byte, 32)
	rng.Read(digest)
	ru, vu := partUUIDs(root)
	im.manifest = imagemeta.Manifest{
		Role: role, Image: role, ImageDigest: "sha256:" + hex.EncodeToString(digest),
		Disk: &imagemeta.Disk{
			Verity: imagemeta.Verity{RootHash: root, Salt: salt, DataBlocks: testBlocks},
			Cmdline: fmt.Sprintf("console=ttyS0 boot=imgforge imgforge.slot=a imgforge.root=PARTUUID=%s imgforge.verity=PARTUUID=%s "+
				"imgforge.roothash=%s imgforge.salt=%s imgforge.blocks=%d imgforge.hashstart=0 imgforge.overlayhash=%s "+
				"imgforge.overlaysalt=00 imgforge.overlayblocks=3 imgforge.state=PARTUUID=11111111-2222-4333-8444-555555555555 quiet",
				ru, vu, root, salt, testBlocks, strings.Repeat("ab", 32)),
			ESPFiles: esp,
		},
	}
	mj, err := im.manifest.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	files[ManifestFile] = mj
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return im
}

func (im *testImage) version() string {
	return strings.TrimPrefix(im.manifest.ImageDigest, "sha256:")[:12]
}

// makeDisk writes a disk with im in slot a and slot b empty, and an ESP
// folder as the build leaves it.
func makeDisk(t *testing.T, im *testImage) (disk, esp string) {
	t.Helper()
	disk = filepath.Join(t.TempDir(), "disk.raw")
	d, err := diskfs.Create(disk, testDiskSize, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	ru, vu := partUUIDs(im.manifest.Disk.Verity.RootHash)
	label := SlotLabel(im.manifest.Role, im.version())
	part := func(i int, ty, name, guid string) *gpt.Partition {
		start := uint64(mib * i)
		return &gpt.Partition{Index: i, Start: start, End: start + mib - 1, Type: gpt.Type(ty), Name: name, GUID: guid}
	}
	table := &gpt.Table{
		LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true,
		GUID: "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE",
		Partitions: []*gpt.Partition{
			part(1, TypeESP, "esp", "10000000-0000-4000-8000-000000000001"),
			part(2, TypeRoot, label, ru.String()),
			part(3, TypeVerity, label, vu.String()),
			part(4, TypeRoot, EmptyLabel, "10000000-0000-4000-8000-000000000004"),
			part(5, TypeVerity, EmptyLabel, "10000000-0000-4000-8000-000000000005"),
			part(6, TypeVar, "imgforge-state", "11111111-2222-4333-8444-555555555555"),
		},
	}
	if err := d.Partition(table); err != nil {
		t.Fatal(err)
	}
	d.Close()
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(im.data, 2*mib*512); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(im.tree, 3*mib*512); err != nil {
		t.Fatal(err)
	}
	esp = t.TempDir()
	for _, d := range []string{"loader/entries", "imgforge/a", "EFI/BOOT"} {
		if err := os.MkdirAll(filepath.Join(esp, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, b []byte) {
		if err := os.WriteFile(filepath.Join(esp, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("EFI/BOOT/BOOTX64.EFI", []byte("systemd-boot"))
	write("loader/loader.conf", []byte("default imgforge-*\ntimeout 0\neditor no\n"))
	write("loader/entries/imgforge-0001-a.conf", []byte(entryText(im.manifest.Role, im.version(), "a", 1, true, "boot=imgforge imgforge.slot=a")))
	for _, f := range []string{KernelFile, InitrdFile, OverlayFile} {
		b, err := os.ReadFile(filepath.Join(im.dir, f))
		if err != nil {
			t.Fatal(err)
		}
		write("imgforge/a/"+f, b)
	}
	return disk, esp
}

// serveSet serves im's set folder as imgforge serve does (a folder of
// files over HTTP, with Content-Length).
func serveSet(t *testing.T, im *testImage) string {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(im.dir)))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// snapshot is what must not change on the active side: the bytes of
// the active slot's partitions, its GPT entries, and the ESP's files
// (path -> sha256).
type snapshot struct {
	root, verity string
	entries      string
	esp          map[string]string
}

func takeSnapshot(t *testing.T, disk, esp, slot string) snapshot {
	t.Helper()
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	g := readTestGPT(t, disk)
	l, err := ReadLayout(g)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := l.Slot(slot)
	part := func(p Partition) string { return sum(b[p.Offset(512) : p.Offset(512)+p.Size(512)]) }
	return snapshot{root: part(s.Root), verity: part(s.Verity),
		entries: fmt.Sprintf("%+v %+v", s.Root, s.Verity), esp: espFiles(t, esp)}
}

func espFiles(t *testing.T, esp string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(esp, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(esp, p)
		out[filepath.ToSlash(rel)] = sum(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readTestGPT reads the disk's GPT with this package's reader and checks
// that go-diskfs reads the same table (so the CRCs are right).
func readTestGPT(t *testing.T, disk string) *GPT {
	t.Helper()
	g, err := readDiskGPT(disk)
	if err != nil {
		t.Fatal(err)
	}
	if g.BackupStale {
		t.Errorf("the backup GPT entries are stale")
	}
	raw, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	at := func(h []byte) []byte {
		off := int64(binary.LittleEndian.Uint64(h[72:])) * g.Sector
		return raw[off : off+int64(len(g.entries))]
	}
	if !bytes.Equal(at(g.primary), at(g.backup)) {
		t.Errorf("the backup GPT entries differ from the primary ones")
	}
	d, err := diskfs.Open(disk, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tb, err := d.GetPartitionTable()
	if err != nil {
		t.Fatalf("go-diskfs reads no table: %v", err)
	}
	gt := tb.(*gpt.Table)
	for _, p := range g.Partitions {
		q := gt.Partitions[p.Index-1]
		if !strings.EqualFold(q.GUID, p.UUID.String()) || q.Name != p.Label {
			t.Errorf("partition %d: go-diskfs reads %s %q, this reader %s %q", p.Index, q.GUID, q.Name, p.UUID, p.Label)
		}
	}
	return g
}
