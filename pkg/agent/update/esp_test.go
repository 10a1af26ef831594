package update

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestEntries(t *testing.T) {
	esp := t.TempDir()
	dir := filepath.Join(esp, "loader/entries")
	os.MkdirAll(dir, 0o755)
	for _, n := range []string{"imgforge-0003-b+2-1.conf", "imgforge-0001-a.conf", "imgforge-0002-a+0-3.conf", "imgforge.conf", "imgforge-1-a.conf", "imgforge-0004-c.conf", "other.conf", "imgforge-0005-b+3.conf.part"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	os.Mkdir(filepath.Join(dir, "imgforge-0009-a.conf"), 0o755)
	es, err := Entries(esp)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(es)
	want := "[{imgforge-0001-a.conf 1 a false} {imgforge-0002-a+0-3.conf 2 a true} {imgforge-0003-b+2-1.conf 3 b true}]"
	if got != want {
		t.Errorf("entries %s, want %s", got, want)
	}
	if entryName(12, "b", Tries) != "imgforge-0012-b+3.conf" {
		t.Error(entryName(12, "b", Tries))
	}
}

// TestClearSlot removes the slot's entries, kernel set and cut-short
// entry writes, and nothing of the other slot.
func TestClearSlot(t *testing.T) {
	esp := t.TempDir()
	for _, p := range []string{"loader/entries/imgforge-0001-a.conf", "loader/entries/imgforge-0002-b+3.conf", "loader/entries/imgforge-0003-b+0-3.conf",
		"loader/entries/" + tmpPrefix + "123", "imgforge/a/vmlinuz", "imgforge/b/vmlinuz", "imgforge/b/initrd.img.part"} {
		os.MkdirAll(filepath.Dir(filepath.Join(esp, p)), 0o755)
		os.WriteFile(filepath.Join(esp, p), []byte(p), 0o644)
	}
	if err := clearSlot(esp, "b"); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(espFiles(t, esp))
	for _, p := range []string{"loader/entries/imgforge-0001-a.conf", "imgforge/a/vmlinuz"} {
		if _, err := os.Stat(filepath.Join(esp, p)); err != nil {
			t.Errorf("%s removed", p)
		}
	}
	if n := len(espFiles(t, esp)); n != 2 {
		t.Errorf("left %s", got)
	}
}
