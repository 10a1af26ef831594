package update

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/imgforge/imgforge/pkg/ctxio"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/names"
)

// Options say what to update and where.
type Options struct {
	Source Source
	// Disk is the whole disk's device (or a disk image file in tests).
	Disk string
	// Active is the running slot (a or b); it is never written.
	Active string
	// ESP is the folder the ESP is mounted at.
	ESP string
	// Role, when set, is the node's role: an image of another role is
	// refused.
	Role string
	// Logf gets progress lines; nil: none.
	Logf func(format string, args ...any)
	// Tries is the new entry's boot counter (0: Tries): the boots it gets
	// to reach boot-complete.target before systemd-boot falls back.
	Tries int
	// Trial, when not 0, is how long imgforge-health.service waits on a
	// boot of the new entry for the role's health check before it
	// reboots (imgforge.trial= on its command line; default 10 minutes).
	Trial time.Duration
	// Stage writes the slot (steps 1 to 5) but no loader entry: nothing
	// boots it yet. A later update from the same image finds the slot
	// written and only adds the entry (Result.Reused), so that a rolling
	// update writes a node's slot while the node still serves.
	Stage bool
}

// Result is what an update did.
type Result struct {
	Slot     string `json:"slot"`
	Entry    string `json:"entry"`
	Role     string `json:"role"`
	Version  string `json:"version"`
	RootHash string `json:"root_hash"`
	Bytes    int64  `json:"bytes"`
	// Staged: the slot is written and no entry boots it (Options.Stage).
	// Reused: the slot held the image already (written by an earlier
	// update or stage), and was not written again.
	Staged bool `json:"staged,omitempty"`
	Reused bool `json:"reused,omitempty"`
}

var (
	// ErrRootHash is returned when the new root does not match the root
	// hash of its manifest.
	ErrRootHash = errors.New("the new root does not match the manifest's root hash")
	// ErrSecureBoot is returned for an image, or a node, whose boot
	// chain is signed for Secure Boot: the update does not install
	// unified kernel images yet.
	ErrSecureBoot = errors.New("the node boots unified kernel images signed for Secure Boot, and the new image's boot chain is not signed: build it with --secure-boot-key")
	// ErrActive is returned when the new image is the running one.
	ErrActive = errors.New("the image is the active slot's already")
)

// maxManifest bounds the manifest.json read from a source.
const maxManifest = 16 << 20

// Update writes the image of o.Source into the slot that is not
// o.Active, and makes it the next boot with boot counting:
//
//  1. it reads the new manifest and checks it against the disk (role,
//     slot sizes);
//  2. it removes the inactive slot's loader entry and kernel set from the
//     ESP and labels the slot's partitions _empty, so that nothing boots
//     the slot while it is written;
//  3. it streams root.img (the squashfs, then its hash tree) into the
//     slot's root partition, computing the dm-verity hash tree as it
//     goes, and compares its root hash with the manifest's (and the tree
//     with the downloaded one) before it writes the tree to the verity
//     partition;
//  4. it writes the kernel, the initramfs and overlay.cpio to the ESP,
//     each checked against the manifest's digest;
//  5. it labels the slot's partitions ROLE_VERSION with the PARTUUIDs of
//     the new root hash (primary and backup GPT);
//  6. last, it writes the loader entry imgforge-GEN-SLOT+3.conf, GEN one
//     more than any entry's.
//
// An error or an interruption at any step before the last leaves the
// active slot, its partitions and its entry as they were, and no entry
// for the slot being written: the node boots its current slot.
func Update(ctx context.Context, o Options) (*Result, error) {
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	disk, err := os.OpenFile(o.Disk, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the disk: %w", err)
	}
	defer disk.Close()
	size, err := disk.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("sizing the disk: %w", err)
	}
	g, err := ReadGPT(disk, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Disk, err)
	}
	l, err := ReadLayout(g)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Disk, err)
	}
	active, err := l.Slot(o.Active)
	if err != nil {
		return nil, fmt.Errorf("the active slot: %w", err)
	}
	target, _ := l.Slot(Other(o.Active))

	m, err := readManifest(ctx, o.Source)
	if err != nil {
		return nil, err
	}
	n, err := checkManifest(m, o.Role)
	if err != nil {
		return nil, fmt.Errorf("%s from %s: %w", ManifestFile, o.Source, err)
	}
	// The running image is its slot's label (ROLE_VERSION, the version
	// from the image digest): an image that changed only imgforge's own
	// files (the overlay image) has the running root hash but another
	// version.
	if active.Root.Label == SlotLabel(n.role, n.version) {
		return nil, fmt.Errorf("%w (slot %s, %s)", ErrActive, active.Name, active.Root.Label)
	}
	if n.signed && o.Trial > 0 {
		return nil, errors.New("a trial (--trial) adds imgforge.trial= to the new slot's kernel command line, and the image's command line is signed for Secure Boot: update it without a trial")
	}
	rootUUID, verityUUID := partUUIDs(n.rootHash)
	if n.signed {
		// The signed UKI of the slot names its partitions: as the build
		// chose them (imagemeta.SignedSlotUUIDs).
		r, v := imagemeta.SignedSlotUUIDs(n.rootHash, target.Name)
		rootUUID, verityUUID = mustGUID(r), mustGUID(v)
	} else if rootUUID == active.Root.UUID || verityUUID == active.Verity.UUID {
		// The same root in both slots: the partition UUIDs must differ
		// all the same, or PARTUUID= would name either.
		r, v := imagemeta.SlotSeededUUIDs(n.rootHash, target.Name)
		rootUUID, verityUUID = mustGUID(r), mustGUID(v)
	}
	if rootUUID == active.Root.UUID || verityUUID == active.Verity.UUID {
		return nil, fmt.Errorf("the new slot %s would have the PARTUUIDs of the running slot %s", target.Name, active.Name)
	}
	dataBytes := m.Disk.Verity.DataBlocks * BlockSize
	if dataBytes > target.Root.Size(g.Sector) {
		return nil, fmt.Errorf("the new root (%d bytes) does not fit slot %s's root partition (%d bytes)", dataBytes, target.Name, target.Root.Size(g.Sector))
	}
	if ts := TreeSize(m.Disk.Verity.DataBlocks); ts > target.Verity.Size(g.Sector) {
		return nil, fmt.Errorf("the new hash tree (%d bytes) does not fit slot %s's verity partition (%d bytes)", ts, target.Name, target.Verity.Size(g.Sector))
	}
	logf("updating slot %s to %s %s (root hash %s) from %s; slot %s runs and is left alone", target.Name, n.role, n.version, n.rootHash, o.Source, active.Name)

	if es, err := Entries(o.ESP); err == nil {
		for _, e := range es {
			if b, err := os.ReadFile(filepath.Join(o.ESP, entriesDir, e.Name)); err == nil && strings.Contains("\n"+string(b), "\nefi ") && !n.signed {
				return nil, fmt.Errorf("the node's loader entry %s: %w", e.Name, ErrSecureBoot)
			}
		}
		for _, e := range es {
			if e.Slot == active.Name && e.Counting {
				logf("warning: the running slot %s's entry %s still counts its boots (not marked good yet); if the new slot fails too, slot %s boots only while its tries last", active.Name, e.Name, active.Name)
			}
		}
	}
	label := SlotLabel(n.role, n.version)
	reused := target.Root.Label == label && target.Root.UUID == rootUUID && target.Verity.UUID == verityUUID &&
		holdsKernelSet(o.ESP, target.Name, n) == nil
	var written int64
	if reused {
		// Its partitions are named only once the root and the kernel set
		// were written and checked (steps 3 to 5), and dm-verity checks
		// the root again at boot: a slot spoiled since fails its boot
		// tries, and the node falls back.
		logf("slot %s holds %s %s already (root hash %s): not written again", target.Name, n.role, n.version, n.rootHash)
		if err := clearEntries(o.ESP, target.Name); err != nil {
			return nil, err
		}
	} else {
		// A named slot with the PARTUUIDs this root gets there holds this
		// root already, with another image's overlay (two template edits
		// in a row: both slots hold the same root). Its partitions were
		// named only once the root and its hash tree were written and
		// checked, and dm-verity checks them again at boot: only the
		// kernel set and the names are written.
		rootThere := target.Root.Label != EmptyLabel && target.Verity.Label == target.Root.Label &&
			target.Root.UUID == rootUUID && target.Verity.UUID == verityUUID
		if rootThere {
			logf("slot %s holds root hash %s already (%s): writing its kernel set only", target.Name, n.rootHash, target.Root.Label)
		}
		if written, err = writeSlot(ctx, o, disk, g, target, m, n, rootUUID, verityUUID, rootThere, logf); err != nil {
			return nil, err
		}
	}
	res := &Result{Slot: target.Name, Role: n.role, Version: n.version, RootHash: n.rootHash, Bytes: written, Reused: reused}
	if o.Stage {
		logf("slot %s holds %s %s, staged: no loader entry boots it; an update from the same image makes it the next boot", target.Name, n.role, n.version)
		res.Staged = true
		return res, nil
	}

	es, err := Entries(o.ESP)
	if err != nil {
		return nil, err
	}
	gen := 1
	for _, e := range es {
		gen = max(gen, e.Gen+1)
	}
	var text string
	tries := o.Tries
	if tries <= 0 {
		tries = Tries
	}
	name := entryName(gen, target.Name, tries)
	if n.signed {
		text = ukiEntryText(n.role, n.version, target.Name, gen)
	} else {
		text = entryText(n.role, n.version, target.Name, gen, n.overlay, unsignedOptions(m, target.Name, rootUUID, verityUUID, l.State.UUID, o.Trial))
	}
	if err := writeFileSync(filepath.Join(o.ESP, entriesDir, name), strings.NewReader(text)); err != nil {
		return nil, fmt.Errorf("writing the loader entry: %w", err)
	}
	logf("slot %s holds %s %s; loader entry %s boots it next (%d tries, then slot %s again)", target.Name, n.role, n.version, name, tries, active.Name)
	res.Entry = name
	return res, nil
}

// writeSlot is Update's steps 2 to 5: it writes the image into target and
// names target's partitions after it. With rootThere, target holds the
// image's root and hash tree already: they are not written again.
func writeSlot(ctx context.Context, o Options, disk *os.File, g *GPT, target Slot, m *imagemeta.Manifest, n *checked, rootUUID, verityUUID GUID, rootThere bool, logf func(string, ...any)) (int64, error) {
	// Nothing may boot the slot while it is written. Its partitions lose
	// their name first: a named slot always has its whole kernel set
	// (holdsKernelSet).
	if err := g.Rewrite(disk, EntryUpdate{Index: target.Root.Index, Label: EmptyLabel, UUID: target.Root.UUID},
		EntryUpdate{Index: target.Verity.Index, Label: EmptyLabel, UUID: target.Verity.UUID}); err != nil {
		return 0, fmt.Errorf("marking slot %s empty: %w", target.Name, err)
	}
	if err := clearSlot(o.ESP, target.Name); err != nil {
		return 0, err
	}

	var written int64
	if !rootThere {
		var err error
		if written, err = writeRoot(ctx, o.Source, disk, g.Sector, target, m.Disk.Verity, logf); err != nil {
			return 0, err
		}
	}

	dir := filepath.Join(o.ESP, slotsDir, target.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("making the kernel set's folder: %w", err)
	}
	if n.signed {
		// The slot's signed unified kernel image: the kernel, the
		// initramfs, the overlay image and the slot's command line.
		f := imagemeta.BootUKI(target.Name)
		dst := filepath.Join(dir, UKIFile)
		if err := copyVerified(ctx, o.Source, f, n.digests[f], dst); err != nil {
			return 0, fmt.Errorf("installing %s on the ESP: %w", f, err)
		}
		if err := checkUKI(dst, target.Name, rootUUID, n.rootHash); err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
	} else {
		for _, f := range kernelSet(n) {
			if err := copyVerified(ctx, o.Source, f, n.digests[f], filepath.Join(dir, f)); err != nil {
				return 0, fmt.Errorf("installing %s on the ESP: %w", f, err)
			}
		}
	}

	label := SlotLabel(n.role, n.version)
	if err := g.Rewrite(disk, EntryUpdate{Index: target.Root.Index, Label: label, UUID: rootUUID},
		EntryUpdate{Index: target.Verity.Index, Label: label, UUID: verityUUID}); err != nil {
		return 0, fmt.Errorf("naming slot %s's partitions: %w", target.Name, err)
	}
	return written, nil
}

// kernelSet are the files of an unsigned image's kernel set on the ESP.
func kernelSet(n *checked) []string {
	files := []string{KernelFile, InitrdFile}
	if n.overlay {
		files = append(files, OverlayFile)
	}
	return files
}

// holdsKernelSet checks that the ESP holds the files of slot's kernel
// set for the image n. Their digests were checked when they were written,
// before the slot's partitions were named after the image, and the names
// go before the files do: hashing them again costs a minute under
// emulation and proves nothing the names do not (an unsigned kernel set
// is not checked at boot either; a signed one is, by the firmware).
func holdsKernelSet(esp, slot string, n *checked) error {
	files := kernelSet(n)
	if n.signed {
		files = []string{UKIFile}
	}
	for _, f := range files {
		fi, err := os.Stat(filepath.Join(esp, slotsDir, slot, f))
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() || fi.Size() == 0 {
			return fmt.Errorf("%s: not a file of the kernel set", f)
		}
	}
	return nil
}

// unsignedOptions are the options of an unsigned slot's loader entry:
// the manifest's command line for the slot, its trial, and panic=30.
func unsignedOptions(m *imagemeta.Manifest, slot string, rootUUID, verityUUID, state GUID, trial time.Duration) string {
	opts := slotCmdline(m.Disk.Cmdline, slot, rootUUID, verityUUID, state, m.Disk.Verity)
	if trial > 0 {
		opts += fmt.Sprintf(" imgforge.trial=%d", int(trial.Seconds()))
	}
	// A boot of the new slot that stops (the initramfs cannot find or
	// verify the root, a kernel panic) reboots after 30 s, so that it
	// spends a try and systemd-boot falls back once they are spent;
	// without it the machine would wait at the message for ever.
	if !slices.ContainsFunc(strings.Fields(opts), func(f string) bool { return strings.HasPrefix(f, "panic=") }) {
		opts += " panic=30"
	}
	return opts
}

func readManifest(ctx context.Context, src Source) (*imagemeta.Manifest, error) {
	rc, _, err := src.Open(ctx, ManifestFile)
	if err != nil {
		return nil, fmt.Errorf("fetching %s from %s: %w", ManifestFile, src, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s from %s: %w", ManifestFile, src, err)
	}
	if len(b) > maxManifest {
		return nil, fmt.Errorf("%s from %s is larger than %d bytes", ManifestFile, src, maxManifest)
	}
	m, err := imagemeta.ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%s from %s: %w", ManifestFile, src, err)
	}
	return m, nil
}

// checked is what checkManifest found.
type checked struct {
	role, version, rootHash string
	overlay                 bool
	// signed: the image's boot chain is signed for Secure Boot; each
	// slot boots its own signed UKI (imagemeta.BootUKI).
	signed  bool
	digests map[string]string // file -> sha256 hex
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

func checkManifest(m *imagemeta.Manifest, role string) (*checked, error) {
	if !names.Role(m.Role) {
		return nil, fmt.Errorf("field role: %q is not a role name", m.Role)
	}
	if role != "" && m.Role != role {
		return nil, fmt.Errorf("field role: the image is of role %s, this node is %s", m.Role, role)
	}
	d, ok := strings.CutPrefix(m.ImageDigest, "sha256:")
	if !ok || len(d) != 64 || !isHex(d) {
		return nil, fmt.Errorf("field image_digest: %q is not sha256:HEX", m.ImageDigest)
	}
	if m.Disk == nil {
		return nil, errors.New("field disk: missing: the image is not bootable")
	}
	if m.Disk.Cmdline == "" {
		// A build of the PXE set (or the ISO) alone has no disk command
		// line; the slot's is made the same way from theirs, whose
		// device and root arguments the slot's replace.
		d := *m.Disk
		d.Cmdline = cmp.Or(d.PXECmdline, d.ISOCmdline)
		m.Disk = &d
	}
	v := m.Disk.Verity
	if len(v.RootHash) != 64 || !isHex(v.RootHash) || strings.ToLower(v.RootHash) != v.RootHash {
		return nil, errors.New("field disk.verity.root_hash: want 64 lower-case hex digits")
	}
	if v.Salt == "" || !isHex(v.Salt) || len(v.Salt) > 512 {
		return nil, errors.New("field disk.verity.salt: want hex digits")
	}
	if v.DataBlocks <= 0 {
		return nil, fmt.Errorf("field disk.verity.data_blocks: %d, want > 0", v.DataBlocks)
	}
	if strings.ContainsFunc(m.Disk.Cmdline, func(r rune) bool { return unicode.IsControl(r) || r > unicode.MaxASCII }) {
		return nil, errors.New("field disk.cmdline: holds control or non-ASCII characters")
	}
	if !slices.Contains(strings.Fields(m.Disk.Cmdline), "boot=imgforge") {
		return nil, errors.New("field disk.cmdline: has no boot=imgforge")
	}
	c := &checked{role: m.Role, version: d[:12], rootHash: v.RootHash, digests: map[string]string{}}
	c.overlay = strings.Contains(" "+m.Disk.Cmdline, " imgforge.overlayhash=")
	files := []string{KernelFile, InitrdFile}
	if c.overlay {
		files = append(files, OverlayFile)
	}
	if m.Signing.SecureBoot {
		c.signed = true
		files = []string{imagemeta.BootUKI("a"), imagemeta.BootUKI("b")}
	}
	for _, f := range files {
		sum := fileDigest(m, f)
		if sum == "" {
			if c.signed {
				return nil, fmt.Errorf("field outputs: no sha256 of pxe/%s: the image is signed for Secure Boot, and its PXE set (imgforge build --format pxe --secure-boot-key) carries the slots' signed UKIs", f)
			}
			return nil, fmt.Errorf("fields disk.esp_files and outputs: no sha256 of %s (want /imgforge/a/%s in esp_files or pxe/%s in outputs)", f, f, f)
		}
		c.digests[f] = sum
	}
	return c, nil
}

// fileDigest finds the sha256 (hex) the manifest gives a file of the
// kernel set: on the disk's ESP (slot a, or the ESP of a disk without
// slots), else in the PXE set.
func fileDigest(m *imagemeta.Manifest, f string) string {
	var cands []string
	for _, p := range []string{"/" + slotsDir + "/a/" + f, "/" + slotsDir + "/" + f} {
		cands = append(cands, m.Disk.ESPFiles[p])
	}
	for _, o := range m.Outputs {
		if o.Path == "pxe/"+f {
			cands = append(cands, o.Digest)
		}
	}
	for _, c := range cands {
		if h, ok := strings.CutPrefix(c, "sha256:"); ok && len(h) == 64 && isHex(h) {
			return strings.ToLower(h)
		}
	}
	return ""
}

// partUUIDs are the PARTUUIDs of a slot's root and verity partitions:
// the first and the last 128 bits of its root hash, shaped as version 4
// UUIDs (as the build names slot a).
func partUUIDs(rootHash string) (root, verity GUID) {
	r, v, _ := imagemeta.RootHashUUIDs(rootHash)
	return mustGUID(r), mustGUID(v)
}

func mustGUID(s string) GUID {
	g, _ := ParseGUID(s)
	return g
}

// SlotLabel is a slot's PARTLABEL: ROLE_VERSION, the role shortened so
// that the label has at most 36 UTF-16 characters.
func SlotLabel(role, version string) string {
	keep := gptNameChars - len(version) - 1
	if r := []rune(role); len(r) > keep {
		role = string(r[:max(keep, 0)])
	}
	return role + "_" + version
}

// slotCmdline is the kernel command line of the new slot: the manifest's
// disk command line with the slot's devices, root hash and the node's
// state partition in place of the build's.
func slotCmdline(base, slot string, root, verity, state GUID, v imagemeta.Verity) string {
	return imagemeta.SlotCmdline(base, slot, root.String(), verity.String(), "PARTUUID="+strings.ToLower(state.String()), v)
}

// copyVerified copies the named file of src to path, checked against
// its sha256 before it takes the name.
func copyVerified(ctx context.Context, src Source, name, want, path string) error {
	rc, _, err := src.Open(ctx, name)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	tmp := path + ".part"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	_, err = io.Copy(io.MultiWriter(f, h), ctxio.Reader(ctx, rc))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("its sha256 is %s, the manifest says %s", got, want)
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// writeRoot streams root.img into the slot: the data blocks to its root
// partition, hashed as they pass; then it checks the root hash and the
// downloaded tree against the computed ones, and writes the tree to the
// verity partition. It returns the bytes read.
func writeRoot(ctx context.Context, src Source, disk interface {
	io.WriterAt
	Sync() error
}, sector int64, s Slot, v imagemeta.Verity, logf func(string, ...any)) (int64, error) {
	h, err := newVerityHasher(v.Salt)
	if err != nil {
		return 0, err
	}
	rc, size, err := src.Open(ctx, RootFile)
	if err != nil {
		return 0, fmt.Errorf("fetching %s: %w", RootFile, err)
	}
	defer rc.Close()
	dataBytes := v.DataBlocks * BlockSize
	treeBytes := TreeSize(v.DataBlocks)
	if size >= 0 && size != dataBytes+treeBytes {
		return 0, fmt.Errorf("%s has %d bytes; the manifest's %d data blocks and their hash tree make %d", RootFile, size, v.DataBlocks, dataBytes+treeBytes)
	}
	r := ctxio.Reader(ctx, rc)
	buf := make([]byte, 1<<20)
	base := s.Root.Offset(sector)
	var done int64
	next := int64(0)
	for done < dataBytes {
		n := min(int64(len(buf)), dataBytes-done)
		got, rerr := io.ReadFull(r, buf[:n])
		if rerr != nil {
			// Whole blocks read so far are written, as they would be
			// had the chunk been smaller: the slot is written in place.
			n = int64(got) / BlockSize * BlockSize
		}
		for off := int64(0); off < n; off += BlockSize {
			h.block(buf[off : off+BlockSize])
		}
		if _, err := disk.WriteAt(buf[:n], base+done); err != nil {
			return done, fmt.Errorf("writing slot %s's root: %w", s.Name, err)
		}
		done += n
		if rerr != nil {
			return done, fmt.Errorf("reading %s at byte %d: %w", RootFile, done+int64(got)-n, unexpected(rerr))
		}
		if done >= next {
			logf("slot %s: %d of %d MiB of the root written", s.Name, done>>20, dataBytes>>20)
			next += 64 << 20
		}
	}
	got := make([]byte, treeBytes)
	if _, err := io.ReadFull(r, got); err != nil {
		return done, fmt.Errorf("reading the hash tree of %s: %w", RootFile, unexpected(err))
	}
	done += treeBytes
	var one [1]byte
	if n, _ := io.ReadFull(r, one[:]); n != 0 {
		return done, fmt.Errorf("%s is longer than the manifest's %d data blocks and their hash tree", RootFile, v.DataBlocks)
	}
	root, tree := h.sum()
	if root != v.RootHash {
		return done, fmt.Errorf("%w: computed %s, the manifest says %s", ErrRootHash, root, v.RootHash)
	}
	if !bytes.Equal(tree, got) {
		return done, fmt.Errorf("%w: the hash tree in %s differs from the one computed from its data", ErrRootHash, RootFile)
	}
	if err := disk.Sync(); err != nil {
		return done, fmt.Errorf("syncing slot %s's root: %w", s.Name, err)
	}
	if _, err := disk.WriteAt(tree, s.Verity.Offset(sector)); err != nil {
		return done, fmt.Errorf("writing slot %s's hash tree: %w", s.Name, err)
	}
	if err := disk.Sync(); err != nil {
		return done, fmt.Errorf("syncing slot %s's hash tree: %w", s.Name, err)
	}
	return done, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
