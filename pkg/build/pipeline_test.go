package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/spec"
)

// fakePlan is a small web role whose one template is conf.
func fakePlan(conf string) *plan.Plan {
	sum := sha256.Sum256([]byte(conf))
	digest := "sha256:" + hex.EncodeToString(sum[:])
	return &plan.Plan{
		Role: "web", Image: "debian-bookworm", Description: "test",
		Distribution: plan.Distribution{Name: "debian", Suite: "bookworm", Mirror: "http://127.0.0.1:1/debian",
			Components: []string{"main"}, Sources: []string{"deb http://127.0.0.1:1/debian bookworm main"}},
		Architecture: "amd64", SourceDateEpoch: 1700000000,
		BasePackages: []string{"systemd", "linux-image-amd64"}, Packages: []string{"nginx"},
		Files: []plan.File{
			{Path: "/etc/nginx", Type: "dir", Mode: 0o755, Owner: "root", Group: "root", Source: "test"},
			{Path: "/etc/nginx/nginx.conf", Type: "file", Mode: 0o644, Owner: "root", Group: "www-data", Size: int64(len(conf)), Digest: digest, Source: "test/nginx.conf"},
		},
		Blobs:    map[string][]byte{digest: []byte(conf)},
		Services: []string{"nginx"},
		Ports:    []spec.Port{{Name: "http", Port: 80, Protocol: "tcp"}},
		Outputs:  []string{"oci"},
		Disk:     spec.Disk{Size: 128 << 20, ESPSize: 16 << 20, SlotSize: 16 << 20},
	}
}

// stageEnds records how each stage ended.
type stageEnds struct {
	mu      sync.Mutex
	ended   map[string]string
	started int
	updates []string // "stage: message" of the updates a log shows
}

func (l *stageEnds) sink(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case e.Kind == StageEnded:
		l.ended[e.Stage] = e.Message
	case e.Kind == StageStarted:
		l.started++
	case e.Kind == StageUpdated && !e.Live:
		l.updates = append(l.updates, e.Stage+": "+e.Message)
	}
}

// runFake builds p with fake tools on c: its layers, its bootable root and
// its OCI layout. It returns the image digest and how each stage ended.
func runFake(t *testing.T, c *cache.Cache, tools Tools, p *plan.Plan) (string, map[string]string) {
	t.Helper()
	ctx := context.Background()
	log := &stageEnds{ended: map[string]string{}}
	b, err := New(ctx, Options{Cache: c, OutputDir: t.TempDir(), Tools: tools, Progress: NewProgress(log.sink, time.Now)})
	if err != nil {
		t.Fatal(err)
	}
	b.releases[p.Distribution.Sources[0]] = "sha256:5555" // no mirror to ask
	im, err := b.Layers(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Bootable(ctx, im); err != nil {
		t.Fatal(err)
	}
	res, err := b.writeOutputs(ctx, im)
	if err != nil {
		t.Fatal(err)
	}
	return res.ImageDigest, log.ended
}

// TestStagesCached runs base → role → overlay → initramfs → rootfs →
// outputs with fake tools: a second run finds every stage in the cache,
// and a template edit redoes only the overlay and what follows it.
func TestStagesCached(t *testing.T) {
	c, err := cache.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tools := newFakeTools()
	first, ended := runFake(t, c, tools, fakePlan("worker_processes 1;\n"))
	for _, st := range []string{"base", "packages", "overlay", "initramfs", "rootfs"} {
		if strings.HasPrefix(ended[st], "cached") || ended[st] == "failed" || ended[st] == "" {
			t.Errorf("first run: stage %s ended %q, want it built", st, ended[st])
		}
	}
	// squashfs and verity: the root and the overlay image.
	want := map[string]int{"base": 1, "role": 1, "chroot": 1, "squashfs": 2, "verity": 2}
	check := func(when string) {
		t.Helper()
		for k, n := range want {
			if got := tools.count(k); got != n {
				t.Errorf("%s: %s ran %d times, want %d", when, k, got, n)
			}
		}
	}
	check("first run")

	again, ended := runFake(t, c, tools, fakePlan("worker_processes 1;\n"))
	for _, st := range []string{"base", "packages", "overlay", "initramfs", "rootfs"} {
		if !strings.HasPrefix(ended[st], "cached") {
			t.Errorf("second run: stage %s ended %q, want cached", st, ended[st])
		}
	}
	check("second run")
	if again != first {
		t.Errorf("second run: image %s, first %s", again, first)
	}

	edited, ended := runFake(t, c, tools, fakePlan("worker_processes 2;\n"))
	// The root (base and role) stays as it was: only the overlay image
	// is made again.
	for st, cached := range map[string]bool{"base": true, "packages": true, "initramfs": true, "overlay": false, "rootfs": true, "overlay image": false} {
		if strings.HasPrefix(ended[st], "cached") != cached {
			t.Errorf("after a template edit: stage %s ended %q, want cached=%v", st, ended[st], cached)
		}
	}
	want["squashfs"], want["verity"] = 3, 3
	check("after a template edit")
	if edited == first {
		t.Errorf("the template edit did not change the image %s", first)
	}
}

// TestStageDamaged: a cached record whose blob is damaged is dropped and
// its stage rebuilt; a lookup cut short by a cancel keeps the record.
func TestStageDamaged(t *testing.T) {
	c, err := cache.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tools := newFakeTools()
	runFake(t, c, tools, fakePlan("a\n"))

	// Damage the base's compressed layer.
	var rec layerRecord
	b := &Builder{o: Options{Cache: c, Rootless: false}, mmdVersion: "mmdebstrap 0.0-fake", releases: map[string]string{}, verified: map[string]bool{}}
	p := fakePlan("a\n")
	b.releases[p.Distribution.Sources[0]] = "sha256:5555"
	bk, err := b.baseKey(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	key := cache.KeyOf(baseStage, bk)
	if !c.Get(baseStage, key, &rec) {
		t.Fatal("no base record")
	}
	if err := os.WriteFile(c.BlobPath(rec.Blob), []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.o.Progress = NewProgress(nil, time.Now)
	if _, _, err := runStage(ctx, b, p.Role, b.baseStage(), bk); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled base stage = %v, want context.Canceled", err)
	}
	if !c.Get(baseStage, key, &rec) {
		t.Fatal("a cancelled lookup dropped the base's record")
	}

	_, ended := runFake(t, c, tools, fakePlan("a\n"))
	if strings.HasPrefix(ended["base"], "cached") {
		t.Errorf("a damaged base was used: %q", ended["base"])
	}
	if got := tools.count("base"); got != 2 {
		t.Errorf("the base ran %d times, want 2", got)
	}
}
