package update

import (
	"strings"
	"testing"
)

// TestReadRunning: the running image's role and version from its slot's
// label, its root hash from the command line.
func TestReadRunning(t *testing.T) {
	v1 := makeImage(t, "lb", 1)
	disk, _ := makeDisk(t, v1)
	ru, _ := partUUIDs(v1.manifest.Disk.Verity.RootHash)
	rh := v1.manifest.Disk.Verity.RootHash
	cmd, sys, dev := fakeNode(t, disk, "boot=imgforge imgforge.slot=a imgforge.root=PARTUUID="+ru.String()+" imgforge.roothash="+rh)
	r, err := ReadRunning(cmd, sys, dev)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Running{Role: "lb", Version: v1.version(), Slot: "a", RootHash: rh}); r != want {
		t.Errorf("got %+v, want %+v", r, want)
	}
	cmd, sys, dev = fakeNode(t, disk, "boot=imgforge")
	if _, err := ReadRunning(cmd, sys, dev); err == nil || !strings.Contains(err.Error(), "imgforge.slot") {
		t.Errorf("no slot: %v", err)
	}
}
