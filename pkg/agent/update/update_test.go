package update

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/internal/testtool"
	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

func update(t *testing.T, src, disk, esp, active string) (*Result, error) {
	t.Helper()
	s, err := NewSource(src, nil)
	if err != nil {
		t.Fatal(err)
	}
	return Update(context.Background(), Options{Source: s, Disk: disk, Active: active, ESP: esp, Logf: t.Logf})
}

func entryNames(t *testing.T, esp string) []string {
	t.Helper()
	es, err := Entries(esp)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

// checkSlot checks that slot holds im: its partitions' bytes, labels and
// PARTUUIDs, its kernel set, and its loader entry.
func checkSlot(t *testing.T, disk, esp, slot string, im *testImage, entry string) {
	t.Helper()
	g := readTestGPT(t, disk)
	l, err := ReadLayout(g)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := l.Slot(slot)
	b, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[s.Root.Offset(512):s.Root.Offset(512)+int64(len(im.data))], im.data) {
		t.Errorf("slot %s's root does not hold the new root", slot)
	}
	if !bytes.Equal(b[s.Verity.Offset(512):s.Verity.Offset(512)+int64(len(im.tree))], im.tree) {
		t.Errorf("slot %s's verity partition does not hold the new hash tree", slot)
	}
	ru, vu := partUUIDs(im.manifest.Disk.Verity.RootHash)
	label := im.manifest.Role + "_" + im.version()
	if s.Root.UUID != ru || s.Verity.UUID != vu || s.Root.Label != label || s.Verity.Label != label {
		t.Errorf("slot %s: partitions %s %q and %s %q, want %s and %s labelled %q", slot, s.Root.UUID, s.Root.Label, s.Verity.UUID, s.Verity.Label, ru, vu, label)
	}
	for _, f := range []string{KernelFile, InitrdFile, OverlayFile} {
		got, err := os.ReadFile(filepath.Join(esp, "imgforge", slot, f))
		want, _ := os.ReadFile(filepath.Join(im.dir, f))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("ESP imgforge/%s/%s: %v, or not the set's", slot, f, err)
		}
	}
	text, err := os.ReadFile(filepath.Join(esp, "loader/entries", entry))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"title imgforge lb " + im.version() + " (slot " + slot + ")\n",
		"linux /imgforge/" + slot + "/vmlinuz\n", "initrd /imgforge/" + slot + "/initrd.img\ninitrd /imgforge/" + slot + "/overlay.cpio\n",
		"options console=ttyS0 boot=imgforge imgforge.slot=" + slot + " imgforge.root=PARTUUID=" + strings.ToLower(ru.String()) +
			" imgforge.verity=PARTUUID=" + strings.ToLower(vu.String()) + " imgforge.roothash=" + im.manifest.Disk.Verity.RootHash +
			" imgforge.salt=" + im.manifest.Disk.Verity.Salt + " imgforge.blocks=150 imgforge.hashstart=0 imgforge.overlayhash=",
		" imgforge.state=PARTUUID=" + strings.ToLower(l.State.UUID.String()) + " quiet panic=30\n",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("entry %s lacks %q:\n%s", entry, want, text)
		}
	}
}

func TestUpdateWritesInactiveSlot(t *testing.T) {
	v1, v2 := makeImage(t, "lb", 1), makeImage(t, "lb", 2)
	disk, esp := makeDisk(t, v1)
	before := takeSnapshot(t, disk, esp, "a")
	res, err := update(t, serveSet(t, v2), disk, esp, "a")
	if err != nil {
		t.Fatal(err)
	}
	if res.Slot != "b" || res.Entry != "imgforge-0002-b+3.conf" || res.Version != v2.version() {
		t.Errorf("result %+v", res)
	}
	checkSlot(t, disk, esp, "b", v2, res.Entry)
	after := takeSnapshot(t, disk, esp, "a")
	if after.root != before.root || after.verity != before.verity || after.entries != before.entries {
		t.Errorf("the active slot changed: %+v -> %+v", before, after)
	}
	for p, s := range before.esp {
		if after.esp[p] != s {
			t.Errorf("ESP file %s of the active slot changed", p)
		}
	}
	if got := entryNames(t, esp); strings.Join(got, " ") != "imgforge-0001-a.conf imgforge-0002-b+3.conf" {
		t.Errorf("entries %v", got)
	}
}

// cutServer serves im's set but drops the connection half way through
// root.img.
func cutServer(t *testing.T, im *testImage) string {
	t.Helper()
	files := http.FileServer(http.Dir(im.dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/"+RootFile) {
			files.ServeHTTP(w, r)
			return
		}
		b, _ := os.ReadFile(filepath.Join(im.dir, RootFile))
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// TestUpdateInterrupted cuts the download of the root half way: the
// node must still boot its current slot. On a freshly built disk the
// ESP is left exactly as it was; after an earlier update, the slot
// being written loses its old entry (it is written over) and the active
// slot keeps its own.
func TestUpdateInterrupted(t *testing.T) {
	v1, v2, v3 := makeImage(t, "lb", 1), makeImage(t, "lb", 2), makeImage(t, "lb", 3)
	t.Run("fresh disk", func(t *testing.T) {
		disk, esp := makeDisk(t, v1)
		before := takeSnapshot(t, disk, esp, "a")
		_, err := update(t, cutServer(t, v2), disk, esp, "a")
		if err == nil {
			t.Fatal("an update whose download broke succeeded")
		}
		t.Logf("error: %v", err)
		after := takeSnapshot(t, disk, esp, "a")
		if after.root != before.root || after.verity != before.verity || after.entries != before.entries {
			t.Errorf("the active slot changed")
		}
		if len(after.esp) != len(before.esp) {
			t.Errorf("ESP files %v, were %v", after.esp, before.esp)
		}
		for p, s := range before.esp {
			if after.esp[p] != s {
				t.Errorf("ESP file %s changed", p)
			}
		}
		if got := entryNames(t, esp); strings.Join(got, " ") != "imgforge-0001-a.conf" {
			t.Errorf("entries %v, want only the active one", got)
		}
	})
	t.Run("after an update", func(t *testing.T) {
		disk, esp := makeDisk(t, v1)
		if _, err := update(t, serveSet(t, v2), disk, esp, "a"); err != nil {
			t.Fatal(err)
		}
		// The node booted slot b; slot a is written next.
		before := takeSnapshot(t, disk, esp, "b")
		if _, err := update(t, cutServer(t, v3), disk, esp, "b"); err == nil {
			t.Fatal("an update whose download broke succeeded")
		}
		after := takeSnapshot(t, disk, esp, "b")
		if after.root != before.root || after.verity != before.verity || after.entries != before.entries {
			t.Errorf("the active slot changed")
		}
		if got := entryNames(t, esp); strings.Join(got, " ") != "imgforge-0002-b+3.conf" {
			t.Errorf("entries %v, want only the active slot's", got)
		}
		for p, s := range before.esp {
			if strings.HasPrefix(p, "imgforge/b/") && after.esp[p] != s {
				t.Errorf("ESP file %s of the active slot changed", p)
			}
		}
		g := readTestGPT(t, disk)
		if l, _ := ReadLayout(g); l.Slots[0].Root.Label != EmptyLabel {
			t.Errorf("the half-written slot a is labelled %q, want %q", l.Slots[0].Root.Label, EmptyLabel)
		}
	})
}

func TestUpdateRootHashMismatch(t *testing.T) {
	v1, v2 := makeImage(t, "lb", 1), makeImage(t, "lb", 2)
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T)
	}{
		{"data", func(t *testing.T) {
			p := filepath.Join(v2.dir, RootFile)
			b, _ := os.ReadFile(p)
			b[5000] ^= 1
			os.WriteFile(p, b, 0o644)
		}},
		{"manifest", func(t *testing.T) {
			m := v2.manifest
			d := *m.Disk
			d.Verity.RootHash = strings.Repeat("0", 64)
			m.Disk = &d
			b, _ := m.Marshal()
			os.WriteFile(filepath.Join(v2.dir, ManifestFile), b, 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v2 = makeImage(t, "lb", 2)
			tc.tamper(t)
			disk, esp := makeDisk(t, v1)
			before := takeSnapshot(t, disk, esp, "a")
			_, err := update(t, serveSet(t, v2), disk, esp, "a")
			if !errors.Is(err, ErrRootHash) {
				t.Fatalf("error %v, want %v", err, ErrRootHash)
			}
			after := takeSnapshot(t, disk, esp, "a")
			if after.root != before.root || after.verity != before.verity || after.entries != before.entries {
				t.Errorf("the active slot changed")
			}
			if got := entryNames(t, esp); strings.Join(got, " ") != "imgforge-0001-a.conf" {
				t.Errorf("entries %v", got)
			}
		})
	}
}

// TestUpdateTwice: v1 -> v2 -> v3 alternates the slots, the fallback is
// always the slot that ran, and the ESP never holds more than two
// entries or kernel sets.
func TestUpdateTwice(t *testing.T) {
	v1, v2, v3, v4 := makeImage(t, "lb", 1), makeImage(t, "lb", 2), makeImage(t, "lb", 3), makeImage(t, "lb", 4)
	disk, esp := makeDisk(t, v1)
	active := "a"
	for i, im := range []*testImage{v2, v3, v4} {
		before := takeSnapshot(t, disk, esp, active)
		res, err := update(t, serveSet(t, im), disk, esp, active)
		if err != nil {
			t.Fatal(err)
		}
		if res.Slot != Other(active) {
			t.Errorf("update %d wrote slot %s while %s was active", i+1, res.Slot, active)
		}
		checkSlot(t, disk, esp, res.Slot, im, res.Entry)
		after := takeSnapshot(t, disk, esp, active)
		if after.root != before.root || after.verity != before.verity || after.entries != before.entries {
			t.Errorf("update %d changed the active slot %s", i+1, active)
		}
		es, _ := Entries(esp)
		if len(es) != 2 || es[0].Slot != active || es[1].Slot != res.Slot || es[1].Gen != i+2 {
			t.Errorf("update %d: entries %+v, want the active slot's then the new one (gen %d)", i+1, es, i+2)
		}
		sets, _ := os.ReadDir(filepath.Join(esp, "imgforge"))
		var names []string
		for _, s := range sets {
			names = append(names, s.Name())
		}
		sort.Strings(names)
		if strings.Join(names, ",") != "a,b" {
			t.Errorf("update %d: kernel sets %v", i+1, names)
		}
		// A good boot: systemd-bless-boot drops the counter.
		os.Rename(filepath.Join(esp, "loader/entries", res.Entry), filepath.Join(esp, "loader/entries", strings.Replace(res.Entry, "+3", "", 1)))
		active = res.Slot
	}
}

func TestUpdateRefuses(t *testing.T) {
	v1 := makeImage(t, "lb", 1)
	web := makeImage(t, "web", 2)
	disk, esp := makeDisk(t, v1)
	if _, err := update(t, serveSet(t, v1), disk, esp, "a"); !errors.Is(err, ErrActive) {
		t.Errorf("updating to the running image: %v, want %v", err, ErrActive)
	}
	s, _ := NewSource(serveSet(t, web), nil)
	_, err := Update(context.Background(), Options{Source: s, Disk: disk, Active: "a", ESP: esp, Role: "lb"})
	if err == nil || !strings.Contains(err.Error(), "field role") {
		t.Errorf("an image of another role: %v", err)
	}
	if got := entryNames(t, esp); strings.Join(got, " ") != "imgforge-0001-a.conf" {
		t.Errorf("entries %v", got)
	}
}

// TestUpdateStalled: a server that stops sending half way without
// closing the connection ends the update after StallTimeout.
func TestUpdateStalled(t *testing.T) {
	old := StallTimeout
	StallTimeout = 300 * time.Millisecond
	t.Cleanup(func() { StallTimeout = old })
	v1, v2 := makeImage(t, "lb", 1), makeImage(t, "lb", 2)
	files := http.FileServer(http.Dir(v2.dir))
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/"+RootFile) {
			files.ServeHTTP(w, r)
			return
		}
		b, _ := os.ReadFile(filepath.Join(v2.dir, RootFile))
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	disk, esp := makeDisk(t, v1)
	start := time.Now()
	_, err := update(t, srv.URL+"/", disk, esp, "a")
	if err == nil {
		t.Fatal("a stalled download succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the stalled update took %s", d)
	}
	t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if got := entryNames(t, esp); strings.Join(got, " ") != "imgforge-0001-a.conf" {
		t.Errorf("entries %v", got)
	}
}

// TestUpdateSameRoot: an image that changed only the overlay image (a
// template edit) has the running root hash but another version. It is not
// the running image; its slot gets partition UUIDs of its own, since two
// partitions with one PARTUUID would make imgforge.root= name either.
func TestUpdateSameRoot(t *testing.T) {
	v1 := makeImage(t, "lb", 1)
	disk, esp := makeDisk(t, v1)
	v2 := makeImage(t, "lb", 1)
	v2.manifest.ImageDigest = "sha256:" + strings.Repeat("e", 64)
	mj, err := v2.manifest.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v2.dir, ManifestFile), mj, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := update(t, serveSet(t, v2), disk, esp, "a")
	if err != nil {
		t.Fatalf("an overlay-only update: %v", err)
	}
	l, err := ReadLayout(readTestGPT(t, disk))
	if err != nil {
		t.Fatal(err)
	}
	a, b := l.Slots[0], l.Slots[1]
	if a.Root.UUID == b.Root.UUID || a.Verity.UUID == b.Verity.UUID {
		t.Errorf("both slots have partition UUIDs %s and %s", a.Root.UUID, a.Verity.UUID)
	}
	if b.Root.Label != SlotLabel("lb", "eeeeeeeeeeee") {
		t.Errorf("slot b is labelled %q", b.Root.Label)
	}
	if !strings.Contains(res.Entry, "-b+") {
		t.Errorf("entry %s", res.Entry)
	}
}

// sameRoot is im's root with another image digest: an image that changed
// only imgforge's own files (the overlay image).
func sameRoot(t *testing.T, im *testImage, digit string) *testImage {
	t.Helper()
	c := makeImage(t, im.manifest.Role, 1)
	c.manifest.ImageDigest = "sha256:" + strings.Repeat(digit, 64)
	mj, err := c.manifest.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, ManifestFile), mj, 0o644); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestUpdateRootKept: two overlay-only updates in a row. The first writes
// slot b; the second goes to slot a, which holds the same root already
// (the build wrote it): only its kernel set and names are written, and
// root.img is never fetched. A slot left _empty by a cut update is
// written again in full.
func TestUpdateRootKept(t *testing.T) {
	v1 := makeImage(t, "lb", 1)
	disk, esp := makeDisk(t, v1)
	v2, v3 := sameRoot(t, v1, "e"), sameRoot(t, v1, "f")
	res, err := update(t, serveSet(t, v2), disk, esp, "a")
	if err != nil {
		t.Fatal(err)
	}
	if res.Bytes == 0 {
		t.Errorf("the first overlay-only update wrote no root into slot b, whose root partition held none")
	}
	os.Rename(filepath.Join(esp, "loader/entries", res.Entry), filepath.Join(esp, "loader/entries", strings.Replace(res.Entry, "+3", "", 1)))
	fetched := 0
	files := http.FileServer(http.Dir(v3.dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/"+RootFile) {
			fetched++
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	before := takeSnapshot(t, disk, esp, "b")
	res, err = update(t, srv.URL+"/", disk, esp, "b")
	if err != nil {
		t.Fatal(err)
	}
	if res.Slot != "a" || res.Bytes != 0 || fetched != 0 || res.Reused {
		t.Errorf("the second update: slot %s, %d bytes, root.img fetched %d times, reused %v; want slot a's root kept", res.Slot, res.Bytes, fetched, res.Reused)
	}
	checkSlot(t, disk, esp, "a", v3, res.Entry)
	if after := takeSnapshot(t, disk, esp, "b"); after.root != before.root || after.verity != before.verity || after.entries != before.entries {
		t.Error("the second update changed the active slot b")
	}
	if es := entryNames(t, esp); len(es) != 2 {
		t.Errorf("entries %v, want slot b's and the new one of slot a", es)
	}

	// A cut update leaves the slot _empty: the next one writes it all.
	g := readTestGPT(t, disk)
	l, err := ReadLayout(g)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := l.Slot("a")
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	err = g.Rewrite(f, EntryUpdate{Index: a.Root.Index, Label: EmptyLabel, UUID: a.Root.UUID}, EntryUpdate{Index: a.Verity.Index, Label: EmptyLabel, UUID: a.Verity.UUID})
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res, err = update(t, serveSet(t, v3), disk, esp, "b"); err != nil {
		t.Fatal(err)
	}
	if res.Bytes == 0 {
		t.Error("an update into a slot left _empty kept its root")
	}
	checkSlot(t, disk, esp, "a", v3, res.Entry)
}

// signImage makes im an image signed for Secure Boot: its PXE set holds
// a UKI per slot whose command line names the slot's partitions as the
// build does (imagemeta.SignedSlotUUIDs) and the state by its label;
// wrongSlot gives slot b's UKI slot a's command line.
func signImage(t *testing.T, im *testImage, wrongSlot bool) {
	t.Helper()
	m := &im.manifest
	m.Signing.SecureBoot = true
	for _, slot := range []string{"a", "b"} {
		cs := slot
		if wrongSlot {
			cs = "a"
		}
		r, v := imagemeta.SignedSlotUUIDs(m.Disk.Verity.RootHash, cs)
		cmdline := imagemeta.SlotCmdline(m.Disk.Cmdline, cs, r, v, imagemeta.StateByLabel, m.Disk.Verity) + " panic=30"
		uki, err := boot.UKI(testtool.TinyEFI(0x1000, 0x200), []byte("kernel"), [][]byte{[]byte("initrd")}, cmdline, []byte("ID=debian\n"))
		if err != nil {
			t.Fatal(err)
		}
		f := imagemeta.BootUKI(slot)
		if err := os.WriteFile(filepath.Join(im.dir, f), uki, 0o644); err != nil {
			t.Fatal(err)
		}
		m.Outputs = append(m.Outputs, imagemeta.Output{Path: "pxe/" + f, Format: "pxe", Size: int64(len(uki)), Digest: "sha256:" + sum(uki)})
	}
	mj, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(im.dir, ManifestFile), mj, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUpdateSecureBoot: an image signed for Secure Boot installs the
// target slot's signed UKI and an efi entry with no options, and gives
// the slot the PARTUUIDs its signed command line names (slot b's differ
// from the root hash's, so the same root can be in both slots). A UKI
// made for another slot, a trial, and an unsigned image on a node that
// boots UKIs are refused before the slot is touched.
func TestUpdateSecureBoot(t *testing.T) {
	v1 := makeImage(t, "lb", 1)
	v2 := makeImage(t, "lb", 2)
	signImage(t, v2, false)
	disk, esp := makeDisk(t, v1)
	before := takeSnapshot(t, disk, esp, "a")
	res, err := update(t, serveSet(t, v2), disk, esp, "a")
	if err != nil {
		t.Fatal(err)
	}
	if after := takeSnapshot(t, disk, esp, "a"); before.root != after.root || before.verity != after.verity {
		t.Errorf("the update changed the active slot")
	}
	text, _ := os.ReadFile(filepath.Join(esp, "loader/entries", res.Entry))
	if want := "title imgforge lb " + v2.version() + " (slot b)\nversion 0002\nefi /imgforge/b/imgforge.efi\n"; string(text) != want {
		t.Errorf("entry %s:\n%s\nwant\n%s", res.Entry, text, want)
	}
	got, _ := os.ReadFile(filepath.Join(esp, "imgforge", "b", UKIFile))
	want, _ := os.ReadFile(filepath.Join(v2.dir, imagemeta.BootUKI("b")))
	if len(got) == 0 || !bytes.Equal(got, want) {
		t.Errorf("ESP imgforge/b/%s is not the set's %s", UKIFile, imagemeta.BootUKI("b"))
	}
	if _, err := os.Stat(filepath.Join(esp, "imgforge", "b", KernelFile)); err == nil {
		t.Errorf("a signed slot got a bare kernel too")
	}
	l, _ := ReadLayout(readTestGPT(t, disk))
	s, _ := l.Slot("b")
	r, v := imagemeta.SignedSlotUUIDs(v2.manifest.Disk.Verity.RootHash, "b")
	if s.Root.UUID.String() != r || s.Verity.UUID.String() != v {
		t.Errorf("slot b: partitions %s and %s, want %s and %s", s.Root.UUID, s.Verity.UUID, r, v)
	}

	// Slot b booted: a trial is refused, and so is a UKI of another slot.
	v3 := makeImage(t, "lb", 3)
	signImage(t, v3, true)
	s3, _ := NewSource(serveSet(t, v3), nil)
	if _, err := Update(context.Background(), Options{Source: s3, Disk: disk, Active: "b", ESP: esp, Trial: time.Minute}); err == nil || !strings.Contains(err.Error(), "--trial") {
		t.Errorf("a trial with a signed image: %v", err)
	}
	v4 := makeImage(t, "lb", 4)
	signImage(t, v4, true)
	if _, err := update(t, serveSet(t, v4), disk, esp, "a"); err == nil || !strings.Contains(err.Error(), "its command line has no imgforge.slot=b") {
		t.Errorf("a UKI made for another slot: %v", err)
	}
	if got := entryNames(t, esp); strings.Join(got, " ") != "imgforge-0001-a.conf" {
		t.Errorf("entries after the refused update %v", got)
	}

	// The node boots a UKI: an unsigned image is refused.
	v5 := makeImage(t, "lb", 5)
	entry := filepath.Join(esp, entriesDir, "imgforge-0001-a.conf")
	if err := os.WriteFile(entry, []byte("title imgforge lb (slot a)\nversion 1\nefi /imgforge/a/imgforge.efi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before = takeSnapshot(t, disk, esp, "a")
	if _, err := update(t, serveSet(t, v5), disk, esp, "a"); !errors.Is(err, ErrSecureBoot) || !strings.Contains(err.Error(), "imgforge-0001-a.conf") {
		t.Errorf("an unsigned image on a node that boots a UKI: %v, want %v", err, ErrSecureBoot)
	}
	if after := takeSnapshot(t, disk, esp, "a"); before.root != after.root || before.entries != after.entries {
		t.Errorf("a refused update changed the active slot")
	}
}

// TestUpdateStaged stages v2 (the slot is written, no entry boots it),
// then updates from v2 again: the slot is not written again, only the
// entry is added. A kernel set missing a file is written again, and
// another image.
func TestUpdateStaged(t *testing.T) {
	v1, v2, v3 := makeImage(t, "lb", 1), makeImage(t, "lb", 2), makeImage(t, "lb", 3)
	disk, esp := makeDisk(t, v1)
	stage := func(src string, stage bool) *Result {
		t.Helper()
		s, err := NewSource(src, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Update(context.Background(), Options{Source: s, Disk: disk, Active: "a", ESP: esp, Logf: t.Logf, Stage: stage})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := stage(serveSet(t, v2), true)
	if !res.Staged || res.Reused || res.Entry != "" || res.Bytes == 0 {
		t.Errorf("staging: %+v", res)
	}
	if got := entryNames(t, esp); strings.Join(got, " ") != "imgforge-0001-a.conf" {
		t.Errorf("staging wrote an entry: %v", got)
	}
	// Again: the slot holds v2, nothing is written.
	if res := stage(serveSet(t, v2), true); !res.Staged || !res.Reused || res.Bytes != 0 {
		t.Errorf("staging again: %+v", res)
	}
	// The update proper: only the entry; a server that fails every
	// root.img request shows the root is not read again.
	res = stage(noRootServer(t, v2), false)
	if res.Staged || !res.Reused || res.Bytes != 0 || res.Entry != "imgforge-0002-b+3.conf" {
		t.Errorf("update after the stage: %+v", res)
	}
	checkSlot(t, disk, esp, "b", v2, res.Entry)
	// A kernel set that lost a file: written again (the named slot's root
	// is kept).
	if err := os.Remove(filepath.Join(esp, "imgforge/b", InitrdFile)); err != nil {
		t.Fatal(err)
	}
	if res := stage(noRootServer(t, v2), false); res.Reused || res.Bytes != 0 {
		t.Errorf("update over a kernel set without its initrd: %+v", res)
	}
	checkSlot(t, disk, esp, "b", v2, "imgforge-0002-b+3.conf")
	// A stage of another image cut half way: slot b holds neither, and
	// v2 is written again.
	s3, err := NewSource(cutServer(t, v3), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Update(context.Background(), Options{Source: s3, Disk: disk, Active: "a", ESP: esp, Logf: t.Logf, Stage: true}); err == nil {
		t.Fatal("a cut stage of v3 succeeded")
	}
	if res := stage(serveSet(t, v2), true); res.Reused || res.Bytes == 0 {
		t.Errorf("staging v2 after a cut stage of v3: %+v", res)
	}
	// Another image: written.
	if res := stage(serveSet(t, v3), false); res.Reused || res.Bytes == 0 || res.Version != v3.version() {
		t.Errorf("update to v3: %+v", res)
	}
}

// noRootServer serves im's set but refuses root.img.
func noRootServer(t *testing.T, im *testImage) string {
	t.Helper()
	files := http.FileServer(http.Dir(im.dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/"+RootFile) {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}
