package update

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestRewriteReadByPartx checks the rewritten GPT with util-linux's
// libblkid (partx), which checks the CRC32s: the primary table, and the
// backup alone once the primary header is broken.
func TestRewriteReadByPartx(t *testing.T) {
	partx, err := exec.LookPath("partx")
	if err != nil {
		t.Skip("partx (util-linux) is not installed")
	}
	v1, v2 := makeImage(t, "lb", 1), makeImage(t, "lb", 2)
	disk, esp := makeDisk(t, v1)
	if _, err := update(t, serveSet(t, v2), disk, esp, "a"); err != nil {
		t.Fatal(err)
	}
	ru, vu := partUUIDs(v2.manifest.Disk.Verity.RootHash)
	label := SlotLabel("lb", v2.version())
	want := []string{"4 " + label + " " + strings.ToLower(ru.String()), "5 " + label + " " + strings.ToLower(vu.String())}
	check := func(what string) {
		out, err := exec.Command(partx, "--show", "--noheadings", "-o", "NR,NAME,UUID", disk).CombinedOutput()
		if err != nil {
			t.Fatalf("partx (%s): %v: %s", what, err, out)
		}
		rows := map[string]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			rows[strings.Join(strings.Fields(l), " ")] = true
		}
		for _, w := range want {
			if !rows[w] {
				t.Errorf("partx (%s) lacks %q:\n%s", what, w, out)
			}
		}
	}
	check("primary")
	f, err := os.OpenFile(disk, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("XXXXXXXX"), 512)
	f.Close()
	check("backup")
}
