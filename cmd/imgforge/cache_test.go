package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/cache"
)

func TestCacheCmd(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	c, err := cache.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i, role := range []string{"lb", "lb", "lb", "web"} {
		blob, err := c.PutBlob([]byte(role + strings.Repeat("x", i)))
		if err != nil {
			t.Fatal(err)
		}
		key := cache.Key(i)
		if err := c.Put("overlay-v2", key, map[string]string{"blob": blob}); err != nil {
			t.Fatal(err)
		}
		if err := c.RecordBuild(cache.BuildRecord{Role: role, Time: now.Add(time.Duration(i) * time.Hour), Image: "sha256:" + strings.Repeat(string(rune('a'+i)), 64),
			Stages: []cache.StageRef{{Stage: "overlay-v2", Key: key}}}); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(c.DebDir(), "a_1_amd64.deb"), []byte("deb"), 0o644)
	c.Close()

	cli := func(args ...string) (string, int, string) {
		var out, errb bytes.Buffer
		code := run(context.Background(), append(args, "--cache-dir", dir), &out, &errb, func(string) string { return "" })
		return out.String(), code, errb.String()
	}
	out, code, _ := cli("cache", "ls")
	if code != 0 || !strings.HasPrefix(out, "ROLE  BUILT                 IMAGE") || strings.Count(out, "\nlb ") != 3 || strings.Count(out, "\nweb ") != 1 ||
		strings.Index(out, "2026-11-30T14:00:00Z") > strings.Index(out, "2026-11-30T12:00:00Z") {
		t.Errorf("cache ls (%d):\n%s", code, out)
	}
	out, code, _ = cli("cache", "ls", "web", "-o", "json")
	var ls struct{ Builds []cache.BuildRecord }
	if code != 0 || json.Unmarshal([]byte(out), &ls) != nil || len(ls.Builds) != 1 || ls.Builds[0].Role != "web" || ls.Builds[0].Size == 0 {
		t.Errorf("cache ls web -o json (%d):\n%s", code, out)
	}
	out, code, _ = cli("cache", "du", "-o", "json")
	var u cache.Usage
	if code != 0 || json.Unmarshal([]byte(out), &u) != nil || u.DebFiles != 1 || u.Blobs == 0 || u.Total < u.Blobs {
		t.Errorf("cache du -o json (%d):\n%s", code, out)
	}
	if out, code, _ = cli("cache", "du"); code != 0 || !strings.Contains(out, "1 downloaded .deb files") || !strings.Contains(out, "total") {
		t.Errorf("cache du (%d):\n%s", code, out)
	}
	out, code, _ = cli("cache", "prune", "--keep", "1", "--dry-run")
	if code != 0 || !strings.Contains(out, "would remove build lb 2026-11-30T12:00:00Z") || !strings.Contains(out, "would remove 2 builds, 2 stage results, 2 blobs, 0 apt lists, 0 .deb files") {
		t.Errorf("cache prune --dry-run (%d):\n%s", code, out)
	}
	out, code, _ = cli("cache", "prune", "--keep", "1", "-o", "json")
	var pr cache.PruneResult
	if code != 0 || json.Unmarshal([]byte(out), &pr) != nil || len(pr.Builds) != 2 || pr.Blobs != 2 {
		t.Errorf("cache prune -o json (%d):\n%s", code, out)
	}
	if out, _, _ = cli("cache", "ls"); strings.Count(out, "\n") != 3 {
		t.Errorf("after prune --keep 1:\n%s", out)
	}
	if out, code, _ = cli("cache", "prune", "--debs"); code != 0 || !strings.Contains(out, "1 .deb files") {
		t.Errorf("cache prune --debs (%d):\n%s", code, out)
	}

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"cache", "prune"}, "say what to prune"},
		{[]string{"cache", "prune", "--keep", "0"}, "--keep 0: expected a number of builds of 1 or more"},
		{[]string{"cache", "prune", "--keep", "-1"}, "--keep -1"},
		{[]string{"cache", "prune", "--older-than", "soon"}, `--older-than "soon"`},
		{[]string{"cache", "bogus"}, `unknown command "bogus" for "imgforge cache"`},
		{[]string{"cache", "ls", "-o", "yaml"}, `--output "yaml"`},
	} {
		if _, code, stderr := cli(tt.args...); code != exitUsage || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, stderr, tt.want)
		}
	}
	var out2, errb bytes.Buffer
	if code := run(context.Background(), []string{"cache", "du", "--cache-dir", filepath.Join(dir, "none")}, &out2, &errb, func(string) string { return "" }); code != exitFailure {
		t.Errorf("cache du of a missing folder: exit %d, %s", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "none")); err == nil {
		t.Error("cache du made the cache folder")
	}
}

func TestParseAge(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{{"30d", 30 * 24 * time.Hour, true}, {"36h", 36 * time.Hour, true}, {"90m", 90 * time.Minute, true}, {"0d", 0, false}, {"-1h", 0, false}, {"d", 0, false}, {"1w", 0, false}} {
		got, err := parseAge(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseAge(%q) = %v, %v", tt.in, got, err)
		}
	}
}
