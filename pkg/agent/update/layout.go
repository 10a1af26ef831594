package update

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Slot is one of the two root slots: its root and verity partitions.
type Slot struct {
	Name         string // a or b
	Root, Verity Partition
}

// Layout is a disk's slot layout as the build writes it: the ESP, root
// and verity of slot a, of slot b, then the state partition, by GPT type
// and in this order.
type Layout struct {
	GPT   *GPT
	ESP   Partition
	Slots [2]Slot
	State Partition
}

// ErrNoSlots is returned for a disk without the A/B layout (one built
// before it, or a disk of something else).
var ErrNoSlots = errors.New("the disk has no A/B slot layout")

// ReadLayout finds the slots in g.
func ReadLayout(g *GPT) (*Layout, error) {
	want := []string{TypeESP, TypeRoot, TypeVerity, TypeRoot, TypeVerity, TypeVar}
	names := []string{"esp", "root-a", "verity-a", "root-b", "verity-b", "state"}
	if len(g.Partitions) < len(want) {
		return nil, fmt.Errorf("%w: %d partitions, want %d (%s)", ErrNoSlots, len(g.Partitions), len(want), strings.Join(names, ", "))
	}
	for i, ty := range want {
		p := g.Partitions[i]
		if p.Type.String() != ty || p.Index != i+1 {
			return nil, fmt.Errorf("%w: partition %d (%s) has type %s, want %s", ErrNoSlots, p.Index, names[i], p.Type, ty)
		}
	}
	p := g.Partitions
	l := &Layout{GPT: g, ESP: p[0], State: p[5],
		Slots: [2]Slot{{Name: "a", Root: p[1], Verity: p[2]}, {Name: "b", Root: p[3], Verity: p[4]}}}
	return l, nil
}

// Slot gives the slot named name.
func (l *Layout) Slot(name string) (Slot, error) {
	for _, s := range l.Slots {
		if s.Name == name {
			return s, nil
		}
	}
	return Slot{}, fmt.Errorf("no slot %q (accepted: a, b)", name)
}

// Other is the name of the other slot.
func Other(slot string) string {
	if slot == "a" {
		return "b"
	}
	return "a"
}

// Cmdline is what the update needs from the running kernel's command
// line: the active slot and the PARTUUID of its root.
type Cmdline struct {
	Slot string // imgforge.slot
	Root string // imgforge.root=PARTUUID=..., upper case
}

// ParseCmdline reads the kernel command line s.
func ParseCmdline(s string) (Cmdline, error) {
	var c Cmdline
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "imgforge.slot":
			c.Slot = v
		case "imgforge.root":
			if u, ok := strings.CutPrefix(v, "PARTUUID="); ok {
				c.Root = strings.ToUpper(u)
			}
		}
	}
	if c.Slot != "a" && c.Slot != "b" {
		return c, errors.New("the kernel command line has no imgforge.slot=a or imgforge.slot=b: this node did not boot from a slot of a disk (an ISO or PXE boot takes a new image at its next boot)")
	}
	if c.Root == "" {
		return c, errors.New("the kernel command line has no imgforge.root=PARTUUID=")
	}
	return c, nil
}

// Node is where an update writes on a running node.
type Node struct {
	Disk string // the whole disk's device (or, in tests, a disk image file)
	ESP  string // the ESP's partition device, to mount
	Slot string // the active slot
}

// skipDisk are kernel block devices that never hold an imgforge disk.
var skipDisk = []string{"loop", "ram", "zram", "dm-", "md", "sr", "nbd", "fd"}

// FindNode finds the disk holding the running slot: the whole disk in
// sysBlock (/sys/block) whose GPT has a partition with the PARTUUID of
// the command line's imgforge.root, and its first partition (the ESP)
// by the partition numbers in sysfs. Devices are named devDir/NAME.
func FindNode(cmdline, sysBlock, devDir string) (Node, *Layout, error) {
	b, err := os.ReadFile(cmdline)
	if err != nil {
		return Node{}, nil, fmt.Errorf("reading the kernel command line: %w", err)
	}
	c, err := ParseCmdline(string(b))
	if err != nil {
		return Node{}, nil, err
	}
	des, err := os.ReadDir(sysBlock)
	if err != nil {
		return Node{}, nil, fmt.Errorf("listing the disks: %w", err)
	}
	var tried []string
disks:
	for _, de := range des {
		name := de.Name()
		for _, p := range skipDisk {
			if strings.HasPrefix(name, p) {
				continue disks
			}
		}
		dev := filepath.Join(devDir, name)
		g, err := readDiskGPT(dev)
		if err != nil {
			tried = append(tried, name)
			continue
		}
		for _, p := range g.Partitions {
			if p.UUID.String() != c.Root {
				continue
			}
			l, err := ReadLayout(g)
			if err != nil {
				return Node{}, nil, fmt.Errorf("%s: %w", dev, err)
			}
			s, _ := l.Slot(c.Slot)
			if s.Root.UUID.String() != c.Root {
				return Node{}, nil, fmt.Errorf("%s: the command line says slot %s with root PARTUUID %s, but that is partition %d", dev, c.Slot, c.Root, p.Index)
			}
			esp, err := partitionDevice(filepath.Join(sysBlock, name), devDir, l.ESP.Index)
			if err != nil {
				return Node{}, nil, err
			}
			return Node{Disk: dev, ESP: esp, Slot: c.Slot}, l, nil
		}
	}
	return Node{}, nil, fmt.Errorf("no disk holds the root partition PARTUUID=%s (disks without a readable GPT: %v)", c.Root, tried)
}

// partitionDevice finds partition n of the disk at sysDisk
// (/sys/block/sda): the sub-folder whose "partition" file says n.
func partitionDevice(sysDisk, devDir string, n int) (string, error) {
	des, err := os.ReadDir(sysDisk)
	if err != nil {
		return "", fmt.Errorf("listing the partitions: %w", err)
	}
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(sysDisk, de.Name(), "partition"))
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) == fmt.Sprint(n) {
			return filepath.Join(devDir, de.Name()), nil
		}
	}
	return "", fmt.Errorf("%s has no partition %d in sysfs", sysDisk, n)
}

func readDiskGPT(path string) (*GPT, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size, err := f.Seek(0, 2)
	if err != nil {
		return nil, err
	}
	return ReadGPT(f, size)
}
