package render_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/render"
)

// fakeRunner records commands; fail makes a command (by its first word)
// fail with that output.
type fakeRunner struct {
	root string
	ran  []string
	fail map[string]string
	seen map[string][]byte // candidate contents the checkers saw
}

func (f *fakeRunner) Run(_ context.Context, argv []string) ([]byte, error) {
	f.ran = append(f.ran, strings.Join(argv, " "))
	for _, a := range argv {
		if strings.Contains(a, ".tmp-") {
			if i := strings.Index(a, "="); i >= 0 {
				a = a[i+1:]
			}
			b, err := os.ReadFile(filepath.Join(f.root, a))
			if err != nil {
				return nil, fmt.Errorf("the candidate %s is not on the node: %w", a, err)
			}
			if f.seen == nil {
				f.seen = map[string][]byte{}
			}
			f.seen[argv[0]] = b
		}
	}
	if out, ok := f.fail[argv[0]]; ok {
		return []byte(out), errors.New("exit status 1")
	}
	return nil, nil
}

// nodeRoot is a node's root with /etc/passwd and /etc/group that map the
// names the renderers use to the test's own ids (chown works unprivileged).
func nodeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	uid, gid := os.Getuid(), os.Getgid()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), fmt.Appendf(nil, "root:x:%d:%d::/root:/bin/sh\n", uid, gid), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), fmt.Appendf(nil, "root:x:%d:\nwww-data:x:%d:\nprometheus:x:%d:\n", gid, gid, gid), 0o644)
	return root
}

func testConfig(data string) *render.Config {
	return &render.Config{Role: "lb", Services: []render.Service{
		{
			Name: "svc",
			Files: []render.File{
				{Path: "/etc/svc/secret.key", Mode: 0o600, Owner: "root", Group: "root", Data: []byte("key-" + data), Sensitive: true},
				{Path: "/etc/svc/svc.conf", Mode: 0o644, Owner: "root", Group: "root", Data: []byte("conf " + data + "\n"),
					Check: []string{"svc-check", "-f", render.Candidate}},
			},
			Then: [][]string{{"systemctl", "reload-or-restart", "svc.service"}},
		},
		{
			Name:  "other",
			Files: []render.File{{Path: "/etc/other.conf", Mode: 0o640, Owner: "root", Group: "www-data", Data: []byte("other\n")}},
			Then:  [][]string{{"systemctl", "reload-or-restart", "other.service"}},
		},
	}}
}

func read(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestApply(t *testing.T) {
	ctx := context.Background()
	root := nodeRoot(t)
	run := &fakeRunner{root: root}
	a := &render.Applier{Root: root, Runner: run}

	rep, err := a.Apply(ctx, testConfig("v1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(run.ran, "; "); !strings.HasPrefix(got, "svc-check -f /etc/svc/.svc.conf.tmp-") ||
		!strings.HasSuffix(got, "systemctl reload-or-restart svc.service; systemctl reload-or-restart other.service") {
		t.Errorf("commands: %s", got)
	}
	if string(run.seen["svc-check"]) != "conf v1\n" {
		t.Errorf("the checker saw %q", run.seen["svc-check"])
	}
	if read(t, root, "etc/svc/svc.conf") != "conf v1\n" || read(t, root, "etc/svc/secret.key") != "key-v1" {
		t.Error("files not written")
	}
	for p, mode := range map[string]os.FileMode{"etc/svc/secret.key": 0o600, "etc/svc/svc.conf": 0o644, "etc/other.conf": 0o640} {
		if fi, _ := os.Stat(filepath.Join(root, p)); fi.Mode().Perm() != mode {
			t.Errorf("%s mode %o, want %o", p, fi.Mode().Perm(), mode)
		}
	}
	sum := sha256.Sum256([]byte("conf v1\n"))
	if f := rep.Services[0].Files[1]; f.Path != "/etc/svc/svc.conf" || f.SHA256 != hex.EncodeToString(sum[:]) || !f.Changed || !rep.Services[0].Changed {
		t.Errorf("report %+v", rep.Services[0])
	}
	if !rep.Services[0].Files[0].Sensitive {
		t.Error("the key is not reported sensitive")
	}
	leftovers, _ := filepath.Glob(filepath.Join(root, "etc/svc/.*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	// The same text again: nothing checked, nothing reloaded.
	run.ran = nil
	rep, err = a.Apply(ctx, testConfig("v1"))
	if err != nil || len(run.ran) != 0 || rep.Services[0].Changed || rep.Services[0].Files[1].Changed {
		t.Errorf("unchanged apply ran %v (err %v, report %+v)", run.ran, err, rep.Services[0])
	}
	if rep.Services[0].Files[1].SHA256 != hex.EncodeToString(sum[:]) {
		t.Error("an unchanged file is reported without its digest")
	}

	// A mode change alone is a change.
	run.ran = nil
	c := testConfig("v1")
	c.Services[1].Files[0].Mode = 0o644
	if _, err := a.Apply(ctx, c); err != nil || strings.Join(run.ran, ";") != "systemctl reload-or-restart other.service" {
		t.Errorf("mode change ran %v, err %v", run.ran, err)
	}
}

// TestApplyCheckFails keeps the last good files when the checker refuses
// the new one, reports the checker's error line, and reloads nothing.
func TestApplyCheckFails(t *testing.T) {
	ctx := context.Background()
	root := nodeRoot(t)
	run := &fakeRunner{root: root}
	a := &render.Applier{Root: root, Runner: run}
	if _, err := a.Apply(ctx, testConfig("v1")); err != nil {
		t.Fatal(err)
	}
	run.ran = nil
	run.fail = map[string]string{"svc-check": "[NOTICE] starting\n[ALERT] parsing [/etc/svc/.svc.conf.tmp-1:3]: unknown keyword 'x'\nFatal errors found"}
	rep, err := a.Apply(ctx, testConfig("v2"))
	if err == nil || !errors.Is(err, render.ErrCheck) {
		t.Fatalf("err = %v, want ErrCheck", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "checking /etc/svc/svc.conf with svc-check") || !strings.Contains(msg, "unknown keyword 'x'") || strings.Contains(msg, "\n") {
		t.Errorf("error %q does not name the file and the checker's first error line", msg)
	}
	if read(t, root, "etc/svc/svc.conf") != "conf v1\n" || read(t, root, "etc/svc/secret.key") != "key-v1" {
		t.Error("the last good files were not kept (the key written before the check must be put back)")
	}
	for _, cmd := range run.ran {
		if strings.HasPrefix(cmd, "systemctl") && strings.Contains(cmd, "svc.service") {
			t.Errorf("reloaded after a failed check: %s", cmd)
		}
	}
	if rep.Services[0].Error == "" || rep.Services[0].Changed || rep.Services[1].Error != "" {
		t.Errorf("report %+v", rep.Services)
	}
	sum := sha256.Sum256([]byte("conf v1\n"))
	if rep.Services[0].Files[1].SHA256 != hex.EncodeToString(sum[:]) {
		t.Error("the report does not show the file that stayed")
	}
	leftovers, _ := filepath.Glob(filepath.Join(root, "etc/svc/.*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	// The same failing files again: not tried again.
	run.ran = nil
	if _, err := a.Apply(ctx, testConfig("v2")); err == nil || len(run.ran) != 0 {
		t.Errorf("a known-bad set was tried again: %v (err %v)", run.ran, err)
	}
	// Other files: tried, and once the checker accepts them, kept.
	run.fail = nil
	if _, err := a.Apply(ctx, testConfig("v3")); err != nil || read(t, root, "etc/svc/svc.conf") != "conf v3\n" {
		t.Errorf("v3 not applied: %v", err)
	}
}

// TestApplyFirstRenderFails removes what a failed first render wrote.
func TestApplyFirstRenderFails(t *testing.T) {
	root := nodeRoot(t)
	run := &fakeRunner{root: root, fail: map[string]string{"svc-check": "bad"}}
	a := &render.Applier{Root: root, Runner: run}
	if _, err := a.Apply(context.Background(), testConfig("v1")); err == nil {
		t.Fatal("no error")
	}
	for _, p := range []string{"etc/svc/svc.conf", "etc/svc/secret.key"} {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s stayed after a failed first render", p)
		}
	}
	if read(t, root, "etc/other.conf") != "other\n" {
		t.Error("the other service's file was not written")
	}
}

// TestApplyReloadFails puts the previous files back when the reload
// fails, and runs the reload again with them.
func TestApplyReloadFails(t *testing.T) {
	ctx := context.Background()
	root := nodeRoot(t)
	run := &fakeRunner{root: root}
	a := &render.Applier{Root: root, Runner: run}
	if _, err := a.Apply(ctx, testConfig("v1")); err != nil {
		t.Fatal(err)
	}
	run.ran = nil
	run.fail = map[string]string{"systemctl": "Job for svc.service failed because the control process exited with error code."}
	_, err := a.Apply(ctx, testConfig("v2"))
	if err == nil || !strings.Contains(err.Error(), "systemctl reload-or-restart svc.service") || !strings.Contains(err.Error(), "previous files are back") {
		t.Fatalf("err = %v", err)
	}
	if read(t, root, "etc/svc/svc.conf") != "conf v1\n" {
		t.Error("the previous file is not back")
	}
	n := 0
	for _, c := range run.ran {
		if c == "systemctl reload-or-restart svc.service" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("reload ran %d times (want the failed one and one with the previous files): %v", n, run.ran)
	}
	// A command may fail for a while: the next Apply tries again.
	run.fail = nil
	if _, err := a.Apply(ctx, testConfig("v2")); err != nil || read(t, root, "etc/svc/svc.conf") != "conf v2\n" {
		t.Errorf("v2 not applied once the reload works: %v", err)
	}
}

func TestApplyUnknownGroup(t *testing.T) {
	root := nodeRoot(t)
	a := &render.Applier{Root: root, Runner: &fakeRunner{root: root}}
	c := testConfig("v1")
	c.Services[0].Files[0].Group = "nogroup"
	_, err := a.Apply(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), `group "nogroup" is not a group in the node's /etc/group`) {
		t.Errorf("err = %v", err)
	}
}

// TestApplyRendered applies every golden case to an empty node, then again:
// the second time changes nothing.
func TestApplyRendered(t *testing.T) {
	ctx := context.Background()
	for name, in := range goldenCases(t) {
		c, err := renderer(t).Render(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		root := nodeRoot(t)
		run := &fakeRunner{root: root}
		a := &render.Applier{Root: root, Runner: run}
		if _, err := a.Apply(ctx, c); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		run.ran = nil
		rep, err := a.Apply(ctx, c)
		if err != nil || len(run.ran) > 0 {
			t.Errorf("%s: second apply ran %v (err %v)", name, run.ran, err)
		}
		for _, s := range rep.Services {
			for _, f := range s.Files {
				if len(f.SHA256) != 64 {
					t.Errorf("%s: %s reported without a digest", name, f.Path)
				}
			}
		}
	}
}

// TestExecRunnerSettles runs systemctl reload-or-restart through a fake
// systemctl whose unit is starting for the first three state queries:
// the command runs only once the unit has started (a reload asked during
// the start would be folded into it, and the new file never loaded).
// Other commands run at once.
func TestExecRunnerSettles(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	script := `#!/bin/sh
log=` + log + `
if [ "$1" = show ]; then
  n=$(grep -c show "$log" 2>/dev/null); n=${n:-0}
  echo "show $*" >>"$log"
  if [ "$n" -lt 3 ]; then echo activating; else echo active; fi
  exit 0
fi
echo "run $*" >>"$log"
`
	sc := filepath.Join(dir, "systemctl")
	if err := os.WriteFile(sc, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := render.ExecRunner{Poll: time.Millisecond, SettleTimeout: 10 * time.Second}
	if _, err := r.Run(t.Context(), []string{sc, "reload-or-restart", "haproxy.service"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 5 || lines[4] != "run reload-or-restart haproxy.service" || !strings.HasPrefix(lines[3], "show ") {
		t.Errorf("the reload did not wait for the start to end:\n%s", b)
	}
	// Not a reload: no wait, no state query.
	os.Remove(log)
	if _, err := r.Run(t.Context(), []string{sc, "is-active", "haproxy.service"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(log); string(b) != "run is-active haproxy.service\n" {
		t.Errorf("is-active queried the state first:\n%s", b)
	}
	// A unit that never settles: an error naming it, and no reload.
	os.Remove(log)
	stuck := render.ExecRunner{Poll: time.Millisecond, SettleTimeout: 50 * time.Millisecond}
	if err := os.WriteFile(sc, []byte("#!/bin/sh\n[ \"$1\" = show ] && { echo active; echo reloading; exit 0; }\necho \"run $*\" >>"+log+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := stuck.Run(t.Context(), []string{sc, "reload", "a.service", "b.service"})
	if err == nil || !strings.Contains(err.Error(), "b.service is reloading") {
		t.Errorf("got %v, want an error saying b.service is reloading", err)
	}
	if _, err := os.Stat(log); err == nil {
		t.Errorf("the reload ran while b.service was reloading")
	}
}
