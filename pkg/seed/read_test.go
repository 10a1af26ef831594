package seed

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadDir(t *testing.T) {
	md, ud, vd, nc := []byte("instance-id: x\n"), []byte("#cloud-config\n"), []byte("#cloud-config\npackages: []\n"), []byte("version: 2\n")
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("not yours"), 0o600)
	tests := []struct {
		name  string
		files map[string][]byte // nil value: a symbolic link out of the folder
		dirs  []string
		want  Seed
		err   string
	}{
		{"all four", map[string][]byte{MetaDataFile: md, UserDataFile: ud, VendorDataFile: vd, NetworkConfigFile: nc}, nil,
			Seed{MetaData: md, UserData: ud, VendorData: vd, NetworkConfig: nc}, ""},
		{"the two required", map[string][]byte{MetaDataFile: md, UserDataFile: ud}, nil, Seed{MetaData: md, UserData: ud}, ""},
		{"empty optional files", map[string][]byte{MetaDataFile: md, UserDataFile: ud, VendorDataFile: {}, NetworkConfigFile: {}}, nil,
			Seed{MetaData: md, UserData: ud, VendorData: []byte{}, NetworkConfig: []byte{}}, ""},
		{"no user-data", map[string][]byte{MetaDataFile: md}, nil, Seed{}, "user-data: no such file or directory (a NoCloud seed folder holds meta-data and user-data"},
		{"no meta-data", map[string][]byte{UserDataFile: ud}, nil, Seed{}, "meta-data: no such file"},
		{"user-data is a folder", map[string][]byte{MetaDataFile: md}, []string{UserDataFile}, Seed{}, "user-data is not a file"},
		{"link out of the folder", map[string][]byte{MetaDataFile: md, UserDataFile: nil}, nil, Seed{}, "user-data: path escapes from parent"},
		{"too large", map[string][]byte{MetaDataFile: md, UserDataFile: bytes.Repeat([]byte("#"), MaxFileSize+1)}, nil, Seed{}, "user-data is larger than 16 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				p := filepath.Join(dir, name)
				if data == nil {
					if err := os.Symlink(outside, p); err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, d := range tt.dirs {
				os.Mkdir(filepath.Join(dir, d), 0o755)
			}
			got, err := ReadDir(dir)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), dir) {
					t.Fatalf("error %v, want one naming %s and containing %q", err, dir, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []struct {
				name      string
				got, want []byte
			}{{"meta-data", got.MetaData, tt.want.MetaData}, {"user-data", got.UserData, tt.want.UserData},
				{"vendor-data", got.VendorData, tt.want.VendorData}, {"network-config", got.NetworkConfig, tt.want.NetworkConfig}} {
				if !bytes.Equal(f.got, f.want) || (f.got == nil) != (f.want == nil) {
					t.Errorf("%s = %q (nil %v), want %q (nil %v)", f.name, f.got, f.got == nil, f.want, f.want == nil)
				}
			}
		})
	}
	if _, err := ReadDir(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "reading the seed folder") {
		t.Errorf("a missing folder: %v", err)
	}
}

// TestWriteDirVendorData: a seed's vendor-data is written, and a stale one
// is removed when the seed has none.
func TestWriteDirVendorData(t *testing.T) {
	dir := t.TempDir()
	s := Seed{MetaData: []byte("instance-id: x\n"), UserData: []byte("#cloud-config\n"), VendorData: []byte("#cloud-config\n# vendor\n")}
	if err := WriteDir(dir, s); err != nil {
		t.Fatal(err)
	}
	back, err := ReadDir(dir)
	if err != nil || !bytes.Equal(back.VendorData, s.VendorData) {
		t.Fatalf("read back %q, %v", back.VendorData, err)
	}
	s.VendorData = nil
	if err := WriteDir(dir, s); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, VendorDataFile)); !os.IsNotExist(err) {
		t.Errorf("a stale vendor-data stayed: %v", err)
	}
}
