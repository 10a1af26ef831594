package update

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeNode lays out /proc/cmdline, /sys/block and /dev for a node whose
// disk vda is the image file disk, with other disks around it.
func fakeNode(t *testing.T, disk, cmdline string) (cmd, sys, dev string) {
	t.Helper()
	root := t.TempDir()
	cmd, sys, dev = filepath.Join(root, "cmdline"), filepath.Join(root, "sys"), filepath.Join(root, "dev")
	if err := os.WriteFile(cmd, []byte(cmdline+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"loop0", "sr0", "vdb", "vda/vda1", "vda/vda2", "vda/vda6", "vda/queue"} {
		if err := os.MkdirAll(filepath.Join(sys, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"1", "2", "6"} {
		if err := os.WriteFile(filepath.Join(sys, "vda/vda"+n, "partition"), []byte(n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(dev, 0o755)
	if err := os.Symlink(disk, filepath.Join(dev, "vda")); err != nil {
		t.Fatal(err)
	}
	// vdb is a disk without a GPT.
	if err := os.WriteFile(filepath.Join(dev, "vdb"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return cmd, sys, dev
}

func TestFindNode(t *testing.T) {
	v1 := makeImage(t, "lb", 1)
	disk, _ := makeDisk(t, v1)
	ru, _ := partUUIDs(v1.manifest.Disk.Verity.RootHash)
	for _, tc := range []struct {
		name, cmdline, err string
	}{
		{"slot a", "console=ttyS0 boot=imgforge imgforge.slot=a imgforge.root=PARTUUID=" + strings.ToLower(ru.String()), ""},
		{"wrong slot", "boot=imgforge imgforge.slot=b imgforge.root=PARTUUID=" + ru.String(), "the command line says slot b"},
		{"no slot", "boot=imgforge imgforge.root=PARTUUID=" + ru.String(), "no imgforge.slot"},
		{"unknown root", "boot=imgforge imgforge.slot=a imgforge.root=PARTUUID=00000000-0000-4000-8000-000000000000", "no disk holds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd, sys, dev := fakeNode(t, disk, tc.cmdline)
			n, l, err := FindNode(cmd, sys, dev)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Disk != filepath.Join(dev, "vda") || n.ESP != filepath.Join(dev, "vda1") || n.Slot != "a" || l.Slots[1].Root.Label != EmptyLabel {
				t.Errorf("node %+v", n)
			}
		})
	}
}

// TestOnNode runs the whole node path with the ESP as a folder (no vfat
// here), and checks the lock.
func TestOnNode(t *testing.T) {
	v1, v2 := makeImage(t, "lb", 1), makeImage(t, "lb", 2)
	disk, esp := makeDisk(t, v1)
	ru, _ := partUUIDs(v1.manifest.Disk.Verity.RootHash)
	cmd, sys, dev := fakeNode(t, disk, "boot=imgforge imgforge.slot=a imgforge.root=PARTUUID="+ru.String())
	run := t.TempDir()
	o := NodeOptions{Source: serveSet(t, v2), Role: "lb", Cmdline: cmd, SysBlock: sys, DevDir: dev, RunDir: run, ESP: esp, Logf: t.Logf}

	held, err := os.OpenFile(filepath.Join(run, "update.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := flock(held); err != nil {
		t.Fatal(err)
	}
	if _, err := OnNode(context.Background(), o); !errors.Is(err, ErrBusy) {
		t.Errorf("with the lock held: %v, want %v", err, ErrBusy)
	}
	held.Close()
	res, err := OnNode(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, disk, esp, "b", v2, res.Entry)
}
