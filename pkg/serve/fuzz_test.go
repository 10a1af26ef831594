package serve

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// FuzzParseMachines feeds the machines-file parser: it must never panic,
// every error must be one line, and a file it accepts must hold only
// known roles and unicast MAC addresses, each once, that Lookup finds.
// The committed corpus is under testdata/fuzz/FuzzParseMachines.
func FuzzParseMachines(f *testing.F) {
	root := f.TempDir()
	for _, role := range []string{"lb", "web"} {
		if err := os.MkdirAll(filepath.Join(root, role, "pxe"), 0o755); err != nil {
			f.Fatal(err)
		}
	}
	seed := filepath.Join(root, "seeds", "web-1")
	if err := os.MkdirAll(seed, 0o755); err != nil {
		f.Fatal(err)
	}
	for _, name := range []string{"meta-data", "user-data"} {
		if err := os.WriteFile(filepath.Join(seed, name), []byte("x\n"), 0o644); err != nil {
			f.Fatal(err)
		}
	}
	roles := []string{"lb", "web"}
	path := filepath.Join(root, MachinesFile)
	f.Add([]byte("default: lb\nmachines:\n  - mac: 52:54:00:12:34:56\n    role: web\n    hostname: web-1\n    seed: seeds/web-1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseMachines(path, data, root, roles)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		if m.Default != "" && !slices.Contains(roles, m.Default) {
			t.Fatalf("default role %q accepted", m.Default)
		}
		seen := map[string]bool{}
		for _, e := range m.Machines {
			hw, err := net.ParseMAC(e.MAC)
			if err != nil || len(hw) != 6 || hw[0]&1 != 0 || hw.String() != e.MAC {
				t.Fatalf("MAC %q accepted", e.MAC)
			}
			if seen[e.MAC] || m.Lookup(hw) == nil || m.Lookup(hw).Role != e.Role {
				t.Fatalf("MAC %s listed twice or not found", e.MAC)
			}
			seen[e.MAC] = true
			if !slices.Contains(roles, e.Role) || (e.Hostname != "" && !hostnameRE.MatchString(e.Hostname)) {
				t.Fatalf("entry %+v accepted", e)
			}
		}
	})
}
