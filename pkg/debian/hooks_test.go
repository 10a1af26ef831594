package debian

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// nasty are host paths and words that a shell would read as syntax.
var nasty = []string{
	`/home/a b/.cache/imgforge/debs`,
	`/tmp/x;touch${IFS}/tmp/PWNED`,
	`/tmp/$(touch /tmp/PWNED)`,
	"/tmp/`id`",
	`/tmp/it's "quoted" \ here\`,
}

// shellHooks returns the hooks mmdebstrap gives to sh -c: every hook that
// is not a special hook (copy-in, sync-in, tar-in, upload, ...).
func shellHooks(args []string) []string {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, "--") || !strings.Contains(a, "-hook=") {
			continue
		}
		_, script, _ := strings.Cut(a, "-hook=")
		verb, _, _ := strings.Cut(script, " ")
		switch verb {
		case "copy-in", "copy-out", "tar-in", "tar-out", "upload", "download", "sync-in", "sync-out":
			continue
		}
		out = append(out, script)
	}
	return out
}

// TestNoValueInShellHooks checks the audit of issue 11: no package name,
// host path or command word appears in a hook that a shell reads.
func TestNoValueInShellHooks(t *testing.T) {
	for _, p := range nasty {
		b := &Bootstrap{
			Suite: "bookworm", Architecture: "amd64", Sources: []string{"deb http://m.test/debian bookworm main"},
			Packages: []string{"haproxy", "mariadb-server=1:10.11.6-0+deb12u1"}, On: p + "/base.tar", ListsIn: p + "/lists",
			DebCache: p, ListsOut: p + "/out", Output: p + "/root.tar", TempDir: p,
		}
		c := &Chroot{On: p, Upload: map[string]string{p + "/in": "/etc/x"}, Download: map[string]string{"/tmp/y": p + "/y"},
			Commands: [][]string{{"mkinitramfs", "-o", "/tmp/i", "6.1.0-28-amd64"}}, Suite: "bookworm", TempDir: p}
		for _, args := range [][]string{b.Args(), c.Args()} {
			for _, h := range shellHooks(args) {
				for _, v := range []string{p, "haproxy", "mariadb", "mkinitramfs", "6.1.0"} {
					if strings.Contains(h, v) {
						t.Errorf("shell hook %q holds %q", h, v)
					}
				}
			}
		}
	}
}

// TestHookWord checks that special-hook words reach mmdebstrap whole,
// split as mmdebstrap splits them (Perl's Text::ParseWords::shellwords).
func TestHookWord(t *testing.T) {
	if _, err := exec.LookPath("perl"); err != nil {
		t.Skip("perl (which mmdebstrap needs) is not installed")
	}
	for _, p := range append(slices.Clone(nasty), "/plain/path_1.2+x", "/c/debs") {
		hook := "sync-in " + hookWord(p) + " /var/cache/apt/archives/"
		out, err := exec.Command("perl", "-MText::ParseWords", "-e", `print join("\0", shellwords($ARGV[0]))`, hook).Output()
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Split(string(out), "\x00")
		want := []string{"sync-in", p, "/var/cache/apt/archives/"}
		if !slices.Equal(got, want) {
			t.Errorf("%q split into %q, want %q", hook, got, want)
		}
	}
	if hookWord("/c/debs") != "/c/debs" {
		t.Error("a plain path is quoted")
	}
}

// TestArgvHook runs the install hook as mmdebstrap would (sh -c SCRIPT
// exec ROOT) with a chroot that records its arguments: every package
// arrives as one argument, and nothing in the list is run.
func TestArgvHook(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(dir, "args")
	if err := os.WriteFile(filepath.Join(bin, "chroot"), []byte("#!/bin/sh\nfor a; do printf '%s\\n' \"$a\"; done > "+record+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pwned := filepath.Join(dir, "PWNED")
	words := []string{"haproxy", "x;touch " + pwned, "$(touch " + pwned + ")", "`touch " + pwned + "`", "a b", "*"}
	hook := strings.TrimPrefix(argvHook("customize", packagesEnv, "apt-get", "install", "--yes"), "--customize-hook=")
	cmd := exec.CommandContext(context.Background(), "sh", "-c", hook, "exec", "/the/root")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), packagesEnv+"="+strings.Join(words, "\n"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hook failed: %v: %s", err, out)
	}
	data, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	want := append([]string{"/the/root", "apt-get", "install", "--yes"}, words...)
	if !slices.Equal(got, want) {
		t.Errorf("chroot got\n  %q\nwant\n  %q", got, want)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Error("a package name was run as a command")
	}
}

func TestRunRefuses(t *testing.T) {
	never := fakeMmdebstrap(t, "echo ran; exit 0")
	for _, tc := range []struct {
		name string
		b    Bootstrap
		want string
	}{
		{"package", Bootstrap{Packages: []string{"a;touch x"}}, `"a;touch x" is not a Debian package name`},
		{"source newline", Bootstrap{Sources: []string{"deb http://m/debian bookworm main\ndeb [trusted=yes] http://evil/ x main"}}, "holds a control character"},
		{"exclude newline", Bootstrap{Exclude: []string{"/usr/share/doc/*\npath-include=/x"}}, "holds a control character"},
		{"cache newline", Bootstrap{DebCache: "/c\n/d"}, "package cache"},
		{"suite", Bootstrap{Suite: "bookworm main"}, "suite"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b
			b.Command = never
			err := b.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	c := &Chroot{Commands: [][]string{{"mkinitramfs", "6.1\n; id"}}, Command: never}
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "control character") {
		t.Errorf("chroot err = %v", err)
	}
}

func TestChrootArgs(t *testing.T) {
	c := &Chroot{On: "/c/base.tar", Upload: map[string]string{"/t/in-0": "/usr/share/x"}, Download: map[string]string{"/tmp/i": "/t/i"},
		Commands: [][]string{{"chmod", "755", "/usr/share/x"}, {"mkinitramfs", "-o", "/tmp/i", "6.1.0-28-amd64"}}, Suite: "bookworm"}
	args := c.Args()
	for _, w := range []string{"--setup-hook=tar-in /c/base.tar /", "--customize-hook=upload /t/in-0 /usr/share/x", "--customize-hook=download /tmp/i /t/i",
		`--customize-hook=printf '%s\n' "$IMGFORGE_ARGV_1" | xargs --no-run-if-empty --delimiter='\n' chroot "$1"`} {
		if !slices.Contains(args, w) {
			t.Errorf("args lack %q:\n%s", w, strings.Join(args, "\n"))
		}
	}
	env := c.Env()
	want := []string{"IMGFORGE_ARGV_0=chmod\n755\n/usr/share/x", "IMGFORGE_ARGV_1=mkinitramfs\n-o\n/tmp/i\n6.1.0-28-amd64"}
	if !slices.Equal(env, want) {
		t.Errorf("Env = %q, want %q", env, want)
	}
}
