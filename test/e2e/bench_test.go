//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkBuildLB measures, in one run: bare mmdebstrap with the lb
// role's packages, imgforge's cold build of lb (empty cache, no .deb
// files), the rebuild after one template edit, and the rebuild with no
// change. Targets (checked by reading, not asserted: the machines are
// shared and noisy): cold within 1.1x of bare mmdebstrap, the warm
// rebuild under 5 s.
func BenchmarkBuildLB(b *testing.B) {
	for i := 0; i < b.N; i++ {
		dir := b.TempDir()
		var plan struct {
			Plan struct {
				BasePackages []string `json:"base_packages"`
				Packages     []string
				Distribution struct {
					Suite   string
					Sources []string
				}
			}
		}
		r := imgforge(b, filepath.Join(dir, "cache"), workdir, "plan", "lb", "-o", "json")
		if r.code != 0 {
			b.Fatal(r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil {
			b.Fatal(err)
		}
		pkgs := append(append([]string{}, plan.Plan.BasePackages...), plan.Plan.Packages...)

		// Bare mmdebstrap: the plain route, same packages, same mirrors.
		args := []string{"--variant=apt", "--include=" + strings.Join(pkgs, ","), plan.Plan.Distribution.Suite, filepath.Join(dir, "bare.tar")}
		args = append(args, plan.Plan.Distribution.Sources...)
		start := time.Now()
		cmd := exec.Command("mmdebstrap", args...)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1735689600")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("bare mmdebstrap: %v\n%s", err, out)
		}
		bare := time.Since(start)
		os.Remove(filepath.Join(dir, "bare.tar"))

		cache := filepath.Join(dir, "cache")
		_, coldRun := mustBuild(b, cache, filepath.Join(dir, "out"), "lb")

		roles := filepath.Join(dir, "roles")
		copyTree(b, filepath.Join(repo, "roles"), roles)
		_, sameRun := mustBuild(b, cache, filepath.Join(dir, "out"), "--roles", roles, "lb")
		tmpl := filepath.Join(roles, "lb", "templates", "haproxy.cfg.tmpl")
		data, _ := os.ReadFile(tmpl)
		os.WriteFile(tmpl, append(data, []byte("# bench edit\n")...), 0o644)
		_, warmRun := mustBuild(b, cache, filepath.Join(dir, "out"), "--roles", roles, "lb")

		alloc := duBytes(b, filepath.Join(dir, "out", "lb"))
		b.ReportMetric(bare.Seconds(), "bare-mmdebstrap-s")
		b.ReportMetric(coldRun.elapsed.Seconds(), "cold-s")
		b.ReportMetric(coldRun.elapsed.Seconds()/bare.Seconds(), "cold/mmdebstrap")
		b.ReportMetric(warmRun.elapsed.Seconds(), "warm-template-edit-s")
		b.ReportMetric(sameRun.elapsed.Seconds(), "no-change-s")
		b.ReportMetric(float64(alloc)/1e6, "outputs-MB")
		fmt.Printf("\nlb: bare mmdebstrap %.1fs | imgforge cold %.1fs (%.2fx of mmdebstrap; target <= 1.10x) | warm after template edit %.2fs (target < 5s) | no change %.2fs | outputs %.0f MB\n%s\n",
			bare.Seconds(), coldRun.elapsed.Seconds(), coldRun.elapsed.Seconds()/bare.Seconds(), warmRun.elapsed.Seconds(), sameRun.elapsed.Seconds(), float64(alloc)/1e6, coldRun.stderr)
	}
}

func duBytes(t testing.TB, p string) int64 {
	out, err := exec.Command("du", "-s", "--block-size=1", p).Output()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	fmt.Sscan(string(out), &n)
	return n
}
