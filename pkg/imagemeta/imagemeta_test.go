package imagemeta

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// builderGoldens are the files package build's TestFormatGoldens pins:
// what the writer gives for representative values.
const builderGoldens = "../build/testdata/formats"

// TestReadWhatTheBuilderWrites parses each file the builder writes and
// marshals it again: the bytes must not change, so a reader loses
// nothing and a writer using these types keeps every image's digest.
func TestReadWhatTheBuilderWrites(t *testing.T) {
	for _, name := range []string{"manifest.json", "manifest-oci.json"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(builderGoldens, name)
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := ReadManifest(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("read and written again:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	for _, name := range []string{"role.json", "role-bare.json"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(builderGoldens, name)
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			r, err := ReadRoleInfo(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("read and written again:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestManifestFields(t *testing.T) {
	m, err := ReadManifest(filepath.Join(builderGoldens, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Disk == nil || m.Disk.Verity.DataBlocks != 4096 || m.Disk.Partitions.Root != "R" || m.Disk.PXECmdline == "" {
		t.Errorf("disk %+v", m.Disk)
	}
	if len(m.Outputs) != 4 || m.Outputs[1] != (Output{Path: "web.raw", Format: "raw", Size: 2147483648, Digest: "sha256:2222"}) {
		t.Errorf("outputs %+v", m.Outputs)
	}
	if len(m.Inputs.Plan) == 0 || m.Inputs.StageKeys["overlay"] != "k3" || len(m.Packages) != 2 || m.Layers[1].Kind != "role" {
		t.Errorf("inputs, packages or layers lost: %+v", m)
	}
}

func TestReadErrors(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"bad.json": "{", "norole.json": `{"image":"x"}`, "types.json": `{"role":"lb","ports":"80"}`} {
		os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644)
	}
	tests := []struct {
		name string
		read func() error
		want string
	}{
		{"manifest missing", func() error { _, err := ReadManifest(filepath.Join(dir, "none")); return err }, "reading the manifest: open "},
		{"manifest syntax", func() error { _, err := ReadManifest(filepath.Join(dir, "bad.json")); return err }, "manifest " + filepath.Join(dir, "bad.json") + ": unexpected end of JSON input"},
		{"role missing", func() error { _, err := ReadRoleInfo(filepath.Join(dir, "none")); return err }, "reading the role file: open "},
		{"role syntax", func() error { _, err := ReadRoleInfo(filepath.Join(dir, "bad.json")); return err }, filepath.Join(dir, "bad.json") + ": unexpected end"},
		{"role without role", func() error { _, err := ReadRoleInfo(filepath.Join(dir, "norole.json")); return err }, `field "role" is missing`},
		{"role types", func() error { _, err := ReadRoleInfo(filepath.Join(dir, "types.json")); return err }, "cannot unmarshal string"},
		{"sums missing", func() error { _, err := ReadSums(filepath.Join(dir, "none")); return err }, "reading the checksums: open "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.read()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

const (
	sumA = "0000000000000000000000000000000000000000000000000000000000000000"
	sumB = "1111111111111111111111111111111111111111111111111111111111111111"
)

// TestSums checks SHA256SUMS as the builder wrote it before this package:
// "SHA256  PATH" lines sorted by path, each ending in a newline.
func TestSums(t *testing.T) {
	sums := map[string]string{"web.raw": sumA, "oci/index.json": sumB, "manifest.json": sumA, "a b.txt": sumB}
	want := sumB + "  a b.txt\n" + sumA + "  manifest.json\n" + sumB + "  oci/index.json\n" + sumA + "  web.raw\n"
	got := MarshalSums(sums)
	if string(got) != want {
		t.Errorf("MarshalSums:\n%s\nwant:\n%s", got, want)
	}
	back, err := ParseSums(bytes.NewReader(got))
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(sums) {
		t.Fatalf("ParseSums gave %v", back)
	}
	for p, s := range sums {
		if back[p] != s {
			t.Errorf("ParseSums: %s = %q, want %q", p, back[p], s)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, SumsName), got, 0o644)
	if r, err := ReadSums(dir); err != nil || len(r) != 4 {
		t.Errorf("ReadSums: %v %v", r, err)
	}
}

func TestParseSumsErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{sumA + " web.raw\n", `line 1: "` + sumA + ` web.raw" is not "SHA256  FILE"`},
		{sumA[:63] + "  web.raw\n", "line 1:"},
		{strings.Repeat("AB", 32) + "  web.raw\n", "line 1:"},
		{sumA + "  \n", "line 1:"},
		{sumA + "  a\n" + sumB + "  a\n", "line 2: a is listed twice"},
	} {
		if _, err := ParseSums(strings.NewReader(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSums(%q): %v, want %q", tt.in, err, tt.want)
		}
	}
}

// FuzzParseSums: whatever SHA256SUMS holds, ParseSums does not panic,
// and what it accepts is written back as it was read when the input was
// sorted and each line ended in a newline.
func FuzzParseSums(f *testing.F) {
	f.Add([]byte(sumA + "  web.raw\n" + sumB + "  x/y z\n"))
	f.Add([]byte(sumA + "  a\n" + sumA + "  a\n"))
	f.Add([]byte("\n"))
	f.Add([]byte(sumA + "  a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sums, err := ParseSums(bytes.NewReader(data))
		if err != nil {
			return
		}
		again, err := ParseSums(bytes.NewReader(MarshalSums(sums)))
		if err != nil || len(again) != len(sums) {
			t.Fatalf("written back and read again: %v, %d of %d", err, len(again), len(sums))
		}
		for p, s := range sums {
			if again[p] != s {
				t.Fatalf("%s: %q, want %q", p, again[p], s)
			}
		}
	})
}

func TestSlotLabel(t *testing.T) {
	for _, c := range []struct{ role, digest, want string }{
		{"lb", "sha256:0123456789abcdef0123", "lb_0123456789ab"},
		{"web", "0123456789abcdef", "web_0123456789ab"},
		// 36 UTF-16 units at most: the role is shortened, never the version.
		{"a-very-long-role-name-that-goes-on", "sha256:fedcba9876543210", "a-very-long-role-name-t_fedcba987654"},
	} {
		got := SlotLabel(c.role, Version(c.digest))
		if got != c.want || len(got) > MaxLabel {
			t.Errorf("SlotLabel(%q, Version(%q)) = %q, want %q", c.role, c.digest, got, c.want)
		}
		role, version, ok := ParseSlotLabel(got)
		if !ok || version != Version(c.digest) || !strings.HasPrefix(c.role, role) {
			t.Errorf("ParseSlotLabel(%q) = %q, %q, %v", got, role, version, ok)
		}
	}
	for _, bad := range []string{EmptySlotLabel, "", "lb", "lb_", "_0123456789ab", "lb_0123456789aB", "lb_0123456789a", "lb_0123456789abc", "root-x86-64"} {
		if r, v, ok := ParseSlotLabel(bad); ok {
			t.Errorf("ParseSlotLabel(%q) = %q, %q, true; want not a version", bad, r, v)
		}
	}
}
