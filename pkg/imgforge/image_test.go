package imgforge

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	diskfs "github.com/diskfs/go-diskfs"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/seed"
	"github.com/imgforge/imgforge/pkg/spec"
)

func TestFindImage(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	for _, p := range []string{"lb/lb.raw", "lb/lb.iso", "web/web.qcow2"} {
		os.MkdirAll(filepath.Join(out, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(out, p), nil, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "Web_01.img"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "x.vmdk"), nil, 0o644)
	os.Mkdir(filepath.Join(dir, "folder.raw"), 0o755)
	tests := []struct {
		arg, format string
		want        Image
		err         string
	}{
		{"lb", "", Image{Path: filepath.Join(out, "lb", "lb.raw"), Format: "raw", Name: "lb"}, ""},
		{"lb", "iso", Image{Path: filepath.Join(out, "lb", "lb.iso"), Format: "iso", Name: "lb"}, ""},
		{"web", "qcow2", Image{Path: filepath.Join(out, "web", "web.qcow2"), Format: "qcow2", Name: "web"}, ""},
		{filepath.Join(dir, "Web_01.img"), "", Image{Path: filepath.Join(dir, "Web_01.img"), Format: "raw", Name: "web-01"}, ""},
		{filepath.Join(dir, "x.vmdk"), "qcow2", Image{Path: filepath.Join(dir, "x.vmdk"), Format: "qcow2", Name: "x"}, ""},
		{"web", "", Image{}, "image " + filepath.Join(out, "web", "web.raw") + " not found: build role web first"},
		{filepath.Join(dir, "none.iso"), "", Image{}, "image " + filepath.Join(dir, "none.iso") + " not found"},
		{filepath.Join(dir, "x.vmdk"), "", Image{}, `cannot tell its format from the extension ".vmdk"`},
		{"lb", "vdi", Image{}, `image format "vdi": accepted: raw, qcow2, iso`},
		{filepath.Join(dir, "folder.raw"), "", Image{}, "is not a file"},
	}
	for _, tt := range tests {
		t.Run(tt.arg+" "+tt.format, func(t *testing.T) {
			got, err := FindImage(tt.arg, tt.format, out)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				if strings.Contains(err.Error(), "--") {
					t.Errorf("error %q names a flag", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
			if want := filepath.Join(filepath.Dir(got.Path), "manifest.json"); got.ManifestPath() != want {
				t.Errorf("ManifestPath %s, want %s", got.ManifestPath(), want)
			}
		})
	}
}

func TestHostName(t *testing.T) {
	for in, want := range map[string]string{"lb": "lb", "Web_01.test": "web-01-test", "--": "imgforge", strings.Repeat("a", 70): strings.Repeat("a", 63)} {
		if got := HostName(in); got != want {
			t.Errorf("HostName(%q) = %q, want %q", in, got, want)
		}
	}
}

// writeManifest writes the manifest of a build of p beside img, as
// package build does.
func writeManifest(t *testing.T, img Image, p *plan.Plan) {
	t.Helper()
	pj, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	m := imagemeta.Manifest{Role: p.Role, Inputs: imagemeta.ManifestInputs{Plan: pj}}
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img.ManifestPath(), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultForwards(t *testing.T) {
	dir := t.TempDir()
	web := Image{Path: filepath.Join(dir, "web", "web.raw")}
	os.Mkdir(filepath.Dir(web.Path), 0o755)
	writeManifest(t, web, &plan.Plan{Role: "web", Ports: []spec.Port{
		{Name: "http", Port: 80, Protocol: "tcp"}, {Name: "https", Port: 443},
		{Name: "dns", Port: 53, Protocol: "udp"}, {Name: "high", Port: 60000}, {Name: "ssh-again", Port: 22},
	}})
	tests := []struct {
		name string
		img  Image
		want []string
	}{
		{"manifest", web, []string{"127.0.0.1:10022->22/tcp", "127.0.0.1:10080->80/tcp", "127.0.0.1:10443->443/tcp", "127.0.0.1:10053->53/udp"}},
		{"no manifest", Image{Path: filepath.Join(dir, "lb.raw")}, []string{"127.0.0.1:10022->22/tcp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, f := range DefaultForwards(tt.img) {
				got = append(got, f.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestManifestPlan(t *testing.T) {
	if _, err := ManifestPlan(&imagemeta.Manifest{}); err == nil {
		t.Error("a manifest without a plan: no error")
	}
	if _, err := ManifestPlan(&imagemeta.Manifest{Inputs: imagemeta.ManifestInputs{Plan: json.RawMessage(`{"ports":"x"}`)}}); err == nil || !strings.Contains(err.Error(), "reading the manifest's plan") {
		t.Errorf("a bad plan: %v", err)
	}
}

// isoFiles reads the files of the root of an ISO.
func isoFiles(t *testing.T, path string) map[string]string {
	t.Helper()
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fs, err := d.GetFilesystem(0)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := fs.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		f, err := fs.Open(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	return files
}

func TestSeedISO(t *testing.T) {
	dir := t.TempDir()
	img := Image{Path: filepath.Join(dir, "lb.raw"), Format: "raw", Name: "lb"}
	os.WriteFile(img.Path, nil, 0o644)
	folder := filepath.Join(dir, "seed")
	os.Mkdir(folder, 0o755)
	files := map[string]string{seed.MetaDataFile: "instance-id: lb-1\n", seed.UserDataFile: "#cloud-config\n", seed.VendorDataFile: "#cloud-config\nbootcmd: [true]\n", seed.NetworkConfigFile: "version: 2\n"}
	for name, data := range files {
		os.WriteFile(filepath.Join(folder, name), []byte(data), 0o644)
	}
	given := filepath.Join(dir, "given.iso")
	os.WriteFile(given, []byte("an ISO"), 0o644)

	t.Run("folder", func(t *testing.T) {
		iso, err := SeedISO(folder, img, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		got := isoFiles(t, iso)
		for name, data := range files {
			if got[name] != data {
				t.Errorf("%s in the ISO: %q, want %q", name, got[name], data)
			}
		}
	})
	t.Run("default", func(t *testing.T) {
		iso, err := SeedISO("", img, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if got := isoFiles(t, iso)[seed.MetaDataFile]; !strings.Contains(got, `local-hostname: "lb"`) {
			t.Errorf("default meta-data %q", got)
		}
	})
	t.Run("iso", func(t *testing.T) {
		if iso, err := SeedISO(given, img, t.TempDir()); err != nil || iso != given {
			t.Errorf("got %s, %v; want %s as it is", iso, err, given)
		}
	})
	t.Run("missing", func(t *testing.T) {
		if _, err := SeedISO(filepath.Join(dir, "none"), img, t.TempDir()); err == nil || !strings.Contains(err.Error(), "reading the seed: stat") {
			t.Errorf("error %v", err)
		}
	})
}
