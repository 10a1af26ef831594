package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTrialOf(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    time.Duration
		ok      bool
	}{
		{"console=ttyS0 boot=imgforge imgforge.slot=b imgforge.trial=180", 3 * time.Minute, true},
		{"boot=imgforge imgforge.slot=a", 0, false},
		{"imgforge.trial=0", 0, false},
		{"imgforge.trial=1e9", 0, false},
		{"imgforge.trial=;reboot", 0, false},
	} {
		f := filepath.Join(t.TempDir(), "cmdline")
		if err := os.WriteFile(f, []byte(tc.cmdline+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		got, ok := trialOf(f)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %v %v, want %v %v", tc.cmdline, got, ok, tc.want, tc.ok)
		}
	}
}
