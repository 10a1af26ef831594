//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/qemu"
)

// secureBootUserData drives TestSecureBoot's update, one step per boot,
// its state in /var: boot 1 (v1, slot a) updates to the signed v2 from
// 10.0.2.100 and reboots; boot 2 (v2, slot b) waits until
// systemd-bless-boot marked it good. Each boot prints its slot, whether
// the firmware enforces Secure Boot (the SecureBoot variable) and its
// machine-id.
const secureBootUserData = `#cloud-config
write_files:
  - path: /var/lib/cloud/scripts/per-boot/imgforge-test-sb.sh
    permissions: "0755"
    content: |
      #!/bin/sh
      d=/var/lib/imgforge-test
      mkdir -p $d
      n=$(( $(cat $d/boots 2>/dev/null || echo 0) + 1 ))
      echo $n >$d/boots
      slot=$(sed -n 's/.*imgforge\.slot=\([ab]\).*/\1/p' /proc/cmdline)
      sb=$(od -An -tu1 -j4 -N1 /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c | tr -d ' ')
      v2=$(grep -c 'imgforge-test v2' /etc/haproxy/haproxy.cfg)
      echo "IMGFORGE-BOOT n=$n slot=$slot sb=$sb machine-id=$(cat /etc/machine-id) v2=$v2" >/dev/console
      case $n in
      1)
        imgforge-agent update http://10.0.2.100/sets/lb/ --reboot >/dev/console 2>&1 ||
          echo "IMGFORGE-ERR: the update to v2 failed" >/dev/console
        ;;
      2)
        i=0
        until systemctl is-active -q systemd-bless-boot.service; do
          i=$((i+1))
          if [ $i -gt 600 ]; then
            echo "IMGFORGE-ERR: the boot of v2 was not marked good" >/dev/console
            exit 1
          fi
          sleep 2
        done
        echo "IMGFORGE-BLESSED entries: $(ls /efi/loader/entries | tr '\n' ' ')" >/dev/console
        ;;
      esac
`

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
// enrolled, the disk boots with Secure Boot enforced; imgforge-agent
// update moves it to a signed v2 in slot b, which boots with Secure Boot
// on, keeps the node's /var and machine-id, is marked good by
// systemd-bless-boot, and haproxy answers. A copy of the disk whose UKI
// command line was changed after signing (imgforge.slot=a made b, as
// someone who can write the ESP offline could) is refused by the firmware
// and boots nothing.
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
	withSlot(t, func() {
		mustBuild(t, f.cache, out, args...)
		mustBuild(t, f.cache, again, args...)
	})
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

	t.Run("boots-and-updates", func(t *testing.T) {
		needBootToServices(t)
		t.Parallel()
		// v2: lb's haproxy.cfg edited, its PXE set (with the slots'
		// signed UKIs) signed with the same key, served by imgforge serve.
		roles := filepath.Join(t.TempDir(), "roles")
		copyTree(t, filepath.Join(repo, "roles"), roles)
		cfg := filepath.Join(roles, "lb", "haproxy.cfg")
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, append([]byte("# imgforge-test v2\n"), b...), 0o644); err != nil {
			t.Fatal(err)
		}
		v2 := filepath.Join(t.TempDir(), "v2")
		withSlot(t, func() {
			mustBuild(t, f.cache, v2, "--roles", roles, "--secure-boot-key", key, "--secure-boot-cert", cert, "--format", "pxe", "lb")
		})
		for _, slot := range []string{"a", "b"} {
			if _, err := os.Stat(filepath.Join(v2, "lb", "pxe", "imgforge-"+slot+".efi")); err != nil {
				t.Errorf("the signed PXE set has no UKI of slot %s: %v", slot, err)
			}
		}
		port, log := serve(t, v2)
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := bootContext()
		defer cancel()
		start := time.Now()
		vm, ports := boot(t, ctx, bootOpts{name: "lb-secureboot", firmware: &fw, guest: []int{8404}, userData: secureBootUserData,
			disks:     []qemu.Disk{{Path: img, Snapshot: true}},
			guestFwds: []qemu.GuestForward{{Addr: "10.0.2.100:80", Cmd: fmt.Sprintf("env %s=127.0.0.1:%d %s", relayEnv, port, self)}}})
		line, err := vm.WaitFor(ctx, regexp.MustCompile(`secureboot: Secure boot (enabled|disabled|could not be determined)|Access Denied`))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(line, "Secure boot enabled") {
			t.Fatalf("want the kernel to report Secure Boot enabled: %s", line)
		}
		waitMultiUser(t, ctx, vm, start, "lb with Secure Boot")
		bootRE := regexp.MustCompile(`IMGFORGE-BOOT n=(\d+) slot=(\w*) sb=(\d*) machine-id=(\w*) v2=(\d)|IMGFORGE-ERR: .*`)
		var boots [][]string
		for len(boots) < 2 {
			line, err := vm.WaitFor(ctx, regexp.MustCompile(`IMGFORGE-BOOT n=`+strconv.Itoa(len(boots)+1)+` .*|IMGFORGE-ERR: .*`))
			if err != nil {
				t.Fatalf("waiting for boot %d: %v", len(boots)+1, err)
			}
			m := bootRE.FindStringSubmatch(line)
			if m == nil || m[1] == "" {
				t.Fatalf("boot %d: %s", len(boots)+1, line)
			}
			t.Logf("boot %s: slot %s, Secure Boot %s, machine-id %s, v2 haproxy.cfg %s (after %s)", m[1], m[2], m[3], m[4], m[5], time.Since(start).Round(time.Second))
			boots = append(boots, m)
		}
		if b1, b2 := boots[0], boots[1]; b1[2] != "a" || b1[5] != "0" || b2[2] != "b" || b2[5] != "1" || b1[3] != "1" || b2[3] != "1" || b1[4] != b2[4] || len(b1[4]) != 32 {
			t.Errorf("want slot a (v1) then slot b (v2), both with Secure Boot on and the same machine-id; got %v then %v", b1[1:], b2[1:])
		}
		if !strings.Contains(log.String(), "/sets/lb/imgforge-b.efi") {
			t.Errorf("the update did not fetch slot b's UKI from imgforge serve:\n%s", log)
		}
		if _, err := vm.WaitFor(ctx, regexp.MustCompile(`IMGFORGE-BLESSED entries: imgforge-0001-a\.conf imgforge-0002-b\.conf`)); err != nil {
			t.Fatalf("the v2 boot was not marked good: %v", err)
		}
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
		ctx, cancel := bootContext()
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
	if i < 0 || bytes.Contains(esp[i+1:], old) {
		t.Fatalf("want exactly one %q on the ESP", old)
	}
	if _, err := fh.WriteAt(new, start+int64(i)); err != nil {
		t.Fatal(err)
	}
}
