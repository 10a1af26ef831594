//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/qemu"
)

// updateUserData drives TestUpdateRollback from inside the node, one step
// per boot, with its state in /var (which the state partition keeps):
// boot 1 (v1, slot a) starts an update from 10.0.2.102, whose root.img
// stops three quarters of the way; the test resets the machine while the
// slot is being written (a power cut). Boot 2 must be v1 on slot a again,
// with no entry for slot b and slot b's partitions labelled _empty; it
// updates to v2 from 10.0.2.100 and reboots; boot 3
// (v2, slot b) waits until systemd-bless-boot marked the boot good, then
// updates to v3 from 10.0.2.101 with one try and a 60 s trial; boot 4
// (v3, slot a) never gets healthy (haproxy cannot bind), so
// imgforge-health reboots it and systemd-boot, its try spent, falls back
// to slot b; boot 5 is v2 again, and once marked good updates to v1'
// (v1 with a marker) from 10.0.2.103; boot 6 (v1', slot a) waits to be
// marked good and lists the ESP: two updates in a row alternate the slots,
// the fallback entry is the last good slot's (b, v2), and the ESP holds
// two kernel sets. Every boot prints what the test checks.
const updateUserData = `#cloud-config
runcmd:
  - [sh, -c, "echo IMGFORGE-RUNCMD ran >/dev/console"]
write_files:
  - path: /var/lib/cloud/scripts/per-boot/imgforge-test-update.sh
    permissions: "0755"
    content: |
      #!/bin/sh
      d=/var/lib/imgforge-test
      mkdir -p $d
      n=$(( $(cat $d/boots 2>/dev/null || echo 0) + 1 ))
      echo $n >$d/boots
      # The test cuts the power in boot 1: the count must be on disk first,
      # or boot 2 counts itself 1 again (seen once: the reset came 9 s after
      # this write, before the journal committed it).
      sync
      systemctl start imgforge-identity.service
      slot=$(sed -n 's/.*imgforge\.slot=\([ab]\).*/\1/p' /proc/cmdline)
      key=$(sha256sum /etc/ssh/ssh_host_ed25519_key.pub | cut -c1-16)
      v2=$(grep -c 'imgforge-test v2' /etc/haproxy/haproxy.cfg)
      v1p=$(grep -c 'imgforge-test v1p' /etc/haproxy/haproxy.cfg)
      echo "IMGFORGE-BOOT n=$n slot=$slot machine-id=$(cat /etc/machine-id) hostkey=$key v2=$v2 v1p=$v1p" >/dev/console
      blessed() {
        i=0
        until systemctl is-active -q systemd-bless-boot.service; do
          i=$((i+1))
          if [ $i -gt 600 ]; then
            echo "IMGFORGE-ERR: boot $n was not marked good: $(systemctl is-failed boot-complete.target imgforge-health.service imgforge-esp.service | tr '\n' ' ')" >/dev/console
            exit 1
          fi
          sleep 2
        done
      }
      case $n in
      1)
        (imgforge-agent update http://10.0.2.102/sets/lb/ >/dev/console 2>&1
          echo "IMGFORGE-ERR: the stalled update ended" >/dev/console) &
        ;;
      2)
        mountpoint -q /efi || imgforge-agent mount-esp /efi >/dev/console 2>&1
        echo "IMGFORGE-AFTER-CUT entries: $(ls /efi/loader/entries | tr '\n' ' ')sets: $(ls /efi/imgforge | tr '\n' ' ')labels: $(ls /dev/disk/by-partlabel | tr '\n' ' ')" >/dev/console
        imgforge-agent update http://10.0.2.100/sets/lb/ --reboot >/dev/console 2>&1 ||
          echo "IMGFORGE-ERR: the update to v2 failed" >/dev/console
        ;;
      3)
        blessed
        echo "IMGFORGE-BLESSED entries: $(ls /efi/loader/entries | tr '\n' ' ')" >/dev/console
        imgforge-agent update http://10.0.2.101/sets/lb/ --tries 1 --trial 60s --reboot >/dev/console 2>&1 ||
          echo "IMGFORGE-ERR: the update to v3 failed" >/dev/console
        ;;
      5)
        # The fallback entry was marked good in boot 3: nothing counts
        # this boot, and systemd-bless-boot does not run. Wait for haproxy.
        i=0
        until systemctl is-active -q haproxy.service; do
          i=$((i+1))
          if [ $i -gt 600 ]; then
            echo "IMGFORGE-ERR: haproxy did not start in boot 5" >/dev/console
            exit 1
          fi
          sleep 2
        done
        imgforge-agent update http://10.0.2.103/sets/lb/ --reboot >/dev/console 2>&1 ||
          echo "IMGFORGE-ERR: the update to v1' failed" >/dev/console
        ;;
      6)
        blessed
        echo "IMGFORGE-ESP entries: $(ls /efi/loader/entries | tr '\n' ' ')sets: $(ls /efi/imgforge | tr '\n' ' ')fallback: $(grep -l "imgforge.slot=b" /efi/loader/entries/*.conf | xargs -r grep -h "^title" | tr '\n' ' ')" >/dev/console
        ;;
      esac
`

// TestUpdateRollback updates a running lb in place (issue 13). First an
// update is cut by a power cut half way through writing slot b: the node
// boots its current slot, with nothing pointing at slot b. Then v1 → v2,
// a template edit, through imgforge-agent update from imgforge serve; then
// to v3, which builds but whose haproxy cannot start, and which must fall
// back to v2 by itself; then to v1' (two updates in a row: the slots
// alternate, the fallback is the last good slot, the ESP holds two kernel
// sets). The node's machine-id and SSH host key survive all of them, /etc
// is the new image's after each update, and each new boot is marked good
// by systemd-bless-boot once haproxy answers.
func TestUpdateRollback(t *testing.T) {
	needBootToServices(t)
	t.Parallel()
	f := cold(t, 0)
	// Its six boots are the suite's longest chain: its slot is asked for
	// before the builds, which make only overlay images (seconds each)
	// and so run without one.
	slot := reserveSlot(t)
	// v2 and v3: edits of the lb's first-boot haproxy.cfg, which is in
	// the overlay image: both builds reuse the root.
	build := func(name, marker, edit string) string {
		roles := filepath.Join(t.TempDir(), "roles")
		copyTree(t, filepath.Join(repo, "roles"), roles)
		cfg := filepath.Join(roles, "lb", "haproxy.cfg")
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(b), "frontend health\n", "frontend health\n"+edit, 1)
		if edited == string(b) {
			t.Fatal("could not edit haproxy.cfg")
		}
		if err := os.WriteFile(cfg, []byte("# imgforge-test "+marker+"\n"+edited), 0o644); err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(t.TempDir(), name)
		var res buildJSON
		res, _ = mustBuild(t, f.cache, root, "--roles", roles, "--format", "pxe", "lb")
		rootfs := ""
		for _, s := range res.Stages {
			if s.Stage == "rootfs" {
				rootfs = s.Result
			}
		}
		if !strings.HasPrefix(rootfs, "cached") {
			t.Errorf("%s: a template edit rebuilt the root (rootfs stage: %q); only the overlay image should be made again", name, rootfs)
		}
		return root
	}
	v2 := build("v2", "v2", "    # the same service\n")
	// haproxy -c accepts an address the machine does not have; haproxy
	// cannot bind it at start.
	v3 := build("v3", "v2", "    bind 192.0.2.99:8405\n")
	v1p := build("v1p", "v1p", "    # v1 again, as a new build\n")
	port2, log2 := serve(t, v2)
	port3, _ := serve(t, v3)
	port1p, _ := serve(t, v1p)
	stallPort, stalled := stallingProxy(t, port2)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := bootContext()
	defer cancel()
	vm, ports := boot(t, ctx, bootOpts{name: "lb-update", guest: []int{8404}, userData: updateUserData, slot: slot,
		disks: []qemu.Disk{{Path: filepath.Join(f.out, "lb", "lb.raw"), Snapshot: true}},
		guestFwds: []qemu.GuestForward{
			{Addr: "10.0.2.100:80", Cmd: fmt.Sprintf("env %s=127.0.0.1:%d %s", relayEnv, port2, self)},
			{Addr: "10.0.2.101:80", Cmd: fmt.Sprintf("env %s=127.0.0.1:%d %s", relayEnv, port3, self)},
			{Addr: "10.0.2.102:80", Cmd: fmt.Sprintf("env %s=127.0.0.1:%d %s", relayEnv, stallPort, self)},
			{Addr: "10.0.2.103:80", Cmd: fmt.Sprintf("env %s=127.0.0.1:%d %s", relayEnv, port1p, self)},
		}})
	// The times logged count from the machine's start, not from the
	// wait for its slot.
	start := time.Now()
	type bootLine struct{ n, slot, id, key, v2, v1p string }
	next := func(want string) bootLine {
		t.Helper()
		// The console is searched from the start: each boot has its own line.
		bootRE := regexp.MustCompile(`IMGFORGE-BOOT n=(` + want + `) slot=(\w*) machine-id=(\w*) hostkey=(\w*) v2=(\d) v1p=(\d)|IMGFORGE-ERR: .*`)
		line, err := vm.WaitFor(ctx, bootRE)
		if err != nil {
			t.Fatalf("waiting for boot %s: %v", want, err)
		}
		m := bootRE.FindStringSubmatch(line)
		if m[1] == "" {
			t.Fatalf("boot %s: %s", want, line)
		}
		b := bootLine{m[1], m[2], m[3], m[4], m[5], m[6]}
		t.Logf("boot %s: slot %s, machine-id %s, host key %s, haproxy.cfg v2's %s, v1p's %s (after %s)", b.n, b.slot, b.id, b.key, b.v2, b.v1p, time.Since(start).Round(time.Second))
		return b
	}
	first := next("1")
	if first.slot != "a" || first.v2 != "0" || len(first.id) != 32 || first.key == "" {
		t.Fatalf("the first boot: %+v", first)
	}
	same := func(b bootLine, slot, v2 string) {
		t.Helper()
		if b.slot != slot {
			t.Errorf("boot %s from slot %q, want %s", b.n, b.slot, slot)
		}
		if b.v2 != v2 {
			t.Errorf("boot %s: haproxy.cfg is v2's: %s, want %s", b.n, b.v2, v2)
		}
		if b.id != first.id || b.key != first.key {
			t.Errorf("boot %s: machine-id %s and host key %s, want the first boot's %s and %s", b.n, b.id, b.key, first.id, first.key)
		}
	}
	// The power cut: once the agent has written part of slot b and the
	// download hangs, reset the machine (it loses all it had not written
	// to its disk).
	select {
	case <-stalled:
	case <-ctx.Done():
		t.Fatal("the stalled update never reached the middle of root.img")
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`slot b: [1-9]\d* of \d+ MiB of the root written`)); err != nil {
		t.Fatalf("the stalled update wrote nothing: %v", err)
	}
	if _, err := vm.Monitor(ctx, "system_reset"); err != nil {
		t.Fatalf("resetting the machine: %v", err)
	}
	t.Logf("reset the machine while it wrote slot b (after %s)", time.Since(start).Round(time.Second))
	same(next("2"), "a", "0")
	cutRE := regexp.MustCompile(`IMGFORGE-AFTER-CUT entries: (.*)sets: (.*)labels: (.*)`)
	line, err := vm.WaitFor(ctx, cutRE)
	if err != nil {
		t.Fatal(err)
	}
	m := cutRE.FindStringSubmatch(qemu.Clean(line))
	t.Logf("after the cut: entries %s; kernel sets %s; partition labels %s", m[1], m[2], m[3])
	if strings.TrimSpace(m[1]) != "imgforge-0001-a.conf" || strings.TrimSpace(m[2]) != "a" {
		t.Errorf("after the cut, the ESP holds entries %q and kernel sets %q; want slot a's alone", m[1], m[2])
	}
	if labels := strings.Fields(m[3]); !slices.Contains(labels, "_empty") {
		t.Errorf("after the cut, slot b's partitions are not labelled _empty: %v", labels)
	}
	same(next("3"), "b", "1")
	// runcmd runs once, in the final stage (the image has no config
	// stage): in boot 1, whose per-boot script left the update running.
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	if _, err := vm.WaitFor(rctx, regexp.MustCompile(`IMGFORGE-RUNCMD ran`)); err != nil {
		t.Errorf("the user-data's runcmd never ran: %v", err)
	}
	rcancel()
	if !strings.Contains(log2.String(), "/sets/lb/root.img") {
		t.Errorf("the update did not fetch the root from imgforge serve:\n%s", log2)
	}
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`IMGFORGE-BLESSED entries: imgforge-0001-a\.conf imgforge-0002-b\.conf`)); err != nil {
		t.Fatalf("the v2 boot was not marked good: %v", err)
	}
	fourth := next("4")
	if fourth.slot != "a" {
		t.Errorf("v3 booted from slot %q, want a", fourth.slot)
	}
	same(next("5"), "b", "1")
	if err := eventually(ctx, httpCheck(ports[0], "/health", "")); err != nil {
		t.Fatalf("haproxy after the fallback: %v", err)
	}
	// v2 → v1': the second update in a row writes slot a again (which v3
	// had), the fallback entry is slot b's, v2, the last good one, and the
	// ESP holds two kernel sets.
	sixth := next("6")
	same(sixth, "a", "0")
	if sixth.v1p != "1" {
		t.Errorf("boot 6: haproxy.cfg is not v1p's")
	}
	espRE := regexp.MustCompile(`IMGFORGE-ESP entries: (.*)sets: (.*)fallback: (.*)`)
	line, err = vm.WaitFor(ctx, espRE)
	if err != nil {
		t.Fatal(err)
	}
	m = espRE.FindStringSubmatch(qemu.Clean(line))
	t.Logf("after v1 → v2 → v3 (rolled back) → v1': entries %s; kernel sets %s; slot b's entry %s", m[1], m[2], m[3])
	// v1' is generation 3 again: the update cleared the failed v3's entry
	// (generation 3, slot a) with slot a's kernel set before it wrote the
	// slot, and a new entry is one above the highest left.
	if got := strings.Fields(m[1]); !slices.Equal(got, []string{"imgforge-0002-b.conf", "imgforge-0003-a.conf"}) {
		t.Errorf("the ESP's entries after v1': %v, want slot b's of v2 (blessed, generation 2) and slot a's of v1' (blessed, generation 3)", got)
	}
	if got := strings.Fields(m[2]); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("the ESP's kernel sets after v1': %v, want a and b", got)
	}
	if v := imagemeta.Version(readManifest(t, filepath.Join(v2, "lb", "manifest.json")).ImageDigest); !strings.Contains(m[3], v) {
		t.Errorf("slot b's entry after v1' is %q, want v2's (version %s), the last good slot", m[3], v)
	}
}

// stallingProxy passes requests to imgforge serve on port, but stops
// root.img three quarters of the way and then hangs until the client goes;
// stalled is closed when it stops.
func stallingProxy(t *testing.T, port int) (int, <-chan struct{}) {
	t.Helper()
	stalled, done := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, r.URL.Path))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		if !strings.HasSuffix(r.URL.Path, "/root.img") || resp.ContentLength <= 0 {
			io.Copy(w, resp.Body)
			return
		}
		io.CopyN(w, resp.Body, resp.ContentLength*3/4)
		w.(http.Flusher).Flush()
		once.Do(func() { close(stalled) })
		// The guest's connection dies with its reset, but its relay may
		// not notice: the test's end stops the wait too.
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) })
	return srv.Listener.Addr().(*net.TCPAddr).Port, stalled
}

// buildEdited builds role's PXE set (and manifest) with file, a file of
// the role's folder in a copy of roles/, prefixed with prefix, and
// returns the output folder: a root for imgforge serve.
func buildEdited(t *testing.T, f *fixture, role, file, prefix string) string {
	t.Helper()
	roles := filepath.Join(t.TempDir(), "roles")
	copyTree(t, filepath.Join(repo, "roles"), roles)
	p := filepath.Join(roles, file)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, append([]byte(prefix), b...), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), role+"-edited")
	withSlot(t, func() { mustBuild(t, f.cache, out, "--roles", roles, "--format", "pxe", role) })
	return out
}
