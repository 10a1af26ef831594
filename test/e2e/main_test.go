//go:build e2e

// Package e2e runs the imgforge binary against a real Debian mirror with
// mmdebstrap, and reads what it writes with skopeo, umoci and
// go-containerregistry. Run with: go test -tags e2e ./test/e2e
//
// The cold builds are shared between tests (see cold): every test that
// needs built images takes them from there, so the suite builds each role
// twice (the reproducibility check) and otherwise only what a test changes.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

var (
	binary  string // the imgforge binary under test
	repo    string // the repository root
	workdir string // shared scratch space for the whole run
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	repo, err = filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	workdir, err = os.MkdirTemp("", "imgforge-e2e-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(workdir)
	binary = filepath.Join(workdir, "imgforge")
	cmd := exec.Command("go", "build", "-o", binary, "./cmd/imgforge")
	cmd.Dir = repo
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building imgforge:", err)
		return 1
	}
	// The agent every image carries, next to imgforge as `make build`
	// puts it (and built the same way, so the images are the same).
	cmd = exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", filepath.Join(workdir, "imgforge-agent"), "./cmd/imgforge-agent")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building imgforge-agent:", err)
		return 1
	}
	for _, tool := range []string{"mmdebstrap", "skopeo", "umoci"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "e2e tests need %s (apt-get install %s)\n", tool, tool)
			return 1
		}
	}
	// The whole suite: the cold builds start now. Every test is
	// parallel and most wait for them; roleRoots must see them started.
	flag.Parse()
	if f := flag.Lookup("test.run"); f != nil && f.Value.String() == "" && os.Getenv("IMGFORGE_E2E_OUT") == "" {
		startColds.Do(startColdBuilds)
	}
	code := m.Run()
	if coldDone[0] != nil {
		for i := range coldDone {
			<-coldDone[i] // never leave a build running behind
		}
	}
	return code
}

// result is what one imgforge run gave.
type result struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

// imgforge runs the binary in dir with the cache at cacheDir.
func imgforge(t testing.TB, cacheDir, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+cacheDir)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running imgforge: %v", err)
	}
	return r
}

// buildJSON is the --output json of imgforge build.
type buildJSON struct {
	Results []*imagemeta.Result `json:"results"`
	Stages  []struct {
		Role, Stage, Result string
		Seconds             float64
	} `json:"stages"`
}

func mustBuild(t testing.TB, cacheDir, outDir string, args ...string) (buildJSON, result) {
	t.Helper()
	full := append([]string{"build", "--output-dir", outDir, "--output", "json"}, args...)
	r := imgforge(t, cacheDir, workdir, full...)
	if r.code != 0 {
		t.Fatalf("imgforge %s: exit %d\n%s", strings.Join(full, " "), r.code, r.stderr)
	}
	var b buildJSON
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil {
		t.Fatalf("reading build output: %v\n%s", err, r.stdout)
	}
	return b, r
}

// fixture is a cold build of every role into its own cache.
type fixture struct {
	cache, out string
	build      buildJSON
	run        result
}

var (
	coldDone [2]chan struct{}
	colds    [2]*fixture
	coldErr  [2]string
)

var allRoles = []string{"lb", "web", "app", "db"}

// startColdBuilds starts two cold builds of every role, each with its own
// empty cache, at once: tests wait for them with cold.
func startColdBuilds() {
	coldsMu.Lock()
	coldsOn = true
	coldsMu.Unlock()
	for i := range coldDone {
		coldDone[i] = make(chan struct{})
		go func() {
			defer close(coldDone[i])
			f := &fixture{cache: filepath.Join(workdir, fmt.Sprintf("cache%d", i)), out: filepath.Join(workdir, fmt.Sprintf("out%d", i))}
			args := append([]string{"build", "--output-dir", f.out, "--output", "json"}, allRoles...)
			cmd := exec.Command(binary, args...)
			cmd.Dir = workdir
			cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+f.cache)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			start := time.Now()
			err := cmd.Run()
			f.run = result{stdout: out.String(), stderr: errb.String(), elapsed: time.Since(start)}
			if err != nil {
				coldErr[i] = fmt.Sprintf("cold build %d: %v\n%s", i, err, f.run.stderr)
				return
			}
			if err := json.Unmarshal(out.Bytes(), &f.build); err != nil {
				coldErr[i] = fmt.Sprintf("cold build %d output: %v", i, err)
				return
			}
			fmt.Printf("cold build %d of %s: %.0fs\n%s", i, strings.Join(allRoles, " "), f.run.elapsed.Seconds(), f.run.stderr)
			colds[i] = f
		}()
	}
}

var (
	startColds sync.Once
	coldsMu    sync.Mutex
	coldsOn    bool
)

// coldStarted says whether a test of this run has started the cold
// builds (then others reuse them rather than building again).
func coldStarted() bool {
	coldsMu.Lock()
	defer coldsMu.Unlock()
	return coldsOn
}

// cold waits for cold build i (0 or 1) of every role; the first call starts
// both.
func cold(t testing.TB, i int) *fixture {
	t.Helper()
	// A developer's loop: IMGFORGE_E2E_OUT names a folder that `imgforge
	// build lb web app db --output-dir` filled, used as build 0 (with the
	// user's cache), so that one boot test runs without two cold builds;
	// with `-o json >DIR/build.json` the build's results too.
	if d := os.Getenv("IMGFORGE_E2E_OUT"); d != "" && i == 0 {
		cache, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		f := &fixture{cache: cache, out: d}
		// Its results, when the folder holds the build's -o json.
		if b, err := os.ReadFile(filepath.Join(d, "build.json")); err == nil {
			if err := json.Unmarshal(b, &f.build); err != nil {
				t.Fatalf("%s/build.json: %v", d, err)
			}
		}
		return f
	}
	startColds.Do(startColdBuilds)
	<-coldDone[i]
	if colds[i] == nil {
		t.Fatal(coldErr[i])
	}
	return colds[i]
}

func tool(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// copyTree copies the repository's role and image folders so a test can
// edit them.
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	tool(t, "cp", "-a", src, dst)
}

// noMountsUnder fails when anything is mounted below dir.
func noMountsUnder(t testing.TB, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), " "+dir) {
		t.Errorf("something is still mounted under %s", dir)
	}
}

// startImgforge starts the binary without waiting.
func startImgforge(t testing.TB, cacheDir string, stderr *syncBuffer, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = workdir
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+cacheDir)
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

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

// privateCache gives a test that damages the cache, or checks what a build
// left in it, a copy of f's cache of its own: another test's build in the
// shared cache would repair the damage first, or leave its work in tmp/.
// The copy's files are hard links (the cache adds and replaces entries,
// never writes into one), made while holding the cache's lock (as imgforge
// does, pkg/cache) so that no build is half-way through; the lock file and
// tmp/ are the copy's own.
func privateCache(t *testing.T, f *fixture) *fixture {
	t.Helper()
	src := filepath.Join(f.cache, "imgforge")
	cache := filepath.Join(t.TempDir(), "cache")
	dst := filepath.Join(cache, "imgforge")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(src, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "lock" || e.Name() == "tmp" {
			continue
		}
		tool(t, "cp", "-al", filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
	}
	c := *f
	c.cache = cache
	return &c
}
