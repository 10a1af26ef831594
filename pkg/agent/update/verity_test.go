package update

import (
	"bytes"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestVerityMatchesVeritysetup checks the Go hash tree bit for bit
// against `veritysetup format --no-superblock` (hash type 1), for data
// sizes around the level boundaries.
func TestVerityMatchesVeritysetup(t *testing.T) {
	vs, err := exec.LookPath("veritysetup")
	if err != nil {
		if vs, err = exec.LookPath("/usr/sbin/veritysetup"); err != nil {
			t.Skip("veritysetup is not installed (cryptsetup-bin)")
		}
	}
	salt := "5a17" + "00112233445566778899aabbccddeeff00112233445566778899aabbccdd"
	re := regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]{64})`)
	rng := rand.New(rand.NewSource(1))
	for _, n := range []int64{1, 2, 127, 128, 129, 300, 128*128 + 1} {
		dir := t.TempDir()
		data := make([]byte, n*BlockSize)
		rng.Read(data)
		dp, hp := filepath.Join(dir, "data"), filepath.Join(dir, "hash")
		if err := os.WriteFile(dp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(vs, "format", "--no-superblock", "--hash=sha256", "--data-block-size=4096",
			"--hash-block-size=4096", "--salt="+salt, dp, hp).CombinedOutput()
		if err != nil {
			t.Fatalf("veritysetup: %v: %s", err, out)
		}
		m := re.FindSubmatch(out)
		if m == nil {
			t.Fatalf("no root hash in %s", out)
		}
		wantTree, err := os.ReadFile(hp)
		if err != nil {
			t.Fatal(err)
		}
		h, err := newVerityHasher(salt)
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(data); off += BlockSize {
			h.block(data[off : off+BlockSize])
		}
		root, tree := h.sum()
		if root != string(m[1]) {
			t.Errorf("%d blocks: root hash %s, veritysetup %s", n, root, m[1])
		}
		if !bytes.Equal(tree, wantTree) {
			t.Errorf("%d blocks: tree of %d bytes differs from veritysetup's (%d bytes)", n, len(tree), len(wantTree))
		}
		if TreeSize(n) != int64(len(wantTree)) {
			t.Errorf("%d blocks: TreeSize %d, veritysetup wrote %d", n, TreeSize(n), len(wantTree))
		}
	}
}

// BenchmarkVerity measures the hash tree's speed: it bounds how fast an
// update writes a slot.
func BenchmarkVerity(b *testing.B) {
	block := make([]byte, BlockSize)
	const blocks = 16 << 20 / BlockSize
	b.SetBytes(blocks * BlockSize)
	for i := 0; i < b.N; i++ {
		h, _ := newVerityHasher("00ff")
		for j := 0; j < blocks; j++ {
			h.block(block)
		}
		h.sum()
	}
}
