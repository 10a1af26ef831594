package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/pkg/qemu"
)

func TestRunErrors(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	os.MkdirAll(filepath.Join(out, "lb"), 0o755)
	raw := filepath.Join(out, "lb", "lb.raw")
	os.WriteFile(raw, []byte("not really a disk"), 0o644)
	odd := filepath.Join(dir, "lb.vmdk")
	os.WriteFile(odd, nil, 0o644)
	seedDir := filepath.Join(dir, "seed")
	os.Mkdir(seedDir, 0o755)
	os.WriteFile(filepath.Join(seedDir, "meta-data"), []byte("instance-id: x\n"), 0o644)
	_, qemuErr := qemu.FindQEMU()

	tests := []struct {
		name     string
		args     []string
		noPATH   bool // run with an empty PATH: no QEMU
		needQEMU bool
		want     string
	}{
		{"role not built", []string{"run", "--output-dir", out, "web"}, false, false,
			"image " + filepath.Join(out, "web", "web.raw") + " not found: build role web first"},
		{"role format not built", []string{"run", "--output-dir", out, "--format", "qcow2", "lb"}, false, false,
			"image " + filepath.Join(out, "lb", "lb.qcow2") + " not found: build role lb first"},
		{"image path not found", []string{"run", filepath.Join(dir, "nope.qcow2")}, false, false,
			"image " + filepath.Join(dir, "nope.qcow2") + " not found"},
		{"unknown extension", []string{"run", odd}, false, false, `cannot tell its format from the extension ".vmdk"`},
		{"bad format", []string{"run", "--format", "vdi", "lb"}, false, false, `--format "vdi": accepted: raw, qcow2, iso`},
		{"forward one port", []string{"run", "--output-dir", out, "--forward", "80", "lb"}, false, false,
			`--forward "80": expected [ADDR:]HOST:GUEST[/tcp|/udp]`},
		{"forward not a port", []string{"run", "--output-dir", out, "--forward", "http:80", "lb"}, false, false, `--forward "http:80": expected`},
		{"forward port range", []string{"run", "--output-dir", out, "--forward", "8080:70000", "lb"}, false, false, `--forward "8080:70000": expected`},
		{"forward protocol", []string{"run", "--output-dir", out, "--forward", "8080:80/sctp", "lb"}, false, false, `--forward "8080:80/sctp": expected`},
		{"forward address", []string{"run", "--output-dir", out, "--forward", "localhost:8080:80", "lb"}, false, false, `--forward "localhost:8080:80": expected`},
		{"bad accel", []string{"run", "--output-dir", out, "--accel", "hvf", "lb"}, false, false, `--accel "hvf": accepted: auto, kvm, tcg`},
		{"bad memory", []string{"run", "--output-dir", out, "--memory", "0", "lb"}, false, false, "want at least 64 MiB"},
		{"no qemu", []string{"run", "--output-dir", out, "lb"}, true, false, "install the Debian package qemu-system-x86"},
		{"no ovmf", []string{"run", "--output-dir", out, "--firmware", filepath.Join(dir, "OVMF_CODE.fd"), "lb"}, false, true,
			"install the Debian package ovmf"},
		{"seed folder without user-data", []string{"run", "--output-dir", out, "--firmware", raw, "--seed", seedDir, "lb"}, false, true,
			"--seed " + seedDir + ": seed folder " + seedDir + ": openat user-data: no such file"},
		{"seed missing", []string{"run", "--output-dir", out, "--firmware", raw, "--seed", filepath.Join(dir, "nope"), "lb"}, false, true,
			"--seed " + filepath.Join(dir, "nope") + ": reading the seed: stat " + filepath.Join(dir, "nope")},
		{"no args", []string{"run"}, false, false, "accepts 1 arg(s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needQEMU && qemuErr != nil {
				t.Skip(qemuErr)
			}
			if tt.noPATH {
				t.Setenv("PATH", t.TempDir())
			}
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

func TestParseForwards(t *testing.T) {
	got, err := parseForwards([]string{"8080:80", "127.0.0.2:5353:53/udp", "0.0.0.0:2222:22/tcp"})
	if err != nil {
		t.Fatal(err)
	}
	want := []qemu.Forward{
		{Protocol: "tcp", HostAddr: "127.0.0.1", HostPort: 8080, GuestPort: 80},
		{Protocol: "udp", HostAddr: "127.0.0.2", HostPort: 5353, GuestPort: 53},
		{Protocol: "tcp", HostAddr: "0.0.0.0", HostPort: 2222, GuestPort: 22},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}
