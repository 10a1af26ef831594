package update

import (
	"fmt"
	"os"
	"strings"
)

// Running is the image a node booted: its role and version (from the
// running slot's partition label ROLE_VERSION), its slot and root hash
// (from the kernel command line).
type Running struct {
	Role, Version, Slot, RootHash string
}

// ReadRunning finds the running slot as FindNode does and reads what it
// holds.
func ReadRunning(cmdline, sysBlock, devDir string) (Running, error) {
	node, l, err := FindNode(cmdline, sysBlock, devDir)
	if err != nil {
		return Running{}, err
	}
	s, err := l.Slot(node.Slot)
	if err != nil {
		return Running{}, err
	}
	r := Running{Slot: node.Slot}
	i := strings.LastIndexByte(s.Root.Label, '_')
	if i <= 0 {
		return r, fmt.Errorf("the running slot's label %q is not ROLE_VERSION", s.Root.Label)
	}
	r.Role, r.Version = s.Root.Label[:i], s.Root.Label[i+1:]
	b, err := os.ReadFile(cmdline)
	if err != nil {
		return r, err
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "imgforge.roothash="); ok {
			r.RootHash = v
		}
	}
	return r, nil
}
