package verify

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/imgforge/imgforge/pkg/units"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/disk"
	"github.com/imgforge/imgforge/pkg/rootfs"
)

// Raw checks the raw disk at imagePath against the manifest at
// manifestPath. The error is nil when every check passed; it wraps
// ErrFailed and names the first failed check when one failed; any other
// error (an unreadable manifest, a missing image, ctx ending) means the
// checks could not all run.
func Raw(ctx context.Context, imagePath, manifestPath string) (Report, error) {
	r, m, err := newRun(ctx, imagePath, manifestPath, "raw")
	defer r.close()
	if err != nil {
		return *r.report, err
	}
	f, err := os.Open(imagePath)
	if err != nil {
		return *r.report, fmt.Errorf("reading the image: %w", err)
	}
	defer f.Close()
	ids, v, lay := m.Disk.Partitions, m.Disk.Verity, m.Disk.Layout

	r.check(CheckDigest, func() (string, error) { return r.checkDigest(m, "raw") })
	r.check(CheckProtectiveMBR, func() (string, error) { return checkMBR(f) })
	var table *gpt.Table
	tableOK := r.check(CheckGPT, func() (string, error) {
		t, reason, err := checkGPT(f)
		if err != nil {
			return "", err
		}
		if !strings.EqualFold(t.GUID, ids.Disk) {
			return "", fmt.Errorf("the disk GUID is %s; the manifest says %s", t.GUID, strings.ToUpper(ids.Disk))
		}
		if len(t.Partitions) != 6 {
			return "", fmt.Errorf("the disk has %d partitions; an imgforge disk has 6 (ESP, root-a, verity-a, root-b, verity-b, state)", len(t.Partitions))
		}
		table = t
		return reason, nil
	})
	partsOK := tableOK
	if tableOK && lay == nil {
		r.check(CheckLayout, func() (string, error) {
			return "", errors.New("the manifest has no disk layout (slot size, partition labels): it was written by an imgforge without A/B slots; rebuild the image")
		})
		partsOK = false
	}
	if partsOK {
		for _, p := range []partSpec{
			{1, "esp", disk.TypeESP, ids.ESP, lay.Labels.ESP, 0},
			{2, "root", disk.TypeRoot, ids.Root, lay.Labels.RootA, lay.SlotSize},
			{3, "verity", disk.TypeRootVerity, ids.Verity, lay.Labels.VerityA, lay.VeritySize},
			{6, "state", disk.TypeVar, ids.State, lay.Labels.State, 0},
		} {
			if !r.check(CheckPartition+p.name, func() (string, error) { return checkPartition(table, p) }) {
				partsOK = false
			}
		}
		r.check(CheckLabels, func() (string, error) { return checkLabels(m, lay.Labels) })
		r.check(CheckSlotB, func() (string, error) { return r.checkSlotB(f, table, m) })
		r.check(CheckStateFS, func() (string, error) {
			return r.checkStateFS(imagePath, partition(table, 6), ids.StateFS, lay.Labels.State)
		})
	}
	r.check(CheckCmdline, func() (string, error) { return checkRawCmdline(m.Disk.Cmdline, ids, v) })
	if !partsOK {
		return r.result()
	}

	root, verity := partition(table, 2), partition(table, 3)
	r.checkESP(imagePath, partition(table, 1), m.Disk.Cmdline, "the manifest's cmdline", m.Disk.ESPFiles, "esp_files")

	data, hash := filepath.Join(r.tmp, "root"), filepath.Join(r.tmp, "root-verity")
	if !r.check(CheckRootImage, func() (string, error) {
		need := v.DataBlocks * rootfs.BlockSize
		if v.DataBlocks <= 0 || need > int64(root.Size) {
			return "", fmt.Errorf("the manifest's data_blocks %d (%s) do not fit the root partition (%s)", v.DataBlocks, units.Bytes(need), units.Bytes(int64(root.Size)))
		}
		if v.HashStart < 0 || v.HashStart*rootfs.BlockSize >= int64(verity.Size) {
			return "", fmt.Errorf("the manifest's hash_start %d lies outside the root-verity partition (%s)", v.HashStart, units.Bytes(int64(verity.Size)))
		}
		if err := r.extract(imagePath, int64(root.Start)*sector, need, data); err != nil {
			return "", err
		}
		if err := r.extract(imagePath, int64(verity.Start)*sector, int64(verity.Size), hash); err != nil {
			return "", err
		}
		return fmt.Sprintf("%d blocks of the root partition (%s) hold the root; the root-verity partition (%s), its hash tree", v.DataBlocks, units.Bytes(int64(root.Size)), units.Bytes(int64(verity.Size))), nil
	}) {
		return r.result()
	}
	r.checkRoot(data, hash, v)
	return r.result()
}

// checkRawCmdline checks that a raw disk's kernel command line boots
// imgforge's initramfs script with the manifest's partitions and
// verity parameters.
func checkRawCmdline(cmdline string, ids disk.IDs, v boot.Verity) (string, error) {
	if !strings.Contains(" "+cmdline+" ", " boot=imgforge ") {
		return "", fmt.Errorf("the manifest's cmdline has no boot=imgforge")
	}
	params := cmdlineParams(cmdline)
	for _, want := range []struct{ key, value string }{
		{"imgforge.root", "PARTUUID=" + ids.Root},
		{"imgforge.verity", "PARTUUID=" + ids.Verity},
		{"imgforge.state", "PARTUUID=" + ids.State},
		{"imgforge.roothash", v.RootHash},
		{"imgforge.salt", v.Salt},
		{"imgforge.blocks", strconv.FormatInt(v.DataBlocks, 10)},
		{"imgforge.hashstart", strconv.FormatInt(v.HashStart, 10)},
	} {
		got, ok := params[want.key]
		if !ok {
			return "", fmt.Errorf("the manifest's cmdline has no %s=", want.key)
		}
		if !strings.EqualFold(got, want.value) {
			return "", fmt.Errorf("the manifest's cmdline has %s=%s; its partitions and verity say %s", want.key, got, want.value)
		}
	}
	return "names the manifest's root, root-verity and state partitions and its verity parameters", nil
}
