package cache

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

var pruneNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// pruneFixture fills a cache: lb built twice (the second with another
// overlay), web once; lb and web share the base. Besides: an orphan blob,
// a stage record no build names (old and new), apt lists no record names,
// a stray file under builds/, and .deb files old and new. It returns the
// digests by name.
func pruneFixture(t *testing.T, c *Cache) map[string]string {
	t.Helper()
	d := map[string]string{}
	for _, n := range []string{"base", "basetar", "role", "overlay1", "overlay2", "web-role", "orphan", "unnamed-old", "unnamed-new"} {
		dg, err := c.PutBlob([]byte(n + " blob"))
		if err != nil {
			t.Fatal(err)
		}
		d[n] = dg
	}
	put := func(stage, key string, rec map[string]string, age time.Duration) StageRef {
		t.Helper()
		if err := c.Put(stage, key, rec); err != nil {
			t.Fatal(err)
		}
		at := pruneNow.Add(-age)
		if err := os.Chtimes(c.recordPath(stage, key), at, at); err != nil {
			t.Fatal(err)
		}
		return StageRef{Stage: stage, Key: key}
	}
	const k = "sha256:0000000000000000000000000000000000000000000000000000000000000"
	base := put("base-v1", k+"001", map[string]string{"blob": d["base"], "tar": d["basetar"], "lists": "0000000000000000000000000000000000000000000000000000000000000001"}, 3*time.Hour)
	role := put("role-v1", k+"002", map[string]string{"blob": d["role"]}, 3*time.Hour)
	ov1 := put("overlay-v2", k+"003", map[string]string{"blob": d["overlay1"]}, 3*time.Hour)
	ov2 := put("overlay-v2", k+"004", map[string]string{"blob": d["overlay2"]}, 30*time.Minute)
	webRole := put("role-v1", k+"005", map[string]string{"blob": d["web-role"]}, 3*time.Hour)
	put("rootfs-v1", k+"006", map[string]string{"blob": d["unnamed-old"]}, 3*time.Hour)
	put("rootfs-v1", k+"007", map[string]string{"blob": d["unnamed-new"]}, 10*time.Minute)
	for _, l := range []string{"0000000000000000000000000000000000000000000000000000000000000001", "0000000000000000000000000000000000000000000000000000000000000009"} {
		if err := os.MkdirAll(filepath.Join(c.Dir(), "lists", l, "partial"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(c.Dir(), "lists", l, "Release"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []BuildRecord{
		{Role: "lb", Time: pruneNow.Add(-2 * time.Hour), Image: "sha256:11", Stages: []StageRef{base, role, ov1}},
		{Role: "lb", Time: pruneNow.Add(-30 * time.Minute), Image: "sha256:12", Stages: []StageRef{base, role, ov2}},
		{Role: "web", Time: pruneNow.Add(-2 * time.Hour), Image: "sha256:21", Stages: []StageRef{base, webRole}},
	} {
		if err := c.RecordBuild(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.Dir(), "builds", "lb", "junk.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, age := range map[string]time.Duration{"old_1.0_amd64.deb": 48 * time.Hour, "new_1.0_amd64.deb": time.Minute} {
		p := filepath.Join(c.DebDir(), name)
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		at := pruneNow.Add(-age)
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// tree lists every file under the cache but the lock and tmp/.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "tmp" && e.IsDir() {
			return filepath.SkipDir
		}
		if !e.IsDir() && rel != "lock" {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// consistent checks that every stage record's blobs and apt lists are
// there and every build record's stage records.
func consistent(t *testing.T, c *Cache) {
	t.Helper()
	records, _ := filepath.Glob(filepath.Join(c.Dir(), "stages", "*", "*.json"))
	for _, r := range records {
		b, err := os.ReadFile(r)
		if err != nil {
			t.Fatal(err)
		}
		refs := map[string]bool{}
		collectStrings(b, refs)
		for ref := range refs {
			if isDigest(ref) {
				if _, err := os.Stat(c.BlobPath(ref)); err != nil {
					t.Errorf("record %s: blob %s: %v", r, ref, err)
				}
			} else if fi, err := os.Stat(filepath.Join(c.Dir(), "lists", ref)); err != nil || !fi.IsDir() {
				t.Errorf("record %s: lists %s: %v", r, ref, err)
			}
		}
	}
	builds, err := c.readBuilds()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range builds {
		for _, s := range b.Stages {
			if _, err := os.Stat(c.recordPath(s.Stage, s.Key)); err != nil {
				t.Errorf("build %s %s: stage record %v: %v", b.Role, b.Time, s, err)
			}
		}
	}
}

func TestPrune(t *testing.T) {
	tests := []struct {
		name       string
		o          PruneOptions
		wantBuilds []string // images of the forgotten builds
		wantGone   []string // blob names
		records    int
		lists      int
		debs       int
	}{
		{"keep 1", PruneOptions{Keep: 1}, []string{"sha256:11"}, []string{"overlay1", "orphan", "unnamed-old", "unnamed-new"}, 3, 1, 0},
		{"keep 2", PruneOptions{Keep: 2}, nil, []string{"orphan", "unnamed-old", "unnamed-new"}, 2, 1, 0},
		{"older than 1h", PruneOptions{OlderThan: time.Hour}, []string{"sha256:11", "sha256:21"}, []string{"overlay1", "web-role", "orphan", "unnamed-old"}, 3, 1, 1},
		{"debs", PruneOptions{Debs: true}, nil, []string{"orphan", "unnamed-old", "unnamed-new"}, 2, 1, 2},
	}
	for _, tt := range tests {
		for _, dry := range []bool{false, true} {
			name := tt.name
			if dry {
				name += " dry run"
			}
			t.Run(name, func(t *testing.T) {
				c := open(t, t.TempDir())
				d := pruneFixture(t, c)
				before := tree(t, c.Dir())
				o := tt.o
				o.Now, o.DryRun = pruneNow, dry
				res, err := c.Prune(context.Background(), o)
				if err != nil {
					t.Fatal(err)
				}
				var forgot []string
				for _, b := range res.Builds {
					forgot = append(forgot, b.Image)
				}
				if !slices.Equal(forgot, tt.wantBuilds) {
					t.Errorf("forgot builds %v, want %v", forgot, tt.wantBuilds)
				}
				if res.Blobs != len(tt.wantGone) || res.Records != tt.records || res.Lists != tt.lists || res.Debs != tt.debs || res.Freed <= 0 {
					t.Errorf("result %+v; want %d blobs, %d records, %d lists, %d debs", res, len(tt.wantGone), tt.records, tt.lists, tt.debs)
				}
				if dry {
					if after := tree(t, c.Dir()); !slices.Equal(after, before) {
						t.Errorf("a dry run changed the cache:\nbefore %v\nafter  %v", before, after)
					}
					return
				}
				for n, dg := range d {
					_, err := os.Stat(c.BlobPath(dg))
					if gone := slices.Contains(tt.wantGone, n); gone != errors.Is(err, fs.ErrNotExist) {
						t.Errorf("blob %s: %v, want gone=%v", n, err, gone)
					}
				}
				if _, err := os.Stat(filepath.Join(c.Dir(), "builds", "lb", "junk.json")); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("junk under builds/ kept: %v", err)
				}
				consistent(t, c)
				// A second prune with the same options has nothing left to do.
				again, err := c.Prune(context.Background(), o)
				if err != nil || len(again.Builds)+again.Records+again.Blobs+again.Lists+again.Debs != 0 {
					t.Errorf("second prune: %+v, %v", again, err)
				}
			})
		}
	}
}

// countdown is a context that ends after n calls of Err: Prune checks it
// before each removal, so it stops Prune after n removals, as an
// interruption would.
type countdown struct {
	context.Context
	n int
}

func (c *countdown) Err() error {
	if c.n <= 0 {
		return context.Canceled
	}
	c.n--
	return nil
}

// TestPruneInterrupted stops Prune after each of its removals in turn:
// the cache stays consistent (every record has its blobs, every build its
// records), and a later Prune finishes the work.
func TestPruneInterrupted(t *testing.T) {
	c0 := open(t, t.TempDir())
	pruneFixture(t, c0)
	full, err := c0.Prune(context.Background(), PruneOptions{Keep: 1, Now: pruneNow})
	if err != nil {
		t.Fatal(err)
	}
	want := tree(t, c0.Dir())
	steps := len(full.Builds) + full.Records + full.Blobs + full.Lists + 1 // + the junk file
	for n := 0; n < steps; n++ {
		c := open(t, t.TempDir())
		pruneFixture(t, c)
		_, err := c.Prune(&countdown{Context: context.Background(), n: n}, PruneOptions{Keep: 1, Now: pruneNow})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stopped after %d removals: %v", n, err)
		}
		consistent(t, c)
		if _, err := c.Prune(context.Background(), PruneOptions{Keep: 1, Now: pruneNow}); err != nil {
			t.Fatal(err)
		}
		if got := tree(t, c.Dir()); !slices.Equal(got, want) {
			t.Errorf("stopped after %d removals, then pruned again:\n%v\nwant\n%v", n, got, want)
		}
	}
}

func TestBuilds(t *testing.T) {
	c := open(t, t.TempDir())
	pruneFixture(t, c)
	builds, err := c.Builds()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, b := range builds {
		got = append(got, b.Role+" "+b.Image)
		if b.Size <= 0 {
			t.Errorf("%s %s: size %d", b.Role, b.Image, b.Size)
		}
	}
	if want := []string{"lb sha256:12", "lb sha256:11", "web sha256:21"}; !slices.Equal(got, want) {
		t.Errorf("builds %v, want %v (by role, newest first)", got, want)
	}
	if err := c.RecordBuild(BuildRecord{Role: "../x", Time: pruneNow}); err == nil || !strings.Contains(err.Error(), "not a role name") {
		t.Errorf("RecordBuild of ../x: %v", err)
	}
	u, err := c.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if u.Blobs <= 0 || u.Stages <= 0 || u.Builds <= 0 || u.Lists <= 0 || u.Debs <= 0 || u.DebFiles != 2 ||
		u.Total != u.Blobs+u.Stages+u.Builds+u.Lists+u.Debs+u.Tmp {
		t.Errorf("usage %+v", u)
	}
	b, _ := json.Marshal(u)
	if !strings.Contains(string(b), `"deb_files":2`) {
		t.Errorf("usage JSON %s", b)
	}
}

func TestStageEstimates(t *testing.T) {
	c := open(t, t.TempDir())
	for _, b := range []BuildRecord{
		{Role: "lb", Time: pruneNow.Add(-2 * time.Hour), Seconds: map[string]float64{"base": 90, "packages": 20}},
		{Role: "lb", Time: pruneNow.Add(-time.Hour), Seconds: map[string]float64{"overlay": 2}},
		{Role: "lb", Time: pruneNow, Seconds: map[string]float64{"overlay": 3}},
		{Role: "web", Time: pruneNow.Add(-3 * time.Hour), Seconds: map[string]float64{"base": 80, "packages": 30}},
	} {
		if err := c.RecordBuild(b); err != nil {
			t.Fatal(err)
		}
	}
	est := c.StageEstimates()
	for _, tt := range []struct {
		role, stage string
		want        float64
		ok          bool
	}{
		{"lb", "base", 90, true}, {"lb", "overlay", 3, true}, {"web", "packages", 30, true},
		{"", "base", 90, true}, // the newest of any role
		{"web", "overlay", 0, false}, {"", "rootfs", 0, false},
	} {
		got, ok := est[tt.role][tt.stage]
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s %s: %v %v, want %v %v", tt.role, tt.stage, got, ok, tt.want, tt.ok)
		}
	}
}
