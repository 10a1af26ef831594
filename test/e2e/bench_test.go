//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/qemu"
	"github.com/imgforge/imgforge/pkg/seed"
)

// BenchmarkBuildLB measures, in one run: bare mmdebstrap with the lb
// role's packages, imgforge's cold build of lb (empty cache, no .deb
// files), the rebuild after one template edit, the rebuild with no
// change, and lb on each image definition (default and cloud: their raw
// disks' allocated sizes and root squashfs sizes). Targets (checked by reading, not asserted: the machines are
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

		// The OCI image alone, on an empty cache: the spine's figure.
		_, ociRun := mustBuild(b, filepath.Join(dir, "cache-oci"), filepath.Join(dir, "out-oci"), "--format", "oci,docker-archive", "lb")

		// Every output, on another empty cache.
		cache := filepath.Join(dir, "cache")
		_, coldRun := mustBuild(b, cache, filepath.Join(dir, "out"), "lb")
		// The same build again: nothing changed, the outputs are kept.
		_, noopRun := mustBuild(b, cache, filepath.Join(dir, "out"), "lb")

		roles := filepath.Join(dir, "roles")
		copyTree(b, filepath.Join(repo, "roles"), roles)
		_, sameRun := mustBuild(b, cache, filepath.Join(dir, "out"), "--roles", roles, "lb")
		tmpl := filepath.Join(roles, "lb", "templates", "haproxy.cfg.tmpl")
		data, _ := os.ReadFile(tmpl)
		os.WriteFile(tmpl, append(data, []byte("# bench edit\n")...), 0o644)
		_, warmRun := mustBuild(b, cache, filepath.Join(dir, "out"), "--roles", roles, "lb")

		alloc := duBytes(b, filepath.Join(dir, "out", "lb"))
		rawAlloc := duBytes(b, filepath.Join(dir, "out", "lb", "lb.raw"))
		// The same role on the VM image (images/cloud.yaml: the cloud kernel).
		cloudOut := filepath.Join(dir, "out-cloud")
		_, cloudRun := mustBuild(b, cache, cloudOut, "--roles", onImage(b, filepath.Join(dir, "cloud"), "lb", "cloud"), "--format", "raw", "lb")
		cloudAlloc := duBytes(b, filepath.Join(cloudOut, "lb", "lb.raw"))
		squash := func(out string) float64 {
			m, err := imagemeta.ReadManifest(filepath.Join(out, "lb", imagemeta.ManifestName))
			if err != nil {
				b.Fatal(err)
			}
			return float64(m.Disk.Verity.DataBlocks*4096) / (1 << 20)
		}

		// Power-on to haproxy answering, under TCG here.
		bootSecs := bootToService(b, filepath.Join(dir, "out", "lb", "lb.raw"), "lb")
		b.ReportMetric(bare.Seconds(), "bare-mmdebstrap-s")
		b.ReportMetric(coldRun.elapsed.Seconds(), "cold-s")
		b.ReportMetric(ociRun.elapsed.Seconds(), "cold-oci-s")
		b.ReportMetric(ociRun.elapsed.Seconds()/bare.Seconds(), "cold-oci/mmdebstrap")
		b.ReportMetric(warmRun.elapsed.Seconds(), "warm-template-edit-s")
		b.ReportMetric(sameRun.elapsed.Seconds(), "no-change-s")
		b.ReportMetric(noopRun.elapsed.Seconds(), "no-op-s")
		b.ReportMetric(float64(alloc)/1e6, "outputs-MB")
		b.ReportMetric(float64(rawAlloc)/1e6, "raw-allocated-MB")
		b.ReportMetric(float64(cloudAlloc)/1e6, "cloud-raw-allocated-MB")
		b.ReportMetric(bootSecs, "boot-to-haproxy-s")
		fmt.Printf("\nlb raw disk by image definition: default (linux-image-amd64) %.1f MB allocated, root squashfs %.1f MiB | cloud (linux-image-cloud-amd64, built in %.0fs) %.1f MB allocated, root squashfs %.1f MiB (target <= 115 MiB allocated = %.1f MB)\n",
			float64(rawAlloc)/1e6, squash(filepath.Join(dir, "out")), cloudRun.elapsed.Seconds(), float64(cloudAlloc)/1e6, squash(cloudOut), 115*1.048576)
		fmt.Printf("\nlb: bare mmdebstrap %.1fs | imgforge cold, OCI only %.1fs (%.2fx of mmdebstrap; target <= 1.10x) | cold, every output %.1fs (target < 90s) | warm after template edit %.2fs (target < 5s) | no change, other roles folder %.2fs | no-op rebuild %.2fs (target <= 1s) | raw disk allocated %.1f MB (target < 150) | all outputs %.0f MB | power-on to haproxy answering %.0fs under %s (target < 20s)\n%s\n",
			bare.Seconds(), ociRun.elapsed.Seconds(), ociRun.elapsed.Seconds()/bare.Seconds(), coldRun.elapsed.Seconds(), warmRun.elapsed.Seconds(), sameRun.elapsed.Seconds(), noopRun.elapsed.Seconds(),
			float64(rawAlloc)/1e6, float64(alloc)/1e6, bootSecs, accelName(), coldRun.stderr)
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

func accelName() string {
	if qemu.KVMAvailable() {
		return "KVM"
	}
	return "TCG"
}

// bootToService boots img, a raw disk of role, and returns the seconds
// from QEMU's start to the role's service answering through a forwarded
// port (roleServices).
func bootToService(b *testing.B, img, role string) float64 {
	fw, err := qemu.FindFirmware()
	if err != nil {
		b.Fatal(err)
	}
	svc := roleServices[role]
	name := "bench-" + role
	seedISO := filepath.Join(b.TempDir(), "seed.iso")
	s := seed.Default(name, name)
	s.UserData = []byte(bootProfileUserData)
	if err := seed.WriteISO(seedISO, s, time.Unix(1735689600, 0)); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := bootContext()
	defer cancel()
	start := time.Now()
	vm, err := qemu.Start(ctx, &qemu.Machine{Name: name, MemoryMiB: 1024, CPUs: 2, Firmware: fw,
		Disks: []qemu.Disk{{Path: img, Snapshot: true}, {Path: seedISO, Media: "cdrom"}},
		Nets:  []qemu.Net{{Restrict: true, Forwards: []qemu.Forward{{HostAddr: "127.0.0.1", GuestPort: svc.port}}}}})
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Kill()
	fwds, err := vm.Forwards(ctx)
	if err != nil || len(fwds) == 0 {
		b.Fatalf("forwards: %v", err)
	}
	if err := eventually(ctx, svc.fn(fwds[0].HostPort)); err != nil {
		b.Fatalf("%s: the service never answered: %v\n%s", role, err, strings.Join(vm.Console.Tail(40), "\n"))
	}
	secs := time.Since(start).Seconds()
	// What the boot spent its time on, as the node saw it.
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`IMGFORGE-PROFILE-END`)); err != nil {
		b.Fatalf("%s: no boot profile: %v", role, err)
	}
	con := vm.Console.String()
	if i, j := strings.Index(con, "IMGFORGE-PROFILE-BEGIN"), strings.LastIndex(con, "IMGFORGE-PROFILE-END"); i >= 0 && j > i {
		fmt.Printf("\n%s: power-on to the service answering %.0fs under %s; the node's systemd-analyze:\n%s\n", role, secs, accelName(), con[i:j])
	}
	return secs
}

// bootProfileUserData prints, once the boot has finished, what
// systemd-analyze and cloud-init say it spent its time on.
const bootProfileUserData = `#cloud-config
write_files:
  - path: /var/lib/cloud/scripts/per-boot/imgforge-bench-profile.sh
    permissions: "0755"
    content: |
      #!/bin/sh
      (systemctl is-system-running --wait >/dev/null 2>&1
       { echo IMGFORGE-PROFILE-BEGIN
         systemd-analyze
         systemd-analyze critical-chain --no-pager
         systemd-analyze blame --no-pager | head -25
         cloud-init analyze show 2>&1 | grep -E 'Finished stage|Total Time|[0-9]\.[0-9]+s\)?$' | head -60
         echo IMGFORGE-PROFILE-END; } >/dev/console 2>&1) &
`

// BenchmarkRoles gives the figures per role, one role at a time: the cold
// build of every output on an empty cache, the rebuild after an edit of
// one of the role's templates, the raw disk's allocated size, and power-on to the role's service answering (TCG here).
// The targets of BenchmarkBuildLB apply to lb; the others are for
// comparison.
func BenchmarkRoles(b *testing.B) {
	for _, role := range allRoles {
		b.Run(role, func(b *testing.B) {
			for range b.N {
				dir := b.TempDir()
				cache := filepath.Join(dir, "cache")
				_, coldRun := mustBuild(b, cache, filepath.Join(dir, "out"), role)
				roles := filepath.Join(dir, "roles")
				copyTree(b, filepath.Join(repo, "roles"), roles)
				tmpls, err := filepath.Glob(filepath.Join(roles, role, "templates", "*.tmpl"))
				if err != nil || len(tmpls) == 0 {
					b.Fatalf("%s has no template to edit", role)
				}
				data, err := os.ReadFile(tmpls[0])
				if err != nil {
					b.Fatal(err)
				}
				// A template comment: the rendered text stays the same.
				if err := os.WriteFile(tmpls[0], append(data, []byte("{{/* bench edit */}}\n")...), 0o644); err != nil {
					b.Fatal(err)
				}
				_, warmRun := mustBuild(b, cache, filepath.Join(dir, "out-warm"), "--roles", roles, role)
				raw := filepath.Join(dir, "out", role, role+".raw")
				rawAlloc := duBytes(b, raw)
				secs := bootToService(b, raw, role)
				b.ReportMetric(coldRun.elapsed.Seconds(), "cold-s")
				b.ReportMetric(warmRun.elapsed.Seconds(), "warm-template-edit-s")
				b.ReportMetric(float64(rawAlloc)/1e6, "raw-allocated-MB")
				b.ReportMetric(secs, "boot-to-service-s")
				fmt.Printf("\n%s: cold, every output %.1fs | warm after editing %s %.2fs | raw disk allocated %.1f MB | power-on to %s answering %.0fs under %s\n",
					role, coldRun.elapsed.Seconds(), filepath.Base(tmpls[0]), warmRun.elapsed.Seconds(), float64(rawAlloc)/1e6, role, secs, accelName())
			}
		})
	}
}
