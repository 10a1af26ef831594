package seed

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"gopkg.in/yaml.v3"

	"github.com/imgforge/imgforge/pkg/spec"
	"github.com/imgforge/imgforge/roles"
)

var testTime = time.Date(2023, 11, 14, 22, 13, 20, 0, time.UTC)

func TestDefault(t *testing.T) {
	tests := []struct {
		name, id, host string
	}{
		{"plain", "lb-1", "lb-1"},
		{"quotes", `a"b\c`, "host: x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Default(tt.id, tt.host)
			var md struct {
				InstanceID    string `yaml:"instance-id"`
				LocalHostname string `yaml:"local-hostname"`
			}
			if err := yaml.Unmarshal(s.MetaData, &md); err != nil {
				t.Fatalf("meta-data: %v\n%s", err, s.MetaData)
			}
			if md.InstanceID != tt.id || md.LocalHostname != tt.host {
				t.Errorf("meta-data %+v", md)
			}
			if !bytes.HasPrefix(s.UserData, []byte("#cloud-config\n")) {
				t.Errorf("user-data does not start with #cloud-config: %q", s.UserData)
			}
			var ud map[string]any
			if err := yaml.Unmarshal(s.UserData, &ud); err != nil || len(ud) != 0 {
				t.Errorf("user-data %v, %v; want an empty cloud-config", ud, err)
			}
			if s.NetworkConfig != nil {
				t.Errorf("the default seed has a network-config: %s", s.NetworkConfig)
			}
		})
	}
}

func TestWriteDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "seed")
	s := Default("i-1", "h")
	s.NetworkConfig = []byte("version: 2\n")
	if err := WriteDir(dir, s); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][]byte{MetaDataFile: s.MetaData, UserDataFile: s.UserData, NetworkConfigFile: s.NetworkConfig} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestWriteISODeterministic(t *testing.T) {
	dir := t.TempDir()
	s := Default("web-1", "web-1")
	var images [][]byte
	for i, name := range []string{"a.iso", "b.iso"} {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // a second later: go-diskfs would stamp another time
		}
		p := filepath.Join(dir, name)
		if err := WriteISO(p, s, testTime); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		images = append(images, b)
	}
	if !bytes.Equal(images[0], images[1]) {
		t.Fatalf("two writes of the same seed differ (%d and %d bytes)", len(images[0]), len(images[1]))
	}
	if len(images[0])%2048 != 0 {
		t.Errorf("size %d is not a whole number of sectors", len(images[0]))
	}
	pvd := images[0][16*2048:]
	if got, want := string(pvd[813:829]), "2023111422132000"; got != want {
		t.Errorf("volume creation date %q, want %q", got, want)
	}
	if err := WriteISO(filepath.Join(dir, "c.iso"), s, testTime.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if c, _ := os.ReadFile(filepath.Join(dir, "c.iso")); bytes.Equal(c, images[0]) {
		t.Error("another modTime gave the same bytes")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, ".seed*")); len(leftovers) > 0 {
		t.Errorf("left behind %v", leftovers)
	}
}

func TestWriteISOReadBack(t *testing.T) {
	p := filepath.Join(t.TempDir(), "seed.iso")
	s := Seed{MetaData: []byte("instance-id: x\n"), UserData: []byte("#cloud-config\n"), NetworkConfig: []byte("version: 2\n")}
	if err := WriteISO(p, s, testTime); err != nil {
		t.Fatal(err)
	}
	d, err := diskfs.Open(p, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fs, err := d.GetFilesystem(0)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimRight(fs.Label(), " "); got != Label {
		t.Errorf("label %q, want %q", got, Label)
	}
	entries, err := fs.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	if want := []string{MetaDataFile, NetworkConfigFile, UserDataFile}; !slices.Equal(names, want) {
		t.Errorf("files %q, want %q", names, want)
	}
	for name, want := range map[string][]byte{MetaDataFile: s.MetaData, UserDataFile: s.UserData, NetworkConfigFile: s.NetworkConfig} {
		f, err := fs.Open(name)
		if err != nil {
			t.Errorf("opening %s: %v", name, err)
			continue
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestWriteISOXorriso(t *testing.T) {
	xorriso, err := exec.LookPath("xorriso")
	if err != nil {
		t.Skip("xorriso is not installed")
	}
	p := filepath.Join(t.TempDir(), "seed.iso")
	withNet := Default("i", "h")
	withNet.NetworkConfig = []byte("version: 2\n")
	if err := WriteISO(p, withNet, testTime); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(xorriso, "-indev", p, "-find", "/", "-type", "f").CombinedOutput()
	if err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}
	for _, name := range []string{MetaDataFile, UserDataFile, NetworkConfigFile} {
		if !strings.Contains(string(out), "'/"+name+"'") {
			t.Errorf("xorriso does not list /%s:\n%s", name, out)
		}
	}
	if !strings.Contains(string(out), "Volume id    : 'cidata'") {
		t.Errorf("xorriso does not report volume id cidata:\n%s", out)
	}
}

// testRoles are the embedded role definitions.
func testRoles(t testing.TB) Roles {
	t.Helper()
	r, err := LoadRoles(&spec.Catalog{Roles: []spec.Folder{{FS: roles.FS, Label: "embedded:roles"}}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
