package esp

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf16"
)

func writeVar(t *testing.T, dir, name, value string) {
	t.Helper()
	b := []byte{6, 0, 0, 0}
	for _, c := range utf16.Encode([]rune(value)) {
		b = append(b, byte(c), byte(c>>8))
	}
	b = append(b, 0, 0)
	if err := os.WriteFile(filepath.Join(dir, name+"-"+loaderGUID), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPartUUID(t *testing.T) {
	dir := t.TempDir()
	if _, err := PartUUID(dir); !errors.Is(err, ErrNoLoader) {
		t.Fatalf("no variable: %v, want ErrNoLoader", err)
	}
	writeVar(t, dir, "LoaderDevicePartUUID", "B000AA40-D38E-4C63-86AB-957A1B996FD6")
	got, err := PartUUID(dir)
	if err != nil || got != "b000aa40-d38e-4c63-86ab-957a1b996fd6" {
		t.Fatalf("PartUUID = %q, %v", got, err)
	}
	// Boot data is checked before it names a device.
	writeVar(t, dir, "LoaderDevicePartUUID", "../../../dev/sda")
	if _, err := PartUUID(dir); err == nil {
		t.Fatal("a path was accepted as a PARTUUID")
	}
	if Counted(dir) {
		t.Error("Counted without LoaderBootCountPath")
	}
	writeVar(t, dir, "LoaderBootCountPath", `\loader\entries\imgforge-0002-b+2-1.conf`)
	if !Counted(dir) {
		t.Error("not Counted with LoaderBootCountPath")
	}
}
