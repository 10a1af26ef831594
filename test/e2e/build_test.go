//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// roleFiles are paths each role's root must hold (and must not hold).
var roleFiles = map[string]struct{ have, lack []string }{
	"lb":  {have: []string{"usr/sbin/haproxy", "usr/sbin/keepalived", "etc/haproxy/haproxy.cfg", "usr/share/imgforge/templates/lb/keepalived.conf.tmpl"}},
	"web": {have: []string{"usr/sbin/nginx", "var/www/imgforge/static/index.html", "usr/share/imgforge/templates/web/nginx.conf.tmpl"}},
	"app": {have: []string{"usr/sbin/php-fpm8.2", "var/www/app/index.php", "etc/php/8.2/fpm/pool.d/www.conf"}},
	"db":  {have: []string{"usr/sbin/mariadbd", "usr/share/imgforge/db/schema.sql", "etc/systemd/system/mariadb.service.d/imgforge.conf"}, lack: []string{"var/lib/mysql/mysql", "var/lib/mysql/ibdata1"}},
}

var common = []string{
	"usr/bin/prometheus-node-exporter", "usr/sbin/sshd", "usr/bin/cloud-init", "lib/systemd/systemd",
	"etc/imgforge/role.json", "etc/cloud/cloud.cfg.d/90-imgforge.cfg", "etc/ssh/sshd_config.d/imgforge.conf",
}

// TestColdBuildAllRoles builds the four roles on an empty cache and reads
// each image with skopeo, umoci and go-containerregistry.
func TestColdBuildAllRoles(t *testing.T) {
	t.Parallel()
	f := cold(t, 0)
	hostSlots(t, 1)
	if len(f.build.Results) != len(allRoles) {
		t.Fatalf("%d results, want %d", len(f.build.Results), len(allRoles))
	}
	// The roles share one base layer.
	var base string
	for _, r := range allRoles {
		m := readManifest(t, filepath.Join(f.out, r, "manifest.json"))
		if base == "" {
			base = m.Layers[0].Digest
		}
		if m.Layers[0].Kind != "base" || m.Layers[0].Digest != base {
			t.Errorf("%s: first layer %+v, want the shared base %s", r, m.Layers[0], base)
		}
	}
	for _, role := range allRoles {
		t.Run(role, func(t *testing.T) {
			dir := filepath.Join(f.out, role)
			ref := "oci:" + filepath.Join(dir, "oci") + ":" + role
			var inspect struct {
				Digest string
				Labels map[string]string
				Layers []string
			}
			if err := json.Unmarshal([]byte(tool(t, "skopeo", "inspect", ref)), &inspect); err != nil {
				t.Fatal(err)
			}
			if inspect.Labels["dev.imgforge.role"] != role || inspect.Labels["org.opencontainers.image.ref.name"] != role {
				t.Errorf("labels %v", inspect.Labels)
			}
			tool(t, "skopeo", "inspect", "docker-archive:"+filepath.Join(dir, role+".docker.tar"))

			p, err := layout.FromPath(filepath.Join(dir, "oci"))
			if err != nil {
				t.Fatal(err)
			}
			idx, err := p.ImageIndex()
			if err != nil {
				t.Fatal(err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != role {
				t.Fatalf("index %+v", im)
			}
			img, err := p.Image(im.Manifests[0].Digest)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(img); err != nil {
				t.Errorf("validate.Image: %v", err)
			}
			if im.Manifests[0].Digest.String() != inspect.Digest {
				t.Errorf("skopeo digest %s, layout %s", inspect.Digest, im.Manifests[0].Digest)
			}

			bundle := filepath.Join(t.TempDir(), "bundle")
			tool(t, "umoci", "unpack", "--image", filepath.Join(dir, "oci")+":"+role, bundle)
			root := filepath.Join(bundle, "rootfs")
			for _, p := range append(roleFiles[role].have, common...) {
				if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
					t.Errorf("unpacked %s root lacks /%s", role, p)
				}
			}
			for _, p := range roleFiles[role].lack {
				if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
					t.Errorf("unpacked %s root has /%s, which must be made at first boot", role, p)
				}
			}
			// No per-node secrets: no SSH host keys, no machine id.
			keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
			if len(keys) > 0 {
				t.Errorf("SSH host keys baked into the image: %v", keys)
			}
			if b, _ := os.ReadFile(filepath.Join(root, "etc/machine-id")); len(bytes.TrimSpace(b)) > 0 {
				t.Errorf("/etc/machine-id is set: %q", b)
			}
			if docs, _ := filepath.Glob(filepath.Join(root, "usr/share/man/man8/*")); len(docs) > 0 {
				t.Errorf("man pages were not excluded: %d", len(docs))
			}

			sums := exec.Command("sha256sum", "--check", "--quiet", "SHA256SUMS")
			sums.Dir = dir
			if out, err := sums.CombinedOutput(); err != nil {
				t.Errorf("sha256sum --check: %v\n%s", err, out)
			}
			m := readManifest(t, filepath.Join(dir, "manifest.json"))
			if m.ImageDigest != inspect.Digest {
				t.Errorf("manifest.json image digest %s, skopeo %s", m.ImageDigest, inspect.Digest)
			}
			want := map[string]string{"lb": "haproxy", "web": "nginx", "app": "php8.2-fpm", "db": "mariadb-server"}[role]
			if !hasPackage(m, want) || !hasPackage(m, "systemd") {
				t.Errorf("manifest.json lacks %s or systemd among %d packages", want, len(m.Packages))
			}
			var sbom struct {
				SPDXVersion string `json:"spdxVersion"`
				Packages    []struct {
					Name, VersionInfo string
					LicenseDeclared   string `json:"licenseDeclared"`
					Checksums         []struct {
						Algorithm string `json:"algorithm"`
					} `json:"checksums"`
					ExternalRefs []struct {
						Locator string `json:"referenceLocator"`
					} `json:"externalRefs"`
				}
			}
			b, err := os.ReadFile(filepath.Join(dir, "sbom.spdx.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &sbom); err != nil || sbom.SPDXVersion != "SPDX-2.3" || len(sbom.Packages) != len(m.Packages)+1 {
				t.Errorf("sbom: %v, version %q, %d packages for %d installed", err, sbom.SPDXVersion, len(sbom.Packages), len(m.Packages))
			}
			// Issue 16: what scanners read. Most Debian packages have a
			// machine-readable copyright file; every .deb is in the lists.
			licensed, summed := 0, 0
			for _, p := range sbom.Packages[1:] {
				if p.LicenseDeclared != "NOASSERTION" {
					licensed++
				}
				if len(p.Checksums) == 1 && p.Checksums[0].Algorithm == "SHA256" {
					summed++
				}
				if len(p.ExternalRefs) != 1 || !strings.Contains(p.ExternalRefs[0].Locator, "distro=debian-12") {
					t.Errorf("sbom: %s has no purl with distro=debian-12: %+v", p.Name, p.ExternalRefs)
				}
			}
			if n := len(sbom.Packages) - 1; licensed < n/2 || summed != n {
				t.Errorf("sbom: %d of %d packages with a declared licence, %d with a checksum", licensed, n, summed)
			}
			if _, err := os.Stat(filepath.Join(dir, "sbom.cdx.json")); err != nil {
				t.Errorf("no CycloneDX SBOM: %v", err)
			}
		})
	}
}

func hasPackage(m *imagemeta.Manifest, n string) bool {
	for _, p := range m.Packages {
		if p.Name == n {
			return true
		}
	}
	return false
}

func readManifest(t testing.TB, p string) *imagemeta.Manifest {
	t.Helper()
	m, err := imagemeta.ReadManifest(p)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReproducible builds every role a second time with another empty
// cache (no shared .deb files either) and compares every output file.
func TestReproducible(t *testing.T) {
	t.Parallel()
	a, b := cold(t, 0), cold(t, 1)
	for _, role := range allRoles {
		ma := readManifest(t, filepath.Join(a.out, role, "manifest.json"))
		mb := readManifest(t, filepath.Join(b.out, role, "manifest.json"))
		if ma.ImageDigest != mb.ImageDigest {
			t.Errorf("%s: image digests differ: %s and %s", role, ma.ImageDigest, mb.ImageDigest)
		}
		sa, _ := os.ReadFile(filepath.Join(a.out, role, "SHA256SUMS"))
		sb, _ := os.ReadFile(filepath.Join(b.out, role, "SHA256SUMS"))
		if len(sa) == 0 || !bytes.Equal(sa, sb) {
			t.Errorf("%s: SHA256SUMS differ:\n%s\n---\n%s", role, sa, sb)
		}
	}
}

// TestTemplateChangeReusesBase edits one template and rebuilds: the base
// and package layers come from the cache, only the overlay is rebuilt.
func TestTemplateChangeReusesBase(t *testing.T) {
	t.Parallel()
	f := cold(t, 0)
	hostSlots(t, 1)
	roles := filepath.Join(t.TempDir(), "roles")
	copyTree(t, filepath.Join(repo, "roles"), roles)
	tmpl := filepath.Join(roles, "lb", "templates", "haproxy.cfg.tmpl")
	b, err := os.ReadFile(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmpl, append(b, []byte("# edited by TestTemplateChangeReusesBase\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	res, run := mustBuild(t, f.cache, out, "--roles", roles, "lb")
	stages := map[string]string{}
	for _, s := range res.Stages {
		stages[s.Stage] = s.Result
	}
	// The root holds the base and the role: it stays byte for byte the
	// same; only the overlay and its image are made again (issue 14).
	for _, st := range []string{"base", "packages", "rootfs"} {
		if !strings.HasPrefix(stages[st], "cached") {
			t.Errorf("stage %s was rebuilt (%q), want it cached", st, stages[st])
		}
	}
	for _, st := range []string{"overlay", "overlay image"} {
		if strings.HasPrefix(stages[st], "cached") || stages[st] == "" {
			t.Errorf("stage %s was not rebuilt after a template change (%q)", st, stages[st])
		}
	}
	old := readManifest(t, filepath.Join(f.out, "lb", "manifest.json"))
	m := readManifest(t, filepath.Join(out, "lb", "manifest.json"))
	if m.ImageDigest == old.ImageDigest {
		t.Error("the image did not change with its template")
	}
	if m.Layers[0].Digest != old.Layers[0].Digest || m.Layers[1].Digest != old.Layers[1].Digest {
		t.Error("base or package layer changed with a template edit")
	}
	var cold float64
	for _, r := range f.build.Results {
		if r.Role == "lb" {
			cold = r.Seconds
		}
	}
	t.Logf("warm rebuild after a template edit: %.2fs (cold lb in the shared build: %.1fs); figures belong to `make bench`", run.elapsed.Seconds(), cold)
}

// TestMissingPackage asks for a package the mirror lacks: a one-line error
// at the line that asked for it, and nothing written.
func TestMissingPackage(t *testing.T) {
	t.Parallel()
	f := cold(t, 0)
	hostSlots(t, 1)
	roles := filepath.Join(t.TempDir(), "roles")
	copyTree(t, filepath.Join(repo, "roles"), roles)
	lb := filepath.Join(roles, "lb.yaml")
	b, _ := os.ReadFile(lb)
	edited := strings.Replace(string(b), "\npackages: [", "\npackages: [imgforge-no-such-package, ", 1)
	if edited == string(b) {
		t.Fatal("could not edit lb.yaml")
	}
	os.WriteFile(lb, []byte(edited), 0o644)
	out := t.TempDir()
	r := imgforge(t, f.cache, workdir, "build", "--roles", roles, "--output-dir", out, "lb")
	if r.code == 0 {
		t.Fatal("build with a missing package succeeded")
	}
	last := lastLine(r.stderr)
	re := regexp.MustCompile(`lb\.yaml:\d+:\d+: field "packages\[0\]": package "imgforge-no-such-package" is not available`)
	if !re.MatchString(last) {
		t.Errorf("error line %q does not name the file, line and package", last)
	}
	assertEmptyOutput(t, out)
	assertCacheClean(t, f.cache)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func assertEmptyOutput(t testing.TB, out string) {
	t.Helper()
	entries, _ := os.ReadDir(out)
	for _, e := range entries {
		t.Errorf("output dir holds %s after a failed build", e.Name())
	}
}

func assertCacheClean(t testing.TB, cache string) {
	t.Helper()
	tmp := filepath.Join(cache, "imgforge", "tmp")
	entries, _ := os.ReadDir(tmp)
	for _, e := range entries {
		t.Errorf("cache tmp/ holds %s after the build ended", e.Name())
	}
	noMountsUnder(t, tmp)
}

// TestInterrupt stops builds with SIGINT and SIGTERM while mmdebstrap
// runs: nothing in the output dir, nothing mounted, and the next build
// succeeds with the same result as an uninterrupted one.
func TestInterrupt(t *testing.T) {
	t.Parallel()
	f := privateCache(t, cold(t, 0))
	hostSlots(t, 1)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			roles := filepath.Join(t.TempDir(), "roles")
			copyTree(t, filepath.Join(repo, "roles"), roles)
			lb := filepath.Join(roles, "lb.yaml")
			b, _ := os.ReadFile(lb)
			extra := map[syscall.Signal]string{syscall.SIGINT: "curl", syscall.SIGTERM: "wget"}[sig]
			edited := strings.Replace(string(b), "\npackages: [", "\npackages: ["+extra+", ", 1)
			if edited == string(b) {
				t.Fatal("could not edit lb.yaml")
			}
			if err := os.WriteFile(lb, []byte(edited), 0o644); err != nil {
				t.Fatal(err)
			}
			out := t.TempDir()
			var stderr syncBuffer
			cmd := startImgforge(t, f.cache, &stderr, "build", "--roles", roles, "--output-dir", out, "lb")
			deadline := time.Now().Add(3 * time.Minute)
			for !strings.Contains(stderr.String(), "installing") && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			time.Sleep(3 * time.Second) // inside mmdebstrap's work
			cmd.Process.Signal(sig)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(3 * time.Minute):
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				t.Fatalf("imgforge did not stop within 3 minutes of %s\n%s", sig, stderr.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != 130 {
				t.Errorf("exit code %d after %s, want 130\n%s", code, sig, stderr.String())
			}
			assertEmptyOutput(t, out)
			assertCacheClean(t, f.cache)
			if out, _ := exec.Command("pgrep", "-f", "mmdebstrap.*"+f.cache).Output(); len(out) > 0 {
				t.Errorf("mmdebstrap still running after %s: %s", sig, out)
			}
			res, _ := mustBuild(t, f.cache, out, "--roles", roles, "lb")
			if len(res.Results) != 1 {
				t.Fatalf("rebuild gave %+v", res)
			}
		})
	}
}

// TestCorruptCacheEntry flips a byte in cached layers: the next build
// notices, rebuilds them and gives the same image.
func TestCorruptCacheEntry(t *testing.T) {
	t.Parallel()
	f := privateCache(t, cold(t, 0))
	hostSlots(t, 1)
	m := readManifest(t, filepath.Join(f.out, "lb", "manifest.json"))
	for _, kind := range []string{"overlay", "role"} {
		t.Run(kind, func(t *testing.T) {
			var digest string
			for _, l := range m.Layers {
				if l.Kind == kind {
					digest = l.Digest
				}
			}
			blob := filepath.Join(f.cache, "imgforge", "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
			// The outputs hard-link their layers from the cache: damage
			// the cache's copy only, or the shared build's OCI layout
			// (which later tests unpack) would be damaged too.
			unlinkCopy(t, blob)
			flipByte(t, blob)
			out := t.TempDir()
			res, run := mustBuild(t, f.cache, out, "lb")
			if !strings.Contains(run.stderr, "damaged") {
				t.Errorf("the build did not report the damaged entry:\n%s", run.stderr)
			}
			if res.Results[0].ImageDigest != m.ImageDigest {
				t.Errorf("rebuilt image %s, want %s", res.Results[0].ImageDigest, m.ImageDigest)
			}
			run2 := imgforge(t, f.cache, workdir, "build", "--output-dir", out, "lb")
			if strings.Contains(run2.stderr, "damaged") || run2.code != 0 {
				t.Errorf("the entry is still damaged after the rebuild:\n%s", run2.stderr)
			}
		})
	}
}

// unlinkCopy replaces p with a copy of itself, a file of its own.
func unlinkCopy(t testing.TB, p string) {
	t.Helper()
	if out, err := exec.Command("cp", "-p", p, p+".copy").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := os.Rename(p+".copy", p); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t testing.TB, p string) {
	t.Helper()
	fh, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	fi, _ := fh.Stat()
	buf := make([]byte, 1)
	off := fi.Size() / 2
	fh.ReadAt(buf, off)
	buf[0] ^= 0xff
	if _, err := fh.WriteAt(buf, off); err != nil {
		t.Fatal(err)
	}
}

// TestPush pushes the lb image that the build wrote to its output
// folder (not a rebuild) to an in-memory registry on loopback and reads
// it back.
func TestPush(t *testing.T) {
	t.Parallel()
	f := cold(t, 0)
	hostSlots(t, 1)
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	r := imgforge(t, f.cache, workdir, "push", "lb", host+"/stack/lb:test", "--output-dir", f.out)
	if r.code != 0 {
		t.Fatalf("push: exit %d\n%s", r.code, r.stderr)
	}
	m := readManifest(t, filepath.Join(f.out, "lb", "manifest.json"))
	if got := strings.TrimSpace(r.stdout); !strings.HasSuffix(got, "@"+m.ImageDigest) {
		t.Errorf("push printed %q, want a reference ending in @%s", got, m.ImageDigest)
	}
	ref, err := name.ParseReference(host + "/stack/lb:test")
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	if d.String() != m.ImageDigest {
		t.Errorf("registry has %s, want %s", d, m.ImageDigest)
	}
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Errorf("validate.Image: %v", err)
	}
	tool(t, "skopeo", "inspect", "--tls-verify=false", "docker://"+host+"/stack/lb:test")
}

// TestDiskTooSmall asks for a disk smaller than the two slots, then for a
// slot smaller than the root: a one-line error at the setting that says
// how much is needed, and nothing written.
func TestDiskTooSmall(t *testing.T) {
	t.Parallel()
	f := cold(t, 0)
	hostSlots(t, 1)
	for _, c := range []struct{ from, to, want string }{
		{"  size: 2GiB", "  size: 100MiB", `images/default.yaml:\d+:9: field "disk.size": the disk size 100MiB \(disk.size in the image definition\) cannot hold the two slots: it needs at least \d+MiB`},
		{"  slot_size: 512MiB", "  slot_size: 64MiB", `images/default.yaml:\d+:14: field "disk.slot_size": the slot size 64MiB cannot hold the root filesystem of \d+MiB: make it at least \d+MiB`},
	} {
		images := filepath.Join(t.TempDir(), "images")
		copyTree(t, filepath.Join(repo, "images"), images)
		p := filepath.Join(images, "default.yaml")
		b, _ := os.ReadFile(p)
		edited := strings.Replace(string(b), c.from, c.to, 1)
		if edited == string(b) {
			t.Fatalf("could not edit %q", c.from)
		}
		os.WriteFile(p, []byte(edited), 0o644)
		out := t.TempDir()
		r := imgforge(t, f.cache, workdir, "build", "--images", images, "--format", "raw", "--output-dir", out, "lb")
		if r.code == 0 {
			t.Fatalf("%q was accepted", c.to)
		}
		if !regexp.MustCompile(c.want).MatchString(lastLine(r.stderr)) {
			t.Errorf("%s: error %q does not match %s", c.to, lastLine(r.stderr), c.want)
		}
		assertEmptyOutput(t, out)
	}
}

// TestVerify checks every role's raw disk and ISO with imgforge verify, and
// that a changed root partition fails it.
func TestVerify(t *testing.T) {
	t.Parallel()
	f := cold(t, 0)
	hostSlots(t, 1)
	for _, role := range allRoles {
		for _, format := range []string{"raw", "iso"} {
			r := imgforge(t, f.cache, workdir, "verify", "--output-dir", f.out, "--format", format, role)
			if r.code != 0 {
				t.Errorf("verify %s %s: exit %d\n%s%s", role, format, r.code, r.stdout, r.stderr)
			}
		}
	}
	img := filepath.Join(t.TempDir(), "lb.raw")
	if out, err := exec.Command("cp", "--sparse=always", filepath.Join(f.out, "lb", "lb.raw"), img).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	flipByteAt(t, img, partitionOffset(t, img, 2)+20*1024*1024)
	r := imgforge(t, f.cache, workdir, "verify", "--manifest", filepath.Join(f.out, "lb", "manifest.json"), img)
	if r.code == 0 || !strings.Contains(r.stderr, "verification failed") {
		t.Errorf("a changed root passed verify: exit %d\n%s", r.code, r.stderr)
	}
}
