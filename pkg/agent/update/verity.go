package update

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// BlockSize is the dm-verity data and hash block size imgforge uses.
const BlockSize = 4096

// verityLevels gives the number of hash blocks of each level of the
// hash tree of n data blocks, bottom (level 0, the hashes of the data)
// first, as cryptsetup's hash_levels computes them.
func verityLevels(n int64) []int64 {
	var levels []int64
	// A hash block holds BlockSize/sha256.Size = 128 = 1<<7 digests.
	for l := 0; l < 9 && (n-1)>>(7*l) != 0; l++ {
		div := int64(1) << (7 * (l + 1))
		levels = append(levels, (n+div-1)/div)
	}
	return levels
}

// TreeSize is the size in bytes of the dm-verity hash tree (no
// superblock) of n data blocks.
func TreeSize(n int64) int64 {
	var s int64
	for _, b := range verityLevels(n) {
		s += b * BlockSize
	}
	return s
}

// verityHasher computes a dm-verity hash tree in the format of
// `veritysetup format --no-superblock` with hash type 1, sha256 and
// 4096-byte blocks: each block's digest is sha256(salt || block), packed
// 128 to a hash block and zero padded; the levels are stored top first;
// the root hash is the digest of the single top block (or of the only
// data block when there is one). Data is fed one whole block at a time.
type verityHasher struct {
	salt   []byte
	level0 []byte // digests of the data blocks
	blocks int64
}

func newVerityHasher(saltHex string) (*verityHasher, error) {
	salt, err := hex.DecodeString(saltHex)
	if err != nil {
		return nil, fmt.Errorf("the salt is not hex: %w", err)
	}
	return &verityHasher{salt: salt}, nil
}

func (v *verityHasher) digest(block []byte) []byte {
	h := sha256.New()
	h.Write(v.salt)
	h.Write(block)
	return h.Sum(nil)
}

// block adds one data block.
func (v *verityHasher) block(b []byte) {
	v.level0 = append(v.level0, v.digest(b)...)
	v.blocks++
}

// pad zero-pads digests to whole hash blocks.
func pad(b []byte) []byte {
	if r := len(b) % BlockSize; r != 0 {
		b = append(b, make([]byte, BlockSize-r)...)
	}
	return b
}

// sum gives the root hash (hex) and the hash tree as it is stored.
func (v *verityHasher) sum() (string, []byte) {
	n := len(verityLevels(v.blocks))
	if n == 0 {
		return hex.EncodeToString(v.level0), nil
	}
	levels := [][]byte{pad(v.level0)}
	for i := 1; i < n; i++ {
		prev := levels[i-1]
		var next []byte
		for off := 0; off < len(prev); off += BlockSize {
			next = append(next, v.digest(prev[off:off+BlockSize])...)
		}
		levels = append(levels, pad(next))
	}
	root := v.digest(levels[n-1])
	var tree []byte
	for i := n - 1; i >= 0; i-- {
		tree = append(tree, levels[i]...)
	}
	return hex.EncodeToString(root), tree
}
