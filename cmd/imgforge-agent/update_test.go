package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpdateNoRebootOnError: a failed update never reboots, even with
// --reboot; the flags are checked first.
func TestUpdateNoRebootOnError(t *testing.T) {
	rebooted := false
	old := rebootNode
	rebootNode = func() error { rebooted = true; return nil }
	t.Cleanup(func() { rebootNode = old })
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	os.WriteFile(cmdline, []byte("boot=imgforge imgforge.slot=a imgforge.root=PARTUUID=00000000-0000-4000-8000-000000000000\n"), 0o644)
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"-o", "yaml"}, `--output "yaml"`},
		{[]string{"--ca", filepath.Join(dir, "missing.pem")}, "--ca"},
		{nil, "no disk holds the root partition"},
	} {
		args := append([]string{"update", "http://127.0.0.1:1/sets/lb/", "--reboot", "--role-file", "",
			"--cmdline", cmdline, "--sys-block", dir, "--dev", dir, "--run-dir", filepath.Join(dir, "run"), "--esp", dir}, tc.args...)
		_, _, err := execute(context.Background(), args...)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.err)
		}
	}
	if rebooted {
		t.Error("a failed update rebooted the node")
	}
}
