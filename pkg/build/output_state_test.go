package build

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/sign"
)

// outputsEnd records how the outputs stage ended.
type outputsEnd struct {
	mu  sync.Mutex
	msg string
}

func (o *outputsEnd) sink(e Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if e.Kind == StageEnded && e.Stage == "outputs" {
		o.msg = e.Message
	}
}

// buildInto builds p's formats into out with fake tools; it returns the
// result and whether the outputs were kept as they were.
func buildInto(t testing.TB, c *cache.Cache, tools Tools, out string, formats []string, toolDigest string, p *plan.Plan) (*imagemeta.Result, bool) {
	t.Helper()
	return buildSigned(t, c, tools, out, formats, toolDigest, p, nil)
}

// buildSigned is buildInto with a signing key (none when s is nil).
func buildSigned(t testing.TB, c *cache.Cache, tools Tools, out string, formats []string, toolDigest string, p *plan.Plan, s *sign.Signer) (*imagemeta.Result, bool) {
	t.Helper()
	end := &outputsEnd{}
	b, err := New(context.Background(), Options{Cache: c, OutputDir: out, Tools: tools, Formats: formats, ToolDigest: toolDigest,
		ToolVersion: "imgforge test", Progress: NewProgress(end.sink, time.Now), Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	b.releases[p.Distribution.Sources[0]] = "sha256:5555"
	res, err := b.BuildOne(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	res.Seconds = 0
	return res, strings.HasSuffix(end.msg, " unchanged")
}

// checkSums hashes every file SHA256SUMS lists in dir.
func checkSums(t *testing.T, dir string) {
	t.Helper()
	sums, err := imagemeta.ReadSums(dir)
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range sums {
		got, err := fileDigest(context.Background(), filepath.Join(dir, rel))
		if err != nil {
			t.Error(err)
		} else if got != "sha256:"+want {
			t.Errorf("%s: %s, SHA256SUMS says %s", rel, got, want)
		}
	}
}

// TestNoOpBuild: a build whose inputs did not change keeps the output
// folder when its files match SHA256SUMS and the manifest, and reports
// the same result as the build that wrote it; any damage, or any other
// input, writes the folder again.
func TestNoOpBuild(t *testing.T) {
	c, err := cache.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tools := newFakeTools()
	formats := []string{"raw", "qcow2", "oci"}
	write := func(path string, edit func([]byte) []byte) func(*testing.T, string) {
		return func(t *testing.T, dir string) {
			p := filepath.Join(dir, path)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Stat(p)
			if err := os.WriteFile(p, edit(data), 0o644); err != nil {
				t.Fatal(err)
			}
			// Keep the size and mtime where they can be kept: only the
			// ctime then tells.
			os.Chtimes(p, fi.ModTime(), fi.ModTime())
		}
	}
	flip := func(b []byte) []byte { b[len(b)/2] ^= 1; return b }
	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, dir string)
		formats []string
		tool    string
		conf    string
		kept    bool
	}{
		{name: "nothing changed", kept: true},
		{name: "touched, same bytes", damage: func(t *testing.T, dir string) {
			now := time.Now().Add(time.Hour)
			os.Chtimes(filepath.Join(dir, "web.raw"), now, now)
		}, kept: true},
		{name: "raw truncated", damage: func(t *testing.T, dir string) { os.Truncate(filepath.Join(dir, "web.raw"), 1<<20) }},
		{name: "qcow2 deleted", damage: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "web.qcow2")) }},
		{name: "sbom edited in place", damage: write("sbom.spdx.json", flip)},
		{name: "raw edited in place", damage: write("web.raw", func(b []byte) []byte { b[4096] ^= 1; return b })},
		{name: "oci blob edited", damage: func(t *testing.T, dir string) {
			blobs, _ := filepath.Glob(filepath.Join(dir, "oci/blobs/sha256/*"))
			write(strings.TrimPrefix(blobs[0], dir+"/"), flip)(t, dir)
		}},
		{name: "manifest edited", damage: write("manifest.json", func(b []byte) []byte {
			return []byte(strings.Replace(string(b), `"role": "web"`, `"role": "wxb"`, 1))
		})},
		{name: "sbom and its line in SHA256SUMS edited", damage: func(t *testing.T, dir string) {
			write("sbom.spdx.json", flip)(t, dir)
			got, _ := fileDigest(context.Background(), filepath.Join(dir, "sbom.spdx.json"))
			sums, _ := imagemeta.ReadSums(dir)
			sums["sbom.spdx.json"] = strings.TrimPrefix(got, "sha256:")
			os.WriteFile(filepath.Join(dir, imagemeta.SumsName), imagemeta.MarshalSums(sums), 0o644)
		}},
		{name: "extra file", damage: func(t *testing.T, dir string) { os.WriteFile(filepath.Join(dir, "extra"), nil, 0o644) }},
		{name: "state removed", damage: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, stateName)) }},
		{name: "state damaged", damage: func(t *testing.T, dir string) { os.WriteFile(filepath.Join(dir, stateName), []byte("{"), 0o644) }},
		{name: "other formats", formats: []string{"raw", "oci"}},
		{name: "other imgforge", tool: "sha256:other"},
		{name: "template edited", conf: "worker_processes 2;\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			dir := filepath.Join(out, "web")
			first, kept := buildInto(t, c, tools, out, formats, "sha256:tool", fakePlan("worker_processes 1;\n"))
			if kept {
				t.Fatal("the first build kept outputs that did not exist")
			}
			if tc.damage != nil {
				tc.damage(t, dir)
			}
			f, tool, conf := formats, "sha256:tool", "worker_processes 1;\n"
			if tc.formats != nil {
				f = tc.formats
			}
			if tc.tool != "" {
				tool = tc.tool
			}
			if tc.conf != "" {
				conf = tc.conf
			}
			again, kept := buildInto(t, c, tools, out, f, tool, fakePlan(conf))
			if kept != tc.kept {
				t.Errorf("outputs kept = %v, want %v", kept, tc.kept)
			}
			checkSums(t, dir)
			if _, err := os.Stat(filepath.Join(dir, "extra")); err == nil {
				t.Error("the extra file is left")
			}
			if tc.formats == nil && tc.tool == "" && tc.conf == "" && !reflect.DeepEqual(again, first) {
				t.Errorf("result\n%+v\nwant the first build's\n%+v", again, first)
			}
			// And once more: nothing changed since.
			if _, kept := buildInto(t, c, tools, out, f, tool, fakePlan(conf)); !kept {
				t.Error("the build after did not keep the outputs")
			}
		})
	}
}

// TestNoOpBuildRehashOnce: a file whose stat changed but whose bytes did
// not is hashed once; the state then records its new stat.
func TestNoOpBuildRehashOnce(t *testing.T) {
	c, err := cache.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	out := t.TempDir()
	tools := newFakeTools()
	buildInto(t, c, tools, out, []string{"raw"}, "sha256:tool", fakePlan("a\n"))
	raw := filepath.Join(out, "web", "web.raw")
	later := time.Now().Add(time.Hour)
	os.Chtimes(raw, later, later)
	if _, kept := buildInto(t, c, tools, out, []string{"raw"}, "sha256:tool", fakePlan("a\n")); !kept {
		t.Fatal("a touched raw disk was written again")
	}
	var s outputState
	data, err := os.ReadFile(filepath.Join(out, "web", stateName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	if got := s.Files["web.raw"].Mtime; got != later.UnixNano() {
		t.Errorf("the state records mtime %d, want the new %d", got, later.UnixNano())
	}
}

// BenchmarkNoOpOutputs times the check of an unchanged output folder that
// holds a 2 GiB sparse raw disk: stats, not hashes.
func BenchmarkNoOpOutputs(b *testing.B) {
	c, err := cache.Open(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	out := b.TempDir()
	tools := newFakeTools()
	p := fakePlan("a\n")
	p.Disk.Size = 2 << 30
	buildInto(b, c, tools, out, []string{"raw", "qcow2", "oci"}, "sha256:tool", p)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, kept := buildInto(b, c, tools, out, []string{"raw", "qcow2", "oci"}, "sha256:tool", p); !kept {
			b.Fatal("outputs written again")
		}
	}
}
