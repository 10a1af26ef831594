package build

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/disk"
	"github.com/imgforge/imgforge/pkg/format"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/layer"
	"github.com/imgforge/imgforge/pkg/spec"
)

// TestOutputsRegistry checks that every format of pkg/format has one
// writer here, in the same order, and nothing else does.
func TestOutputsRegistry(t *testing.T) {
	var got []string
	for _, o := range outputs {
		got = append(got, o.format)
	}
	if !slices.Equal(got, format.Names()) {
		t.Errorf("writers %v, formats %v", got, format.Names())
	}
}

func TestPlanOutputs(t *testing.T) {
	for _, tc := range []struct {
		formats  []string
		bootable bool
		raw      bool
	}{
		{[]string{"oci"}, false, false},
		{[]string{"oci", "docker-archive"}, false, false},
		{[]string{"iso"}, true, false},
		{[]string{"pxe", "oci"}, true, false},
		{[]string{"qcow2"}, true, true},
		{[]string{"vmdk", "iso"}, true, true},
		{[]string{"raw"}, true, true},
		{[]string{"vhd"}, true, true},
		{[]string{"oci", "gce"}, true, true},
	} {
		outs, needs, err := planOutputs(tc.formats)
		if err != nil {
			t.Fatal(err)
		}
		if len(outs) != len(tc.formats) {
			t.Errorf("%v: %d writers", tc.formats, len(outs))
		}
		if needs&needBootable != 0 != tc.bootable || needs&needRaw != 0 != tc.raw {
			t.Errorf("%v: needs %b, want bootable=%v raw=%v", tc.formats, needs, tc.bootable, tc.raw)
		}
	}
	if _, _, err := planOutputs([]string{"oci", "tar"}); err == nil {
		t.Error("an unknown format was planned")
	}
}

// TestFakeOutputs writes the disk formats with fake tools: the raw disk
// is listed where the first disk format asked for it, and is removed when
// it was only the source of a qcow2.
func TestFakeOutputs(t *testing.T) {
	c, err := cache.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tools := newFakeTools()
	for _, tc := range []struct {
		formats []string
		want    []string // formats of the outputs, in order
		files   []string
		gone    []string
	}{
		{[]string{"qcow2", "oci", "raw", "pxe"}, []string{"raw", "qcow2", "oci", "pxe-kernel", "pxe-initrd", "pxe-root", "pxe-overlay", "ipxe", "spdx-json", "cyclonedx-json", "manifest", "sha256sums"},
			[]string{"web.raw", "web.qcow2", "oci/index.json", "pxe/boot.ipxe"}, nil},
		{[]string{"qcow2", "docker-archive"}, []string{"qcow2", "docker-archive", "spdx-json", "cyclonedx-json", "manifest", "sha256sums"},
			[]string{"web.qcow2", "web.docker.tar"}, []string{"web.raw"}},
	} {
		out := t.TempDir()
		b, err := New(context.Background(), Options{Cache: c, OutputDir: out, Tools: tools, Formats: tc.formats, Progress: NewProgress(nil, time.Now)})
		if err != nil {
			t.Fatal(err)
		}
		p := fakePlan("worker_processes 1;\n")
		b.releases[p.Distribution.Sources[0]] = "sha256:5555"
		res, err := b.BuildOne(context.Background(), p)
		if err != nil {
			t.Fatalf("%v: %v", tc.formats, err)
		}
		var got []string
		for _, a := range res.Artifacts {
			got = append(got, a.Format)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v: outputs %v, want %v", tc.formats, got, tc.want)
		}
		for _, f := range tc.files {
			if _, err := os.Stat(filepath.Join(out, "web", f)); err != nil {
				t.Errorf("%v: %v", tc.formats, err)
			}
		}
		for _, f := range tc.gone {
			if _, err := os.Stat(filepath.Join(out, "web", f)); err == nil {
				t.Errorf("%v: %s is left", tc.formats, f)
			}
		}
		m, err := os.ReadFile(filepath.Join(out, "web", "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(m), `"Root"`) {
			t.Errorf("%v: the manifest has no disk partitions: %s", tc.formats, m)
		}
		checkFakeSBOM(t, filepath.Join(out, "web"))
	}
}

// checkFakeSBOM checks what the SBOMs of a fake build read from its root
// filesystem (issue 16): the release from os-release in the package
// URLs, and the licence from a package's machine-readable copyright
// file; a package without one says NOASSERTION.
func checkFakeSBOM(t *testing.T, dir string) {
	t.Helper()
	var doc struct {
		Packages []struct {
			Name            string `json:"name"`
			LicenseDeclared string `json:"licenseDeclared"`
			ExternalRefs    []struct {
				Locator string `json:"referenceLocator"`
			} `json:"externalRefs"`
		} `json:"packages"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "sbom.spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	lic := map[string]string{}
	for _, p := range doc.Packages[1:] {
		lic[p.Name] = p.LicenseDeclared
		if len(p.ExternalRefs) != 1 || !strings.Contains(p.ExternalRefs[0].Locator, "&distro=debian-12") {
			t.Errorf("package %s: references %+v, want a purl with distro=debian-12", p.Name, p.ExternalRefs)
		}
	}
	if lic["nginx"] != "GPL-2.0-or-later" || lic["systemd"] != "NOASSERTION" {
		t.Errorf("declared licences %v, want nginx's from its copyright file and NOASSERTION for systemd", lic)
	}
	cdx, err := os.ReadFile(filepath.Join(dir, "sbom.cdx.json"))
	if err != nil || !strings.Contains(string(cdx), `"specVersion": "1.6"`) {
		t.Errorf("sbom.cdx.json: %v, %.200s", err, cdx)
	}
}

// TestRawSlotTooSmall: a root larger than disk.slot_size stops the raw
// disk with an error at the setting, and the manifest of a good build
// lists slot B and the state file system.
func TestRawSlotTooSmall(t *testing.T) {
	c, err := cache.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tools := newFakeTools()
	for _, tc := range []struct {
		slot spec.Size
		want string
	}{
		{1 << 20, `role web: images/mine.yaml:12:14: field "disk.slot_size": the slot size 1MiB cannot hold the root filesystem of `},
		{16 << 20, ""},
	} {
		b, err := New(context.Background(), Options{Cache: c, OutputDir: t.TempDir(), Tools: tools, Formats: []string{"raw"}, Progress: NewProgress(nil, time.Now)})
		if err != nil {
			t.Fatal(err)
		}
		// The root holds the base and role layers (templates are in the
		// overlay image): enough packages make it larger than a MiB.
		p := fakePlan("worker_processes 1;\n")
		for i := range 1000 {
			p.Packages = append(p.Packages, fmt.Sprintf("padding-package-%04d", i))
		}
		p.Disk.SlotSize = tc.slot
		p.DiskPos = map[string]spec.Pos{"disk.slot_size": {File: "images/mine.yaml", Line: 12, Col: 14, Field: "disk.slot_size"}}
		b.releases[p.Distribution.Sources[0]] = "sha256:5555"
		res, err := b.BuildOne(context.Background(), p)
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, disk.ErrSlotTooSmall) {
				t.Errorf("slot %d: err = %v, want %q", tc.slot, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		m, err := imagemeta.ReadManifest(filepath.Join(res.Dir, "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		ids, lay := m.Disk.Partitions, m.Disk.Layout
		if ids.RootB == "" || ids.VerityB == "" || ids.StateFS == "" || lay == nil || lay.SlotSize != 16<<20 ||
			lay.Labels.RootA != imagemeta.SlotLabel("web", imagemeta.Version(m.ImageDigest)) || lay.Labels.RootB != "_empty" {
			t.Errorf("the manifest's disk lacks slot B or the labels: %+v %+v", ids, lay)
		}
		if tools.count("statefs") == 0 {
			t.Error("the state file system was not made")
		}
	}
}

func TestLinkedDoc(t *testing.T) {
	idx := layer.Index{
		"usr/share/doc/gcc-12-base":           {Type: tar.TypeDir},
		"usr/share/doc/libstdc++6":            {Type: tar.TypeSymlink, Linkname: "gcc-12-base"},
		"usr/share/doc/abs":                   {Type: tar.TypeSymlink, Linkname: "/usr/share/doc/gcc-12-base"},
		"usr/share/doc/chain":                 {Type: tar.TypeSymlink, Linkname: "libstdc++6"},
		"usr/share/doc/loop":                  {Type: tar.TypeSymlink, Linkname: "loop"},
		"usr/share/doc/dangling":              {Type: tar.TypeSymlink, Linkname: "nothing"},
		"usr/share/doc/escape":                {Type: tar.TypeSymlink, Linkname: "../../../../etc"},
		"etc":                                 {Type: tar.TypeDir},
		"usr/share/doc/plain":                 {Type: tar.TypeDir},
		"usr/share/doc/gcc-12-base/copyright": {Type: tar.TypeReg},
	}
	for name, want := range map[string]string{
		"libstdc++6": "usr/share/doc/gcc-12-base/copyright",
		"abs":        "usr/share/doc/gcc-12-base/copyright",
		"chain":      "usr/share/doc/gcc-12-base/copyright",
		"loop":       "",
		"dangling":   "",
		"plain":      "", // its own copyright, if any, is read directly
		"missing":    "",
		// A link out of the doc folder names a file the Docs never hold.
		"escape": "etc/copyright",
	} {
		if got := linkedDoc(idx, name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
}
