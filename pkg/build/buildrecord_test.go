package build

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/cache"
)

// TestBuildRecordAndPrune: a build records the stage records it used, so
// that pruning to the last build of a role keeps everything that build
// needs (the next build finds every stage cached) and drops the older
// build's overlay; --no-cache runs every stage again.
func TestBuildRecordAndPrune(t *testing.T) {
	ctx := context.Background()
	c, err := cache.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tools := newFakeTools()
	var last *stageEnds
	build := func(conf string, noCache bool) map[string]string {
		t.Helper()
		log := &stageEnds{ended: map[string]string{}}
		b, err := New(ctx, Options{Cache: c, OutputDir: t.TempDir(), Tools: tools, Progress: NewProgress(log.sink, time.Now), NoCache: noCache})
		if err != nil {
			t.Fatal(err)
		}
		b.releases[fakePlan(conf).Distribution.Sources[0]] = "sha256:5555"
		if _, err := b.BuildOne(ctx, fakePlan(conf)); err != nil {
			t.Fatal(err)
		}
		last = log
		return log.ended
	}
	build("worker_processes 1;\n", false)
	// The outputs stage names each file as it writes it; the stages are
	// as many as StagesOf says.
	if got, want := strings.Join(last.updates, "\n"), "outputs: writing oci\noutputs: writing sbom.spdx.json, sbom.cdx.json, manifest.json, SHA256SUMS"; !strings.Contains(got, want) {
		t.Errorf("updates:\n%s\nwant them to hold\n%s", got, want)
	}
	if n, _ := StagesOf([]string{"oci"}); last.started != n {
		t.Errorf("%d stages started, StagesOf says %d", last.started, n)
	}
	builds, err := c.Builds()
	if err != nil || len(builds) != 1 {
		t.Fatalf("builds %+v, %v", builds, err)
	}
	var stages []string
	for _, s := range builds[0].Stages {
		stages = append(stages, s.Stage)
	}
	if got := strings.Join(stages, " "); got != "base-v2 role-v3 overlay-v2" {
		t.Errorf("the build record names %q", got)
	}
	for _, st := range []string{"base", "packages", "overlay", "outputs"} {
		if _, ok := builds[0].Seconds[st]; !ok {
			t.Errorf("the build record has no time for %s: %v", st, builds[0].Seconds)
		}
	}

	ended := build("worker_processes 1;\n", true)
	for _, st := range []string{"base", "packages", "overlay"} {
		if strings.HasPrefix(ended[st], "cached") || ended[st] == "" {
			t.Errorf("--no-cache: stage %s ended %q, want it run", st, ended[st])
		}
	}
	if n := tools.count("base"); n != 2 {
		t.Errorf("--no-cache: mmdebstrap ran %d times, want 2", n)
	}

	build("worker_processes 2;\n", false) // another overlay
	res, err := c.Prune(ctx, cache.PruneOptions{Keep: 1, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Builds) != 2 || res.Records != 1 || res.Blobs == 0 {
		t.Errorf("prune %+v: want the two older builds and the first overlay's record and blobs gone", res)
	}
	ended = build("worker_processes 2;\n", false)
	for _, st := range []string{"base", "packages", "overlay"} {
		if !strings.HasPrefix(ended[st], "cached") {
			t.Errorf("after the prune: stage %s ended %q, want cached", st, ended[st])
		}
	}
	ended = build("worker_processes 1;\n", false)
	if strings.HasPrefix(ended["overlay"], "cached") || !strings.HasPrefix(ended["base"], "cached") {
		t.Errorf("the pruned overlay: %v, want it built again on the cached base", ended)
	}
}

// TestStagesOfBootable: a bootable build reports as many stages as
// StagesOf says, and the outputs stage names the PXE set.
func TestStagesOfBootable(t *testing.T) {
	ctx := context.Background()
	c, err := cache.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	log := &stageEnds{ended: map[string]string{}}
	b, err := New(ctx, Options{Cache: c, OutputDir: t.TempDir(), Tools: newFakeTools(), Progress: NewProgress(log.sink, time.Now), Formats: []string{"pxe"}})
	if err != nil {
		t.Fatal(err)
	}
	p := fakePlan("x\n")
	b.releases[p.Distribution.Sources[0]] = "sha256:5555"
	if _, err := b.BuildOne(ctx, p); err != nil {
		t.Fatal(err)
	}
	if n, _ := StagesOf([]string{"pxe"}); log.started != n {
		t.Errorf("%d stages started, StagesOf says %d", log.started, n)
	}
	if !slices.Contains(log.updates, "outputs: writing pxe/") {
		t.Errorf("updates %q", log.updates)
	}
}
