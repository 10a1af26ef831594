package main

// The acceptance test: a real `packer build` of example/lb.pkr.hcl with
// Packer v1.11.2 and this plugin, installed with `packer plugins install
// --path`, compared with `imgforge build lb` run with the same inputs.
// It runs when PACKER_ACC is set (the SDK's convention; `make test` sets
// it), with the packer binary from $PACKER or PATH.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const packerVersion = "1.11.2"

// acc is what the acceptance tests share: the packer binary, the plugin
// installed into its own plugin folder, and the environment to run in.
type acc struct {
	packer, imgforge, plugins, work string
	env                             []string
}

func setup(t *testing.T) *acc {
	t.Helper()
	if os.Getenv("PACKER_ACC") == "" {
		t.Skip("acceptance test: set PACKER_ACC=1 (make test does)")
	}
	a := &acc{packer: os.Getenv("PACKER"), work: t.TempDir()}
	if a.packer == "" {
		var err error
		if a.packer, err = exec.LookPath("packer"); err != nil {
			t.Fatal("no packer: set PACKER or put packer v" + packerVersion + " on PATH (make packer-tools builds it)")
		}
	}
	a.plugins = filepath.Join(a.work, "plugins")
	a.env = append(os.Environ(),
		"CHECKPOINT_DISABLE=1", // no update check: tests talk to nothing but loopback and the mirror
		"PACKER_PLUGIN_PATH="+a.plugins,
		"PACKER_CONFIG_DIR="+filepath.Join(a.work, "config"),
		"PACKER_NO_COLOR=1",
	)
	if out := a.run(t, "", a.packer, "version"); strings.TrimSpace(out) != "Packer v"+packerVersion {
		t.Fatalf("%s is %q, want Packer v%s", a.packer, out, packerVersion)
	}
	wd, _ := os.Getwd()
	plugin := filepath.Join(a.work, "packer-plugin-imgforge")
	a.run(t, wd, "go", "build", "-o", plugin, ".")
	a.imgforge = filepath.Join(a.work, "imgforge")
	a.run(t, filepath.Join(wd, ".."), "go", "build", "-o", a.imgforge, "./cmd/imgforge")
	// The agent both builds bake in, built as `make build` does.
	agent := filepath.Join(a.work, "imgforge-agent")
	a.run(t, filepath.Join(wd, ".."), "env", "CGO_ENABLED=0", "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", agent, "./cmd/imgforge-agent")
	a.env = append(a.env, "IMGFORGE_AGENT="+agent)
	out := a.run(t, a.work, a.packer, "plugins", "install", "--path", plugin, "github.com/imgforge/imgforge")
	if !strings.Contains(out, "Successfully installed plugin github.com/imgforge/imgforge") {
		t.Fatalf("packer plugins install said:\n%s", out)
	}
	return a
}

// run runs a command in dir and returns its output; a failure fails the test.
func (a *acc) run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, a.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func template(t *testing.T) string {
	p, err := filepath.Abs(filepath.Join("example", "lb.pkr.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAccPackerBuild builds lb with Packer and with the command line into
// two folders: every file has the same digest.
func TestAccPackerBuild(t *testing.T) {
	a := setup(t)
	tpl := template(t)
	a.run(t, a.work, a.packer, "validate", tpl)

	packerOut := filepath.Join(a.work, "packer-out")
	start := time.Now()
	out := a.run(t, a.work, a.packer, "build", "-machine-readable", "-var", "output_dir="+packerOut, tpl)
	t.Logf("packer build of lb: %.1fs", time.Since(start).Seconds())

	cliOut := filepath.Join(a.work, "cli-out")
	a.run(t, a.work, a.imgforge, "build", "--output-dir", cliOut, "lb")

	p, c := digests(t, filepath.Join(packerOut, "lb")), digests(t, filepath.Join(cliOut, "lb"))
	if len(p) < 5 {
		t.Fatalf("packer wrote only %v", p)
	}
	if fmt.Sprint(p) != fmt.Sprint(c) {
		t.Errorf("packer and imgforge build differ:\npacker:  %v\nimgforge: %v", p, c)
	}

	// Packer reports the artifact: its files and their digests.
	art := artifactString(out)
	sums, err := os.ReadFile(filepath.Join(packerOut, "lb", "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(sums)) {
		sum, name, _ := strings.Cut(strings.TrimSpace(line), "  ")
		if !strings.Contains(art, "\n  sha256:"+sum+" "+filepath.Join(packerOut, "lb", name)) {
			t.Errorf("packer's artifact does not list %s %s:\n%s", sum, name, art)
		}
	}
	if want := fmt.Sprintf(",artifact,0,files-count,%d\n", len(p)); !strings.Contains(out, want) {
		t.Errorf("packer's output has no %q:\n%s", want, out)
	}
}

// artifactString is the artifact's String() from packer's machine-readable
// output (commas and newlines escaped).
func artifactString(out string) string {
	for line := range strings.Lines(out) {
		if _, s, ok := strings.Cut(strings.TrimSpace(line), ",artifact,0,string,"); ok {
			return strings.NewReplacer(`%!(PACKER_COMMA)`, ",", `\n`, "\n").Replace(s)
		}
	}
	return ""
}

// digests maps every file under dir to its sha256.
func digests(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		// The outputs, not the build's own record of them (it holds inode
		// numbers and times, for no-op rebuilds).
		if err != nil || !d.Type().IsRegular() || d.Name() == ".imgforge-state.json" {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		m[rel] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAccPackerInterrupt presses Ctrl-C (SIGINT to packer's process
// group, as a terminal does) while the disk images are written: packer
// stops, the output folder stays empty, and no plugin process is left.
func TestAccPackerInterrupt(t *testing.T) {
	a := setup(t)
	out := filepath.Join(a.work, "interrupted")
	cmd := exec.Command(a.packer, "build", "-var", "output_dir="+out, template(t))
	cmd.Dir, cmd.Env = a.work, a.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var buf syncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever happens, leave nothing running
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The outputs stage (tens of seconds) begins when rootfs ends.
	start := time.Now()
	for !strings.Contains(buf.String(), "lb     rootfs") {
		select {
		case err := <-done:
			t.Fatalf("packer ended before the outputs stage: %v\n%s", err, buf.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("outputs stage reached after %.1fs", time.Since(start).Seconds())
	time.Sleep(2 * time.Second) // inside the disk writing
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	interrupted := time.Now()
	select {
	case <-done:
		t.Logf("packer stopped %.1fs after SIGINT", time.Since(interrupted).Seconds())
	case <-time.After(2 * time.Minute):
		t.Fatalf("packer did not stop within 2 minutes of SIGINT\n%s", buf.String())
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	t.Logf("packer exited with %d; its last lines:\n%s", cmd.ProcessState.ExitCode(), strings.Join(lines[max(0, len(lines)-6):], "\n"))
	if cmd.ProcessState.Success() {
		t.Errorf("packer succeeded after SIGINT:\n%s", buf.String())
	}
	if !strings.Contains(buf.String(), "cancelled") {
		t.Errorf("packer's output does not say the build was cancelled:\n%s", buf.String())
	}
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		t.Errorf("%s holds %s after the interrupted build", out, e.Name())
	}
	if left := processesUnder(t, a.work); len(left) > 0 {
		t.Errorf("processes left running after packer stopped: %v", left)
	}
}

// processesUnder lists running processes whose command line names a path
// under dir (the installed plugin, tools working in the output folder).
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var left []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if line := strings.ReplaceAll(string(b), "\x00", " "); strings.Contains(line, dir) {
			left = append(left, line)
		}
	}
	sort.Strings(left)
	return left
}

// syncBuffer collects a command's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
