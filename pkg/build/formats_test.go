package build

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/disk"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenPlan has a value in every field that role.json and manifest.json
// carry, and characters that JSON escapes (<, >, &, quotes, non-ASCII).
func goldenPlan() *plan.Plan {
	return &plan.Plan{
		Role: "web", Description: "nginx <front> & \"static\" – files", Image: "debian-bookworm",
		Options: map[string]string{"runtime": "php", "tls": "on"},
		Distribution: plan.Distribution{Name: "debian", Suite: "bookworm", Mirror: "http://deb.debian.org/debian?a=1&b=2",
			Components: []string{"main"}, Sources: []string{"deb http://deb.debian.org/debian bookworm main"}},
		Architecture: "amd64", SourceDateEpoch: 1700000000,
		BasePackages: []string{"systemd", "udev"}, Packages: []string{"nginx"},
		Exclude: []string{"docs"}, Include: []string{"ca-certificates"}, Prune: []string{"/usr/share/doc"},
		BootExclude: []string{"x"}, BootInclude: []string{"linux-image-amd64"},
		Files: []plan.File{
			{Path: "/etc/imgforge", Type: "dir", Mode: 0o755, Owner: "root", Group: "root", Source: "embedded:roles/web"},
			{Path: "/etc/nginx/nginx.conf", Type: "file", Mode: 0o644, Owner: "root", Group: "www-data", Size: 12, Digest: "sha256:ab", Source: "embedded:roles/web/nginx.conf"},
		},
		Services: []string{"nginx", "php8.2-fpm"},
		Ports:    []spec.Port{{Name: "http", Port: 80, Protocol: "tcp"}, {Name: "syslog", Port: 514, Protocol: "udp"}},
		Health:   spec.Health{Type: "http", Port: 80, Path: "/health?x=<1>&y=2", Command: []string{"curl", "-f"}, Interval: "5s"},
		Discover: []string{"app", "db"},
		DiscoverPorts: map[string][]spec.Port{
			"app": {{Name: "fastcgi", Port: 9000, Protocol: "tcp"}},
			"db":  {{Name: "mysql", Port: 3306, Protocol: "tcp"}},
		},
		VIPs:      true,
		Exporters: []spec.Exporter{{Name: "nginx", Port: 9113, Path: "/metrics"}},
		Render: []spec.RenderService{{
			Service: "nginx",
			Files: []spec.RenderFile{
				{From: "tls-key", Path: "/etc/imgforge/tls/tls.key", Mode: 0o600, Owner: "root", Group: "root", Sensitive: true},
				{Template: "nginx.conf.tmpl", Path: "/etc/nginx/nginx.conf", Mode: 0o644, Check: []string{"nginx", "-t", "-c", "{candidate}"}},
			},
			Reload: [][]string{{"systemctl", "reload-or-restart", "nginx.service"}},
		}},
		Outputs: []string{"oci", "raw", "iso"},
		Disk:    spec.Disk{Size: 2 << 30, ESPSize: 64 << 20},
		Kernel:  spec.Kernel{Cmdline: "console=ttyS0 quiet"},
	}
}

// TestFormatGoldens pins the bytes of role.json, manifest.json and the
// build result: builds are reproducible, and their digests are compared
// across the CLI and the Packer plugin.
func TestFormatGoldens(t *testing.T) {
	p := goldenPlan()
	role, err := roleJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	bare := &plan.Plan{Role: "lb", Image: "debian-bookworm", Health: spec.Health{Type: "tcp", Port: 443}}
	roleBare, err := roleJSON(bare)
	if err != nil {
		t.Fatal(err)
	}

	arts := []imagemeta.Output{
		{Path: "oci", Format: "oci", Size: 123456, Digest: "sha256:1111"},
		{Path: "web.raw", Format: "raw", Size: 2147483648, Digest: "sha256:2222"},
		{Path: "web.iso", Format: "iso", Size: 300000000, Digest: "sha256:3333"},
		{Path: "sbom.spdx.json", Format: "spdx-json", Size: 999, Digest: "sha256:4444"},
	}
	planJSON, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	m := imagemeta.Manifest{
		Role: p.Role, Image: p.Image, PlanDigest: p.Digest(), ImageDigest: "sha256:5555", Tool: "imgforge v1.2.3 (abc)",
		Inputs: imagemeta.ManifestInputs{Plan: planJSON, Mmdebstrap: "mmdebstrap 1.3.5", Releases: map[string]string{"deb http://deb.debian.org/debian bookworm main": "sha256:6666"},
			SourceDateEpoch: p.SourceDateEpoch, StageKeys: map[string]string{"base": "k1", "role": "k2", "overlay": "k3"}},
		Outputs: arts,
		Disk: &imagemeta.Disk{KernelVersion: "6.1.0-18-amd64",
			Verity:     boot.Verity{RootHash: "aa", Salt: "bb", DataBlocks: 4096, HashStart: 4097},
			Cmdline:    "console=ttyS0 boot=imgforge imgforge.root=PARTUUID=x&y",
			Partitions: disk.IDs{Disk: "D", ESP: "E", Root: "R", Verity: "V", State: "S", RootB: "RB", VerityB: "VB", StateFS: "SF"},
			Layout: &imagemeta.DiskLayout{SlotSize: 512 << 20, VeritySize: 5 << 20, Labels: imagemeta.PartitionLabels{
				ESP: "esp", RootA: "web_0123456789ab", VerityA: "web_0123456789ab", RootB: "_empty", VerityB: "_empty", State: "imgforge-state"}},
			ISOCmdline: "console=ttyS0 imgforge.root=LABEL=X:/root.img", PXECmdline: "imgforge.root=${imgforge-base}/root.img"},
		Layers: []imagemeta.ManifestLayer{{Kind: "base", Digest: "sha256:7", DiffID: "sha256:8", Size: 10}, {Kind: "role", Digest: "sha256:9", DiffID: "sha256:a", Size: 11}},
		Packages: []imagemeta.ManifestPackage{{Name: "nginx", Version: "1.22.1-9", Architecture: "amd64", Source: "nginx"},
			{Name: "libc6", Version: "2.36-9", Architecture: "amd64"}},
	}
	manifest, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	bareJSON, err := json.Marshal(bare)
	if err != nil {
		t.Fatal(err)
	}
	mOCI := imagemeta.Manifest{Role: "lb", Image: "debian-bookworm", PlanDigest: "sha256:b", ImageDigest: "sha256:c", Tool: "dev",
		Inputs:  imagemeta.ManifestInputs{Plan: bareJSON, Releases: map[string]string{}},
		Outputs: arts[:1]}
	manifestOCI, err := mOCI.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	results, err := json.MarshalIndent([]*imagemeta.Result{{Role: "web", PlanDigest: "sha256:b", ImageDigest: "sha256:c", Dir: "/out/web", Artifacts: arts, Seconds: 12.5}}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string][]byte{
		"role.json":         role,
		"role-bare.json":    roleBare,
		"manifest.json":     manifest,
		"manifest-oci.json": manifestOCI,
		"results.json":      append(results, '\n'),
	} {
		golden := filepath.Join("testdata", "formats", name)
		if *update {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from %s:\n%s", name, golden, got)
		}
	}
}
