package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServeErrors(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "out")
	os.MkdirAll(filepath.Join(root, "lb", "pxe"), 0o755)
	os.WriteFile(filepath.Join(root, "lb", "pxe", "boot.ipxe"), []byte("#!ipxe\n"), 0o644)
	bad := filepath.Join(dir, "machines.yaml")
	os.WriteFile(bad, []byte("machines:\n  - mac: 52:54:00:00:00:01\n    role: web\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no root", []string{"serve", "--root", filepath.Join(dir, "nope"), "--listen", "127.0.0.1:0"}, "opening the PXE root: "},
		{"bad machines", []string{"serve", "--root", root, "--machines", bad, "--listen", "127.0.0.1:0"},
			bad + `:3:11: field "machines[0].role": role "web" has no PXE set; accepted: the PXE sets under ` + root + `: lb`},
		{"bad listen", []string{"serve", "--root", root, "--listen", "127.0.0.1:99999"}, "http: listen tcp: address 99999: invalid port"},
		{"no interface", []string{"serve", "--root", root, "--listen", "127.0.0.1:0", "--proxy-dhcp", "nosuchif0"}, `proxyDHCP: interface "nosuchif0": `},
		{"args", []string{"serve", "lb"}, `unknown command "lb"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runCLI(t, nil, tt.args...)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q\nwant one line containing %q", err, tt.want)
			}
		})
	}
}
