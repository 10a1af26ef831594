package disk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/imgforge/imgforge/pkg/ctxio"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// mke2fsConf is the whole mke2fs configuration MakeState uses, so that
// the host's /etc/mke2fs.conf changes nothing: bookworm's ext4 defaults
// (what the initramfs's own mke2fs made on first boot before), without
// the "small" and "floppy" size types that would pick 1 KiB blocks.
const mke2fsConf = `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`

// MakeState writes an empty ext4 file system of size bytes to the new
// file path, for the state partition: label imgforge-state, the UUID
// uuid, the directory hash seed derived from it, owned by root, every
// timestamp epoch. It runs the host's mke2fs (e2fsprogs) with its own
// configuration and E2FSPROGS_FAKE_TIME, so that the same inputs give the
// same bytes. The file is sparse where mke2fs could discard (punch holes);
// its data is metadata and zeros, and copySparse writes only the
// metadata (under 0.5 MiB for a 1 GiB file system) into the disk.
//
// go-diskfs (v1.9.4) can write ext4 too, but takes its directory hash
// seed, journal UUID and timestamps from crypto/rand and the clock, and
// makes no lost+found; mke2fs is what the initramfs grows it with.
func MakeState(ctx context.Context, path string, size int64, uuid string, epoch int64) error {
	if size < MinState || size%4096 != 0 {
		return fmt.Errorf("making the state file system: size %d is not a multiple of 4096 of at least %d", size, int64(MinState))
	}
	bin, err := exec.LookPath("mke2fs")
	if err != nil {
		return fmt.Errorf("mke2fs is not installed (apt-get install e2fsprogs): %w", err)
	}
	conf := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".mke2fs.conf")
	if err := os.WriteFile(conf, []byte(mke2fsConf), 0o600); err != nil {
		return fmt.Errorf("making the state file system: %w", err)
	}
	defer os.Remove(conf)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("making the state file system: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("making the state file system: %w", err)
	}
	// -b 4096: without it mke2fs reads the block count below as KiB
	// (its configuration's blocksize does not change that), and the file
	// system was a quarter of its partition.
	cmd := exec.CommandContext(ctx, bin, "-q", "-F", "-t", "ext4", "-b", "4096",
		"-L", imagemeta.StateLabel, "-U", uuid,
		// Not lazy: the inode tables and the journal are zeros either way
		// (discarded, or written as zeros where the host's file system
		// cannot punch holes) and marked so; lazy, their flags would
		// depend on the host.
		"-E", "hash_seed="+UUID("state-fs-hash-seed", uuid)+",root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0",
		path, strconv.FormatInt(size/4096, 10))
	// The caller's MKE2FS_* and E2FSPROGS_* settings would change the bytes.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MKE2FS_") && !strings.HasPrefix(kv, "E2FSPROGS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "MKE2FS_CONFIG="+conf, "E2FSPROGS_FAKE_TIME="+strconv.FormatInt(epoch, 10))
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(path)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("making the state file system: mke2fs: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// copySparse writes src into dst at off, skipping its holes (found by
// ctxio.DataRegions) and every 4 KiB block of zeros in its data, so
// that the target stays sparse where the source is empty. dst must be
// zeros (unwritten) over the range.
func copySparse(ctx context.Context, dst io.WriterAt, off int64, src *os.File) error {
	buf := make([]byte, 1<<20)
	return ctxio.DataRegions(ctx, src, func(start, end int64) error {
		for pos := start; pos < end; {
			if err := ctx.Err(); err != nil {
				return err
			}
			chunk := buf[:min(int64(len(buf)), end-pos)]
			if _, err := src.ReadAt(chunk, pos); err != nil {
				return err
			}
			for i := 0; i < len(chunk); i += 4096 {
				b := chunk[i:min(i+4096, len(chunk))]
				if allZero(b) {
					continue
				}
				if _, err := dst.WriteAt(b, off+pos+int64(i)); err != nil {
					return err
				}
			}
			pos += int64(len(chunk))
		}
		return nil
	})
}

func allZero(b []byte) bool {
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}
