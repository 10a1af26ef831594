//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/qemu"
)

// snakeoilKey decrypts Debian's snakeoil Secure Boot test key (its
// passphrase is "snakeoil", published with it) into dir, for sbsign,
// and returns it with its certificate.
func snakeoilKey(t *testing.T, dir string) (key, cert string) {
	t.Helper()
	cert = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
	key = filepath.Join(dir, "snakeoil.key")
	out, err := exec.Command("openssl", "pkey", "-in", "/usr/share/ovmf/PkKek-1-snakeoil.key", "-passin", "pass:snakeoil", "-out", key).CombinedOutput()
	if err != nil {
		t.Fatalf("decrypting the snakeoil key (apt-get install ovmf openssl): %v: %s", err, out)
	}
	return key, cert
}

// TestSecureBoot builds lb's raw disk with its boot chain signed by
// Debian's snakeoil key, twice (the same bytes), and imgforge verify
// accepts it. Under OVMF's Secure Boot firmware with the snakeoil keys
// enrolled, the disk boots with Secure Boot enforced to haproxy
// answering; a copy whose UKI command line was changed after signing
// (imgforge.slot=a made b, as someone who can write the ESP offline
// could) is refused by the firmware and boots nothing.
func TestSecureBoot(t *testing.T) {
	t.Parallel()
	f := cold(t, 0)
	fw, err := qemu.SnakeoilFirmware()
	if err != nil {
		t.Fatal(err)
	}
	key, cert := snakeoilKey(t, t.TempDir())
	out, again := t.TempDir(), t.TempDir()
	args := []string{"--secure-boot-key", key, "--secure-boot-cert", cert, "--format", "raw", "lb"}
	mustBuild(t, f.cache, out, args...)
	mustBuild(t, f.cache, again, args...)
	sums, _ := os.ReadFile(filepath.Join(out, "lb", "SHA256SUMS"))
	if sums2, _ := os.ReadFile(filepath.Join(again, "lb", "SHA256SUMS")); len(sums) == 0 || !bytes.Equal(sums, sums2) {
		t.Errorf("two signed builds differ:\n%s\n%s", sums, sums2)
	}
	m := readManifest(t, filepath.Join(out, "lb", "manifest.json"))
	if !m.Signing.SecureBoot || m.Signing.SecureBootCert == "" {
		t.Errorf("the manifest's signing says %+v, want secure_boot with the certificate", m.Signing)
	}
	if _, ok := m.Disk.ESPFiles["/imgforge/a/imgforge.efi"]; !ok {
		t.Errorf("the ESP has no unified kernel image: %v", m.Disk.ESPFiles)
	}
	if r := imgforge(t, f.cache, workdir, "verify", "--output-dir", out, "lb"); r.code != 0 || !strings.Contains(r.stdout, "a unified kernel image whose command line equals") {
		t.Errorf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	img := filepath.Join(out, "lb", "lb.raw")

	t.Run("boots", func(t *testing.T) {
		needBootToServices(t)
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
		defer cancel()
		start := time.Now()
		vm, ports := boot(t, ctx, bootOpts{name: "lb-secureboot", firmware: &fw, guest: []int{8404},
			disks: []qemu.Disk{{Path: img, Snapshot: true}}})
		line, err := vm.WaitFor(ctx, regexp.MustCompile(`secureboot: Secure boot (enabled|disabled|could not be determined)|Access Denied`))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(line, "Secure boot enabled") {
			t.Fatalf("want the kernel to report Secure Boot enabled: %s", line)
		}
		waitMultiUser(t, ctx, vm, start, "lb with Secure Boot")
		if err := eventually(ctx, httpCheck(ports[0], "/health", "")); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("changed-cmdline-refused", func(t *testing.T) {
		t.Parallel()
		bad := filepath.Join(t.TempDir(), "lb.raw")
		if out, err := exec.Command("cp", "--sparse=always", img, bad).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		changeESPBytes(t, bad, []byte("imgforge.slot=a "), []byte("imgforge.slot=b "))
		ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
		defer cancel()
		vm, _ := boot(t, ctx, bootOpts{name: "lb-sb-tampered", firmware: &fw, disks: []qemu.Disk{{Path: bad, Snapshot: true}}})
		line, err := vm.WaitFor(ctx, regexp.MustCompile(`Access Denied|Linux version|reached multi-user`))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(line, "Access Denied") {
			t.Fatalf("a UKI whose command line was changed after signing started: %s", line)
		}
		t.Logf("the firmware refused it: %s", strings.TrimSpace(line))
	})
}

// changeESPBytes replaces the one occurrence of old in the ESP
// (partition 1) of the disk img with new, of the same length, in place.
func changeESPBytes(t *testing.T, img string, old, new []byte) {
	t.Helper()
	start := partitionOffset(t, img, 1)
	end := partitionOffset(t, img, 2)
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	esp := make([]byte, end-start)
	if _, err := fh.ReadAt(esp, start); err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(esp, old)
	if i < 0 || bytes.Index(esp[i+1:], old) >= 0 {
		t.Fatalf("want exactly one %q on the ESP", old)
	}
	if _, err := fh.WriteAt(new, start+int64(i)); err != nil {
		t.Fatal(err)
	}
}
