package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imgforge/imgforge/pkg/atomicfile"
)

// A build record (builds/ROLE/UNIXNANO.json) names the stage records one
// finished build of a role used. Prune keeps the stage records that the
// build records it keeps name, the blobs and apt lists those stage
// records name, and removes the rest.

// StageRef names a stage record: its stage version ("base-v1") and key.
type StageRef struct {
	Stage string `json:"stage"`
	Key   string `json:"key"`
}

// BuildRecord is what the cache keeps of one finished build of a role.
type BuildRecord struct {
	Role  string    `json:"role"`
	Time  time.Time `json:"time"`
	Image string    `json:"image,omitempty"` // the image digest
	Plan  string    `json:"plan,omitempty"`  // the plan digest
	// Stages are the stage records the build used, found or made.
	Stages []StageRef `json:"stages"`
	// Seconds is how long each stage that ran (not found in the cache)
	// took, by its name in progress lines ("base"): a display estimates
	// the next build's stages from it.
	Seconds map[string]float64 `json:"seconds,omitempty"`
	// Size is what the blobs the build's stage records name take, set by
	// Builds (blobs shared with other builds count in each).
	Size int64 `json:"size,omitempty"`

	file string // under builds/
}

// validRole is what a role's name may be (spec's rule, checked again here
// because it names a folder).
func validRole(r string) bool {
	if r == "" || len(r) > 63 {
		return false
	}
	for _, c := range r {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// Peek returns the cache at dir for reading (Builds, Usage) without
// locking it, so that it does not wait for a build that holds it; it
// writes nothing.
func Peek(dir string) (*Cache, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the cache: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("reading the cache: %s is not a folder", dir)
	}
	return &Cache{dir: dir}, nil
}

// RecordBuild stores r as a build record, atomically.
func (c *Cache) RecordBuild(r BuildRecord) error {
	if !validRole(r.Role) {
		return fmt.Errorf("recording a build: role %q is not a role name", r.Role)
	}
	r.Size = 0
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the build record: %w", err)
	}
	dir := filepath.Join(c.dir, "builds", r.Role)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("recording a build: %w", err)
	}
	return atomicfile.WriteFile(filepath.Join(dir, strconv.FormatInt(r.Time.UnixNano(), 10)+".json"), b, 0o644)
}

// Builds returns the build records, by role and newest first, each with
// the size of the blobs its stage records name.
func (c *Cache) Builds() ([]BuildRecord, error) {
	builds, err := c.readBuilds()
	if err != nil {
		return nil, err
	}
	sizes := map[string]int64{}
	for i := range builds {
		refs := map[string]bool{}
		for _, s := range builds[i].Stages {
			c.collectRecordRefs(s, refs)
		}
		for ref := range refs {
			if !isDigest(ref) {
				continue
			}
			n, ok := sizes[ref]
			if !ok {
				if fi, err := os.Stat(c.BlobPath(ref)); err == nil {
					n = fi.Size()
				}
				sizes[ref] = n
			}
			builds[i].Size += n
		}
	}
	return builds, nil
}

func (c *Cache) readBuilds() ([]BuildRecord, error) {
	var out []BuildRecord
	root := filepath.Join(c.dir, "builds")
	roles, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the build records: %w", err)
	}
	for _, r := range roles {
		files, err := os.ReadDir(filepath.Join(root, r.Name()))
		if err != nil {
			return nil, fmt.Errorf("reading the build records: %w", err)
		}
		for _, f := range files {
			if !strings.HasSuffix(f.Name(), ".json") {
				continue
			}
			rel := filepath.Join(r.Name(), f.Name())
			b, err := os.ReadFile(filepath.Join(root, rel))
			if err != nil {
				return nil, fmt.Errorf("reading the build records: %w", err)
			}
			var br BuildRecord
			if json.Unmarshal(b, &br) != nil || br.Role != r.Name() {
				continue // not one of ours; Prune removes it
			}
			br.file = rel
			out = append(out, br)
		}
	}
	slices.SortFunc(out, func(a, b BuildRecord) int {
		if a.Role != b.Role {
			return strings.Compare(a.Role, b.Role)
		}
		return b.Time.Compare(a.Time)
	})
	return out, nil
}

// StageEstimates returns, per role and stage name, how long the stage took
// the last time it ran (rather than being found in the cache), from the
// build records; the role "" holds each stage's time in any role, for a
// role that never ran it. Records it cannot read are left out.
func (c *Cache) StageEstimates() map[string]map[string]float64 {
	builds, err := c.readBuilds()
	if err != nil {
		return nil
	}
	slices.SortStableFunc(builds, func(a, b BuildRecord) int { return b.Time.Compare(a.Time) }) // newest first
	est := map[string]map[string]float64{"": {}}
	for _, b := range builds {
		if est[b.Role] == nil {
			est[b.Role] = map[string]float64{}
		}
		for stage, s := range b.Seconds {
			if _, ok := est[b.Role][stage]; !ok {
				est[b.Role][stage] = s
			}
			if _, ok := est[""][stage]; !ok {
				est[""][stage] = s
			}
		}
	}
	return est
}

// collectRecordRefs adds every string that the stage record ref holds to
// refs: the digests of its blobs and the names of its apt lists among
// them.
func (c *Cache) collectRecordRefs(ref StageRef, refs map[string]bool) {
	b, err := os.ReadFile(c.recordPath(ref.Stage, ref.Key))
	if err != nil {
		return
	}
	collectStrings(b, refs)
}

func collectStrings(b []byte, refs map[string]bool) {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return
	}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			refs[v] = true
		case []any:
			for _, e := range v {
				walk(e)
			}
		case map[string]any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
}

func isDigest(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	return ok && len(h) == 64 && strings.Trim(h, "0123456789abcdef") == ""
}

// Usage is what each part of the cache takes on disk, in bytes.
type Usage struct {
	Blobs  int64 `json:"blobs"`
	Stages int64 `json:"stages"`
	Builds int64 `json:"builds"`
	Lists  int64 `json:"lists"`
	Debs   int64 `json:"debs"`
	Tmp    int64 `json:"tmp"`
	Total  int64 `json:"total"`
	// DebFiles is how many .deb files debs/ holds.
	DebFiles int `json:"deb_files"`
}

// Usage measures the cache's parts (the blocks their files take).
func (c *Cache) Usage(ctx context.Context) (Usage, error) {
	var u Usage
	for _, p := range []struct {
		dir string
		n   *int64
	}{{"blobs", &u.Blobs}, {"stages", &u.Stages}, {"builds", &u.Builds}, {"lists", &u.Lists}, {"debs", &u.Debs}, {"tmp", &u.Tmp}} {
		err := filepath.WalkDir(filepath.Join(c.dir, p.dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if d.Type().IsRegular() {
				fi, err := d.Info()
				if err != nil {
					return nil // removed meanwhile
				}
				*p.n += diskSize(fi)
				if p.dir == "debs" && strings.HasSuffix(d.Name(), ".deb") {
					u.DebFiles++
				}
			}
			return nil
		})
		if err != nil {
			return u, fmt.Errorf("measuring the cache's %s: %w", p.dir, err)
		}
		u.Total += *p.n
	}
	return u, nil
}

// PruneOptions say which builds Prune forgets. A build is forgotten when
// it is older than the Keep newest builds of its role, or older than
// OlderThan; with neither set, only what no build record names goes.
type PruneOptions struct {
	// Keep is how many of each role's newest builds to keep; 0 keeps all.
	Keep int
	// OlderThan forgets builds (and stage records that no build names,
	// and .deb files) that are older; 0 forgets none by age.
	OlderThan time.Duration
	// Debs removes every downloaded .deb file (a build downloads what it
	// needs again).
	Debs bool
	// DryRun says what would go and removes nothing.
	DryRun bool
	// Now is the time OlderThan counts back from.
	Now time.Time
}

// PruneResult is what Prune removed (or, with DryRun, would remove).
type PruneResult struct {
	Builds  []BuildRecord `json:"builds"`
	Records int           `json:"records"`
	Blobs   int           `json:"blobs"`
	Lists   int           `json:"lists"`
	Debs    int           `json:"debs"`
	// Freed is the bytes the removed files took.
	Freed int64 `json:"freed"`
}

// Prune forgets builds as o says, then removes the stage records that no
// kept build names, then the blobs and apt lists that no remaining stage
// record names, and the .deb files o selects. Each removal is of one
// whole file (or a folder first moved into tmp/), and what names a file
// goes before the file: an interrupted Prune leaves a cache whose every
// record still has its blobs, and at worst files that no record names,
// which the next Prune removes.
func (c *Cache) Prune(ctx context.Context, o PruneOptions) (PruneResult, error) {
	var res PruneResult
	if o.Keep < 0 || o.OlderThan < 0 {
		return res, errors.New("pruning the cache: keep and older-than must not be negative")
	}
	cutoff := time.Time{}
	if o.OlderThan > 0 {
		cutoff = o.Now.Add(-o.OlderThan)
	}
	builds, err := c.readBuilds()
	if err != nil {
		return res, err
	}
	// 1. The build records that go.
	var kept []BuildRecord
	perRole := map[string]int{}
	for _, b := range builds { // by role, newest first
		perRole[b.Role]++
		if (o.Keep > 0 && perRole[b.Role] > o.Keep) || (!cutoff.IsZero() && b.Time.Before(cutoff)) {
			res.Builds = append(res.Builds, b)
			if err := c.remove(ctx, &res.Freed, o.DryRun, filepath.Join(c.dir, "builds", b.file)); err != nil {
				return res, err
			}
			continue
		}
		kept = append(kept, b)
	}
	// Anything else under builds/ is not a build record.
	if err := c.removeStray(ctx, &res.Freed, o.DryRun, builds); err != nil {
		return res, err
	}
	// 2. The stage records no kept build names; one that no build at all
	// names (an interrupted build's, or one from before build records) is
	// kept while younger than OlderThan.
	named := map[StageRef]bool{}
	for _, b := range kept {
		for _, s := range b.Stages {
			named[StageRef{s.Stage, strings.TrimPrefix(s.Key, "sha256:")}] = true
		}
	}
	everNamed := map[StageRef]bool{}
	for _, b := range builds {
		for _, s := range b.Stages {
			everNamed[StageRef{s.Stage, strings.TrimPrefix(s.Key, "sha256:")}] = true
		}
	}
	refs := map[string]bool{}
	stagesDir := filepath.Join(c.dir, "stages")
	stages, err := os.ReadDir(stagesDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("reading the stage records: %w", err)
	}
	for _, st := range stages {
		files, err := os.ReadDir(filepath.Join(stagesDir, st.Name()))
		if err != nil {
			return res, fmt.Errorf("reading the stage records: %w", err)
		}
		for _, f := range files {
			p := filepath.Join(stagesDir, st.Name(), f.Name())
			ref := StageRef{st.Name(), strings.TrimSuffix(f.Name(), ".json")}
			keep := named[ref]
			if !keep && !everNamed[ref] && !cutoff.IsZero() {
				if fi, err := f.Info(); err == nil && !fi.ModTime().Before(cutoff) {
					keep = true
				}
			}
			if keep {
				if b, err := os.ReadFile(p); err == nil {
					collectStrings(b, refs)
				}
				continue
			}
			res.Records++
			if err := c.remove(ctx, &res.Freed, o.DryRun, p); err != nil {
				return res, err
			}
		}
	}
	// 3. The blobs and apt lists no remaining record names.
	blobs, err := os.ReadDir(filepath.Join(c.dir, "blobs", "sha256"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("reading the blobs: %w", err)
	}
	for _, b := range blobs {
		if refs["sha256:"+b.Name()] {
			continue
		}
		res.Blobs++
		if err := c.remove(ctx, &res.Freed, o.DryRun, filepath.Join(c.dir, "blobs", "sha256", b.Name())); err != nil {
			return res, err
		}
	}
	lists, err := os.ReadDir(filepath.Join(c.dir, "lists"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("reading the apt lists: %w", err)
	}
	for _, l := range lists {
		if refs[l.Name()] {
			continue
		}
		res.Lists++
		if err := c.remove(ctx, &res.Freed, o.DryRun, filepath.Join(c.dir, "lists", l.Name())); err != nil {
			return res, err
		}
	}
	// 4. The .deb files.
	if o.Debs || !cutoff.IsZero() {
		debs, err := os.ReadDir(c.DebDir())
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("reading the .deb files: %w", err)
		}
		for _, d := range debs {
			if !d.Type().IsRegular() {
				continue
			}
			if !o.Debs {
				fi, err := d.Info()
				if err != nil || !fi.ModTime().Before(cutoff) {
					continue
				}
			}
			res.Debs++
			if err := c.remove(ctx, &res.Freed, o.DryRun, filepath.Join(c.DebDir(), d.Name())); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// removeStray removes what builds/ holds besides the build records
// (those Prune forgets it removes itself).
func (c *Cache) removeStray(ctx context.Context, freed *int64, dryRun bool, builds []BuildRecord) error {
	keep := map[string]bool{}
	for _, b := range builds {
		keep[b.file] = true
	}
	root := filepath.Join(c.dir, "builds")
	roles, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the build records: %w", err)
	}
	for _, r := range roles {
		if !r.IsDir() {
			if err := c.remove(ctx, freed, dryRun, filepath.Join(root, r.Name())); err != nil {
				return err
			}
			continue
		}
		files, _ := os.ReadDir(filepath.Join(root, r.Name()))
		for _, f := range files {
			rel := filepath.Join(r.Name(), f.Name())
			if keep[rel] {
				continue
			}
			if err := c.remove(ctx, freed, dryRun, filepath.Join(root, rel)); err != nil {
				return err
			}
		}
	}
	return nil
}

// remove removes the file or folder p, adding its size to freed. A folder
// is first renamed into tmp/, so that it goes whole or not at all: what an
// interruption leaves there, Open removes.
func (c *Cache) remove(ctx context.Context, freed *int64, dryRun bool, p string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("pruning the cache: %w", err)
	}
	if !fi.IsDir() {
		*freed += diskSize(fi)
		if dryRun {
			return nil
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("pruning the cache: %w", err)
		}
		return nil
	}
	_ = filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				*freed += diskSize(fi)
			}
		}
		return nil
	})
	if dryRun {
		return nil
	}
	tmp, err := c.TempDir("prune-")
	if err != nil {
		return fmt.Errorf("pruning the cache: %w", err)
	}
	dst := filepath.Join(tmp, filepath.Base(p))
	if err := os.Rename(p, dst); err != nil {
		return fmt.Errorf("pruning the cache: %w", err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("pruning the cache: %w", err)
	}
	return nil
}
