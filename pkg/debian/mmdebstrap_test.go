package debian

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestArgs(t *testing.T) {
	base := &Bootstrap{
		Suite: "bookworm", Architecture: "amd64", Sources: []string{"deb http://m.test/debian bookworm main"},
		Packages: []string{"systemd", "haproxy"}, Exclude: []string{"/usr/share/doc/*"}, Include: []string{"/usr/share/doc/*/copyright"},
		DebCache: "/c/debs", ListsOut: "/t/lists", Output: "/t/root.tar",
	}
	merged := *base
	merged.Packages = []string{"systemd", "usr-is-merged"}
	on := *base
	on.On, on.ListsIn, on.ListsOut, on.Rootless = "/c/base.tar", "/c/lists/x", "", true
	tests := []struct {
		name       string
		b          *Bootstrap
		want, lack []string
	}{
		{"base", base, []string{
			"--mode=root", "--variant=apt", "--include=systemd,haproxy", "--dpkgopt=path-exclude=/usr/share/doc/*",
			"--dpkgopt=path-include=/usr/share/doc/*/copyright", "--setup-hook=sync-in /c/debs /var/cache/apt/archives/",
			"--customize-hook=sync-out /var/cache/apt/archives /c/debs", "--customize-hook=sync-out /var/lib/apt/lists /t/lists",
			ownSyncedIn,
		}, []string{"--skip=update", "--variant=custom", "--hook-dir=" + MergedUsrHooks}},
		{"base with usr-is-merged", &merged, []string{"--variant=apt", "--include=systemd,usr-is-merged", "--hook-dir=" + MergedUsrHooks}, nil},
		{"on a base", &on, []string{
			"--mode=unshare", "--variant=custom", "--setup-hook=tar-in /c/base.tar /", "--skip=update",
			"--setup-hook=sync-in /c/lists/x /var/lib/apt/lists/",
			`--customize-hook=printf '%s\n' "$IMGFORGE_PACKAGES" | xargs --no-run-if-empty --delimiter='\n' chroot "$1" apt-get install --yes --no-install-recommends -o Dpkg::Use-Pty=false`,
			ownSyncedIn,
		}, []string{"--variant=apt", "--include=systemd,haproxy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.b.Args()
			joined := "\x00" + strings.Join(args, "\x00") + "\x00"
			for _, w := range tt.want {
				if !strings.Contains(joined, "\x00"+w+"\x00") {
					t.Errorf("args lack %q:\n%s", w, strings.Join(args, "\n"))
				}
			}
			for _, l := range tt.lack {
				if strings.Contains(joined, "\x00"+l+"\x00") {
					t.Errorf("args have %q", l)
				}
			}
			// What sync-in copies has the owners it has outside (the
			// user's id, without root): the chown comes after the copies.
			if last, own := strings.LastIndex(joined, "--setup-hook=sync-in "), strings.Index(joined, ownSyncedIn); own >= 0 && own < last {
				t.Errorf("%q comes before a sync-in hook", ownSyncedIn)
			}
			// Suite, output and sources end the command line, in that order.
			tail := args[len(args)-3:]
			if tail[0] != "bookworm" || tail[1] != "/t/root.tar" || tail[2] != "deb http://m.test/debian bookworm main" {
				t.Errorf("command line ends %q", tail)
			}
			if !strings.Contains(joined, "ssh_host_") {
				t.Error("host keys are not removed")
			}
		})
	}
}

// fakeMmdebstrap writes a script that prints lines and exits with code.
func fakeMmdebstrap(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mmdebstrap")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRunErrors(t *testing.T) {
	tests := []struct {
		name, script, want string
		missing            string
	}{
		{"missing", "echo 'I: downloading'; echo 'E: Unable to locate package nosuch' >&2; exit 1", "", "nosuch"},
		{"no candidate", "echo \"E: Package 'virtual' has no installation candidate\"; exit 1", "", "virtual"},
		{"other", "echo 'E: mount failed' >&2; exit 3", "mmdebstrap failed: mount failed (exit status 3)", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log strings.Builder
			b := &Bootstrap{Suite: "bookworm", Architecture: "amd64", Output: "/dev/null", Log: &log, Command: fakeMmdebstrap(t, tt.script)}
			err := b.Run(context.Background())
			var mp *MissingPackageError
			switch {
			case tt.missing != "":
				if !errors.As(err, &mp) || mp.Package != tt.missing {
					t.Fatalf("err = %v, want a missing package %q", err, tt.missing)
				}
			default:
				if err == nil || err.Error() != tt.want {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
			}
			if !strings.Contains(log.String(), "E: ") {
				t.Errorf("log did not receive the output: %q", log.String())
			}
		})
	}
}

func TestRunCancelStopsTheTool(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "terminated")
	// The fake tool cleans up on SIGTERM, as mmdebstrap does.
	b := &Bootstrap{Output: "/dev/null", Command: fakeMmdebstrap(t, "trap 'touch "+marker+"; exit 1' TERM; while :; do sleep 0.1; done")}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, err := os.Stat(marker); err != nil {
		t.Error("the tool did not get SIGTERM")
	}
}
