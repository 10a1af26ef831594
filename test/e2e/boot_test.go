//go:build e2e

package e2e

import (
	"bytes"
	"context"
	be "encoding/binary"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sync/semaphore"

	"github.com/imgforge/imgforge/pkg/qemu"
	"github.com/imgforge/imgforge/pkg/seed"
)

// slots are the machine's two cores, shared out among the parallel tests:
// a test VM takes one for its life (TCG, one vCPU each: testCPUs), a test
// that works the host hard (builds, unpacking, hashing) one for its run
// (hostSlots), and the cluster test all of them. Every test of the
// package is parallel, and go test's -parallel (the Makefile's) is above
// the number of tests, so these slots alone decide what runs: a test
// waiting for a VM slot no longer holds one of go test's two places
// while the other core has nothing to do. Acquire is first come, first
// served, and a waiter for two slots holds back those behind it.
var slots = semaphore.NewWeighted(nSlots)

const nSlots = 2

// hostSlots takes n slots for the rest of t, for a test that boots no VM
// (one that does would wait for itself): 1 for a test that builds or
// reads images, nSlots for one that must have the machine to itself.
func hostSlots(t testing.TB, n int64) {
	t.Helper()
	if err := slots.Acquire(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slots.Release(n) })
}

// testCPUs is the vCPUs of every test VM. With two each, the guests'
// vCPUs outnumber the cores, and a vCPU that waits for its descheduled
// sibling (a TLB shootdown, a lock) wastes the core it has: the cluster
// test took two to three times as long. (Services of type notify that were
// once seen never to finish starting with one vCPU were waiting for
// entropy, which virtio-rng now gives.)
const testCPUs = 1

// multiUser is the line imgforge-ready.service prints once the boot has
// reached multi-user.target. systemd's own "Reached target" line is not
// printed on a console that a getty uses, as the serial console is here.
var multiUser = regexp.MustCompile(`imgforge: \S+ reached multi-user\.target`)

// bootTimeout is generous: several TCG guests share two cores. It counts
// from the test's first VM slot (bootContext): the wait for a slot, which
// the cluster test holds all of for most of the run, does not count.
const bootTimeout = 50 * time.Minute

// bootClock starts a test's bootTimeout when its first VM gets a slot.
type bootClock struct {
	once   sync.Once
	cancel context.CancelCauseFunc
	timer  *time.Timer
}

type bootClockKey struct{}

// bootContext is the context of a test's VMs: it ends bootTimeout after
// the test's first VM got its slot (startSlotted), or with cancel.
func bootContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(context.Background())
	c := &bootClock{cancel: cancel}
	return context.WithValue(ctx, bootClockKey{}, c), func() {
		c.once.Do(func() {}) // no timer after this
		if c.timer != nil {
			c.timer.Stop()
		}
		cancel(context.Canceled)
	}
}

// startBootClock starts ctx's bootTimeout, once (a no-op for a context
// not from bootContext).
func startBootClock(ctx context.Context) {
	if c, ok := ctx.Value(bootClockKey{}).(*bootClock); ok {
		c.once.Do(func() {
			c.timer = time.AfterFunc(bootTimeout, func() {
				c.cancel(fmt.Errorf("%w: %s after the test's first VM got its slot", context.DeadlineExceeded, bootTimeout))
			})
		})
	}
}

type bootOpts struct {
	disks    []qemu.Disk
	guest    []int // ports to forward
	userData string
	name     string
	bios     bool // SeaBIOS rather than OVMF
	// firmware, when set, is the UEFI firmware rather than FindFirmware's.
	firmware *qemu.Firmware
	// guestFwds relay connections from the guest to addresses in the
	// user network (restrict=on lets nothing else out).
	guestFwds []qemu.GuestForward
	// seedVirtio attaches the NoCloud seed as a read-only virtio disk, not
	// an AHCI CD drive (the cloud kernel has no AHCI driver).
	seedVirtio bool
	// slot, when set, is the VM slot the test reserved (reserveSlot);
	// else the machine waits for one.
	slot *reservation
}

// boot starts a VM from disks with a NoCloud seed and user networking that
// reaches nothing outside (restrict=on), and returns it with the host
// ports of the forwards, in the order of guest.
func boot(t *testing.T, ctx context.Context, o bootOpts) (*qemu.VM, []int) {
	t.Helper()
	fw, err := qemu.FindFirmware()
	if err != nil {
		t.Fatal(err)
	}
	s := seed.Default(o.name, o.name)
	if o.userData != "" {
		s.UserData = []byte(o.userData)
	}
	seedISO := filepath.Join(t.TempDir(), "seed.iso")
	if err := seed.WriteISO(seedISO, s, time.Unix(1735689600, 0)); err != nil {
		t.Fatal(err)
	}
	// Each VM writes to its own sparse copy of the image, not to QEMU's
	// snapshot overlay: guests on snapshot=on disks were seen to stall
	// under load here, while copies (as the db reboot test uses) did not.
	var disks []qemu.Disk
	for _, d := range o.disks {
		if d.Snapshot && d.Media != "cdrom" {
			cp := filepath.Join(t.TempDir(), filepath.Base(d.Path))
			if out, err := exec.Command("cp", "--sparse=always", d.Path, cp).CombinedOutput(); err != nil {
				t.Fatalf("copying %s: %v: %s", d.Path, err, out)
			}
			d.Path, d.Snapshot = cp, false
		}
		disks = append(disks, d)
	}
	var fwds []qemu.Forward
	for _, g := range o.guest {
		fwds = append(fwds, qemu.Forward{HostAddr: "127.0.0.1", GuestPort: g})
	}
	seedDisk := qemu.Disk{Path: seedISO, Media: "cdrom"}
	if o.seedVirtio {
		seedDisk = qemu.Disk{Path: seedISO, ReadOnly: true}
	}
	m := &qemu.Machine{
		Name: o.name, MemoryMiB: 1024, CPUs: testCPUs, Firmware: fw,
		Disks: append(disks, seedDisk),
		Nets:  []qemu.Net{{Restrict: true, Forwards: fwds, GuestForwards: o.guestFwds}},
	}
	if o.bios {
		m.Firmware = qemu.Firmware{}
	}
	if o.firmware != nil {
		m.Firmware = *o.firmware
	}
	var vm *qemu.VM
	if o.slot != nil {
		vm = startReserved(t, ctx, m, o.slot)
	} else {
		vm = startSlotted(t, ctx, m)
	}
	got, err := vm.Forwards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ports := make([]int, len(o.guest))
	for i, g := range o.guest {
		for _, f := range got {
			if f.GuestPort == g {
				ports[i] = f.HostPort
			}
		}
	}
	return vm, ports
}

// withSlot runs fn holding one slot: a VM test's builds before its boots.
// The test must hold no slot then (no VM of its own running), or two such
// tests could each wait for the other's slot.
func withSlot(t testing.TB, fn func()) {
	t.Helper()
	if err := slots.Acquire(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	defer slots.Release(1)
	fn()
}

// startSlotted starts m once a VM slot is free; the slot is given back
// when the machine ends, and the machine ends with the test (its console's
// last lines logged when the test failed).
func startSlotted(t testing.TB, ctx context.Context, m *qemu.Machine) *qemu.VM {
	t.Helper()
	if err := slots.Acquire(ctx, 1); err != nil {
		t.Fatal(context.Cause(ctx))
	}
	return startHeld(t, ctx, m)
}

// reservation is a VM slot asked for early. A test whose boots are a long
// chain (TestUpdateRollback: six boots of one machine, about 12 minutes)
// queues for its slot before its builds, so that it boots as soon as the
// cluster test gives the slots back, not after every test that asked
// while it built; ending last, alone on one slot, it set the suite's end.
type reservation struct {
	got  chan error
	used bool
}

// reserveSlot asks for a slot now; startReserved takes it. A slot the test
// got but did not use is given back when the test ends.
func reserveSlot(t testing.TB) *reservation {
	ctx, cancel := context.WithCancel(context.Background())
	r := &reservation{got: make(chan error, 1)}
	go func() { r.got <- slots.Acquire(ctx, 1) }()
	t.Cleanup(func() {
		cancel()
		if !r.used {
			if err := <-r.got; err == nil {
				slots.Release(1)
			}
		}
	})
	return r
}

// startReserved starts m once r's slot is there, as startSlotted does.
func startReserved(t testing.TB, ctx context.Context, m *qemu.Machine, r *reservation) *qemu.VM {
	t.Helper()
	if r.used {
		t.Fatal("a slot reservation used twice")
	}
	select {
	case err := <-r.got:
		r.used = true
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal(context.Cause(ctx))
	}
	return startHeld(t, ctx, m)
}

// startHeld starts m on a slot the test holds; the slot is given back
// when the machine ends.
func startHeld(t testing.TB, ctx context.Context, m *qemu.Machine) *qemu.VM {
	t.Helper()
	startBootClock(ctx)
	vm, err := qemu.Start(ctx, m)
	if err != nil {
		slots.Release(1)
		t.Fatal(err)
	}
	go func() { <-vm.Done(); slots.Release(1) }()
	// With IMGFORGE_E2E_LOGS, every machine's whole console is kept there,
	// for a hang that the last lines do not explain.
	if d := os.Getenv("IMGFORGE_E2E_LOGS"); d != "" {
		name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "-" + m.Name + "-" + time.Now().Format("150405") + ".console"
		if f, err := os.Create(filepath.Join(d, name)); err == nil {
			vm.ConsoleTo(f)
			t.Cleanup(func() { f.Close() })
		}
	}
	t.Cleanup(func() {
		vm.Kill()
		if t.Failed() {
			t.Logf("%s console (last lines):\n%s", m.Name, strings.Join(vm.Console.Tail(60), "\n"))
		}
	})
	return vm
}

// needBootToServices skips the tests that boot roles to their services
// when IMGFORGE_E2E_BOOT=0 (a quicker loop for a developer); the README's
// test command runs them.
func needBootToServices(t *testing.T) {
	t.Helper()
	if os.Getenv("IMGFORGE_E2E_BOOT") == "0" {
		t.Skip("IMGFORGE_E2E_BOOT=0: not booting the images to their services")
	}
}

func waitMultiUser(t *testing.T, ctx context.Context, vm *qemu.VM, start time.Time, what string) {
	t.Helper()
	if _, err := vm.WaitFor(ctx, multiUser); err != nil {
		t.Fatalf("%s did not reach multi-user: %v", what, err)
	}
	t.Logf("%s: multi-user after %.0fs", what, time.Since(start).Seconds())
}

// eventually retries check until it passes or ctx ends.
func eventually(ctx context.Context, check func() error) error {
	var err error
	for {
		if err = check(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", context.Cause(ctx), err)
		case <-time.After(2 * time.Second):
		}
	}
}

func httpCheck(port int, path, want string) func() error {
	return func() error {
		c := http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			return fmt.Errorf("GET %s: %s %q", path, resp.Status, b)
		}
		return nil
	}
}

// mariadbCheck reads the server greeting.
func mariadbCheck(port int) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 256)
		n, err := io.ReadAtLeast(c, buf, 10)
		if err != nil {
			return err
		}
		if !bytes.Contains(buf[:n], []byte("MariaDB")) {
			return fmt.Errorf("greeting %q is not MariaDB's", buf[:n])
		}
		return nil
	}
}

// fastcgiCheck asks php-fpm to run the app's index.php, as nginx does.
func fastcgiCheck(port int, want string) func() error {
	return func() error {
		out, err := fastcgiGet(fmt.Sprintf("127.0.0.1:%d", port), "/var/www/app/index.php")
		if err != nil {
			return err
		}
		if !strings.Contains(out, want) {
			return fmt.Errorf("php-fpm answered %q", out)
		}
		return nil
	}
}

// fastcgiGet is the smallest FastCGI client that runs one script.
func fastcgiGet(addr, script string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	record := func(typ byte, content []byte) []byte {
		h := []byte{1, typ, 0, 1, 0, 0, 0, 0}
		be.BigEndian.PutUint16(h[4:], uint16(len(content)))
		return append(h, content...)
	}
	var params []byte
	for _, kv := range [][2]string{{"SCRIPT_FILENAME", script}, {"REQUEST_METHOD", "GET"}, {"SCRIPT_NAME", "/index.php"}, {"REQUEST_URI", "/"}, {"SERVER_PROTOCOL", "HTTP/1.1"}, {"GATEWAY_INTERFACE", "CGI/1.1"}} {
		params = append(params, byte(len(kv[0])), byte(len(kv[1])))
		params = append(params, kv[0]+kv[1]...)
	}
	var req []byte
	req = append(req, record(1, []byte{0, 1, 0, 0, 0, 0, 0, 0})...) // BEGIN_REQUEST, responder
	req = append(req, record(4, params)...)
	req = append(req, record(4, nil)...)
	req = append(req, record(5, nil)...)
	if _, err := c.Write(req); err != nil {
		return "", err
	}
	var out bytes.Buffer
	for {
		h := make([]byte, 8)
		if _, err := io.ReadFull(c, h); err != nil {
			return out.String(), err
		}
		n, pad := be.BigEndian.Uint16(h[4:]), h[6]
		body := make([]byte, int(n)+int(pad))
		if _, err := io.ReadFull(c, body); err != nil {
			return out.String(), err
		}
		switch h[1] {
		case 6: // STDOUT
			out.Write(body[:n])
		case 3: // END_REQUEST
			return out.String(), nil
		}
	}
}

// roleService is how a role's service is checked from the host: the guest
// port to forward and the check on its host port.
type roleService struct {
	port int
	fn   func(int) func() error
}

var roleServices = map[string]roleService{
	"lb":  {8404, func(p int) func() error { return httpCheck(p, "/health", "") }},
	"web": {80, func(p int) func() error { return httpCheck(p, "/health", "ok") }},
	"app": {9000, func(p int) func() error { return fastcgiCheck(p, "no database configured yet") }},
	"db":  {3306, mariadbCheck},
}

// lbAnswers boots d, a file of the first cold build's lb folder (its
// Path relative to it), as o says, and waits for multi-user and haproxy's
// /health; first, when not nil, runs once the machine has started.
func lbAnswers(t *testing.T, o bootOpts, d qemu.Disk, first func(context.Context, *qemu.VM)) {
	needBootToServices(t)
	t.Parallel()
	f := cold(t, 0)
	ctx, cancel := bootContext()
	defer cancel()
	start := time.Now()
	d.Path = filepath.Join(f.out, "lb", d.Path)
	o.guest, o.disks = []int{8404}, []qemu.Disk{d}
	vm, ports := boot(t, ctx, o)
	if first != nil {
		first(ctx, vm)
	}
	waitMultiUser(t, ctx, vm, start, o.name)
	if err := eventually(ctx, httpCheck(ports[0], "/health", "")); err != nil {
		t.Fatal(err)
	}
}

// partitionOffset reads where partition n (1-based) of a GPT disk starts.
func partitionOffset(t *testing.T, img string, n int) int64 {
	t.Helper()
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	table, err := gpt.Read(file.New(fh, true), 512, 512)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range table.Partitions {
		if p.Index == n {
			return int64(p.Start) * 512
		}
	}
	t.Fatalf("%s has no partition %d", img, n)
	return 0
}

// TestTamperedRootStopsBoot flips one byte of haproxy, the lb's service
// binary, in the root partition. The root is verified on read: the boot
// goes on until systemd starts haproxy, whose first read of the changed
// block makes dm-verity report it; the watcher the initramfs started then
// prints the failure on the console and stops the machine.
func TestTamperedRootStopsBoot(t *testing.T) {
	t.Parallel()
	f := cold(t, 0)
	img := filepath.Join(t.TempDir(), "lb.raw")
	if out, err := exec.Command("cp", "--sparse=always", filepath.Join(f.out, "lb", "lb.raw"), img).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	root := partitionOffset(t, img, 2)
	flipByteAt(t, img, root+squashfsFileOffset(t, img, root, "/usr/sbin/haproxy")+100)
	ctx, cancel := bootContext()
	defer cancel()
	vm, _ := boot(t, ctx, bootOpts{name: "lb-tampered", disks: []qemu.Disk{{Path: img, Snapshot: true}}})
	stopsAfterVerificationFailed(t, ctx, vm)
}

// stopsAfterVerificationFailed waits for the verification failure on
// vm's console, and checks that the machine stops there: a kernel panic,
// and the boot never reaches multi-user.target.
func stopsAfterVerificationFailed(t *testing.T, ctx context.Context, vm *qemu.VM) {
	t.Helper()
	line, err := vm.WaitFor(ctx, regexp.MustCompile(`imgforge: ROOT FILE SYSTEM VERIFICATION FAILED|reached multi-user\.target`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(line, "VERIFICATION FAILED") {
		t.Fatalf("a tampered root booted: %s", line)
	}
	wait, cancelWait := context.WithTimeout(ctx, 30*time.Second)
	defer cancelWait()
	line, err = vm.WaitFor(wait, regexp.MustCompile(`Kernel panic - not syncing|reached multi-user\.target`))
	if err != nil {
		t.Fatalf("no kernel panic within 30 s of the verification failure: %v", err)
	}
	if strings.Contains(line, "multi-user") {
		t.Fatalf("the boot went on after the verification failed: %s", line)
	}
}

// squashfsFileOffset is where the data of file starts in the squashfs at
// offset off of img (rdsquashfs -s, from squashfs-tools-ng, names its
// first block).
func squashfsFileOffset(t *testing.T, img string, off int64, file string) int64 {
	t.Helper()
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sq := filepath.Join(t.TempDir(), "root.squashfs")
	dst, err := os.Create(sq)
	if err != nil {
		t.Fatal(err)
	}
	// A squashfs names its own size at byte 40 of its superblock.
	var sb [48]byte
	if _, err := src.ReadAt(sb[:], off); err != nil {
		t.Fatal(err)
	}
	size := int64(be.LittleEndian.Uint64(sb[40:]))
	if _, err := io.Copy(dst, io.NewSectionReader(src, off, size)); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	out, err := exec.Command("rdsquashfs", "-s", file, sq).CombinedOutput()
	if err != nil {
		t.Fatalf("rdsquashfs -s %s: %v: %s", file, err, out)
	}
	m := regexp.MustCompile(`(?m)^Blocks start: (\d+)$`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("rdsquashfs -s %s names no first block (is it a fragment?):\n%s", file, out)
	}
	n, err := strconv.ParseInt(string(m[1]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func flipByteAt(t *testing.T, p string, off int64) {
	t.Helper()
	fh, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b := make([]byte, 1)
	if _, err := fh.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := fh.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// dbPersistUserData runs on every boot of the db reboot test. The first
// boot writes a row, then starts a writer that inserts rows 1, 2, 3, ...,
// each in its own (autocommit) transaction, and prints IMGFORGE-ACK n on
// the console once mariadb has acknowledged row n; the test powers the
// machine down while the writer runs. The second boot prints the row and
// MAX(id), COUNT(*) of the written rows. When a query still fails after
// ten minutes of retries (the server makes its files on first boot, and
// may be restarted), the script prints IMGFORGE-ERR: with mariadb's error.
// The scripts live in /var, which the state partition keeps: write_files
// runs only on the first boot.
const dbPersistUserData = `#cloud-config
write_files:
  - path: /var/lib/imgforge-test/sql.sh
    permissions: "0644"
    content: |
      # sql TAG STATEMENTS: runs the statements, retrying while they fail,
      # and prints "TAG: their output" or "IMGFORGE-ERR: TAG: the error".
      sql() {
        for i in $(seq 600); do
          if out=$(mariadb -N -B -e "$2" 2>/run/imgforge-test-sql.err); then
            out=$(echo "$out" | tr '\t\n' '  ')
            out=${out% }
            echo "$1:${out:+ $out}" >/dev/console
            return 0
          fi
          sleep 1
        done
        echo "IMGFORGE-ERR: $1: $(tr '\n' ' ' </run/imgforge-test-sql.err)" >/dev/console
        return 1
      }
  - path: /var/lib/imgforge-test/writer.sh
    permissions: "0644"
    content: |
      n=1 failed=0
      while [ $failed -lt 300 ]; do
        if mariadb -e "REPLACE INTO t.w VALUES ($n)" 2>/run/imgforge-test-writer.err; then
          echo "IMGFORGE-ACK $n" >/dev/console
          n=$((n+1)) failed=0
        else
          echo "IMGFORGE-ACK-ERR $n: $(tr '\n' ' ' </run/imgforge-test-writer.err)" >/dev/console
          failed=$((failed+1))
          sleep 1
        fi
      done
      echo "IMGFORGE-ERR: writer: row $n: $(tr '\n' ' ' </run/imgforge-test-writer.err)" >/dev/console
  - path: /var/lib/cloud/scripts/per-boot/imgforge-test-row.sh
    permissions: "0755"
    content: |
      #!/bin/sh
      . /var/lib/imgforge-test/sql.sh
      if [ ! -e /var/lib/imgforge-test/wrote ]; then
        sql IMGFORGE-WROTE "CREATE DATABASE IF NOT EXISTS t; CREATE TABLE IF NOT EXISTS t.r (v VARCHAR(64) PRIMARY KEY); REPLACE INTO t.r VALUES ('kept-across-reboot'); CREATE TABLE IF NOT EXISTS t.w (id INT PRIMARY KEY) ENGINE=InnoDB" || exit 1
        touch /var/lib/imgforge-test/wrote
        systemd-run --unit=imgforge-test-writer -p After=mariadb.service /bin/sh /var/lib/imgforge-test/writer.sh ||
          echo "IMGFORGE-ERR: starting the writer failed" >/dev/console
      else
        slot=$(sed -n 's/.*imgforge\.slot=\([ab]\).*/\1/p' /proc/cmdline)
        sql "IMGFORGE-ROW slot=$slot" "SELECT v FROM t.r"
        sql "IMGFORGE-ROWS slot=$slot" "SELECT MAX(id), COUNT(*) FROM t.w"
        # The second boot updates the node in place to the test's db
        # v2 (issue 13): its rows must be there on the new slot.
        if [ "$slot" = a ]; then
          imgforge-agent update http://10.0.2.100/sets/db/ --reboot >/dev/console 2>&1 ||
            echo "IMGFORGE-ERR: the update to db v2 failed" >/dev/console
        fi
      fi
`

// TestDBKeepsRowAcrossReboot writes a row on the first boot of a db disk,
// powers it off, boots the same disk again and reads the row back. The
// disk is made larger than the image before each boot, as an operator who
// resizes a disk does: each boot grows the state partition and its file
// system (the empty ext4 the disk ships, then the one that holds the row).
//
// The power-down comes while a writer commits rows one by one (see
// dbPersistUserData): every commit mariadb acknowledged before it must be
// there after the reboot, with no holes.
func TestDBKeepsRowAcrossReboot(t *testing.T) {
	needBootToServices(t)
	t.Parallel()
	f := cold(t, 0)
	img := filepath.Join(t.TempDir(), "db.raw")
	if out, err := exec.Command("cp", "--sparse=always", filepath.Join(f.out, "db", "db.raw"), img).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// db v2 for the update of the second boot: a template edit, so the
	// build makes only its overlay image again.
	v2port, _ := serve(t, buildEdited(t, f, "db", "db/templates/node.cnf.tmpl", "{{/* imgforge-test v2 */}}"))
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const minAcks = 20
	var lastAck int
	for i := range 2 {
		what := fmt.Sprintf("boot %d", i+1)
		growFile(t, img, 512<<20)
		ctx, cancel := bootContext()
		defer cancel()
		start := time.Now()
		o := bootOpts{name: "db-persist", userData: dbPersistUserData, disks: []qemu.Disk{{Path: img}}}
		if i == 1 {
			o.guestFwds = []qemu.GuestForward{{Addr: "10.0.2.100:80", Cmd: fmt.Sprintf("env %s=127.0.0.1:%d %s", relayEnv, v2port, self)}}
		}
		vm, _ := boot(t, ctx, o)
		if i == 0 {
			guestLine(t, ctx, vm, what, `IMGFORGE-WROTE:`)
			guestLine(t, ctx, vm, what, fmt.Sprintf(`IMGFORGE-ACK %d$`, minAcks))
			t.Logf("%s: the row written and %d rows acknowledged after %.0fs; powering down while the writer runs", what, minAcks, time.Since(start).Seconds())
		} else {
			if m := guestLine(t, ctx, vm, what, `IMGFORGE-ROW slot=a: (.*)$`); m[1] != "kept-across-reboot" {
				t.Errorf("%s: the row is %q, want %q", what, m[1], "kept-across-reboot")
			}
			m := guestLine(t, ctx, vm, what, `IMGFORGE-ROWS slot=a: (.*)$`)
			var maxID, count int
			if _, err := fmt.Sscanf(m[1], "%d %d", &maxID, &count); err != nil {
				t.Fatalf("%s: MAX(id), COUNT(*) of the written rows is %q: %v", what, m[1], err)
			}
			t.Logf("%s: max(id) %d, count %d; last acknowledged %d", what, maxID, count, lastAck)
			if maxID < lastAck {
				t.Errorf("%s: the rows go up to %d, but %d was acknowledged before the power-down: acknowledged commits lost", what, maxID, lastAck)
			}
			if count != maxID {
				t.Errorf("%s: %d rows up to id %d: rows missing in between", what, count, maxID)
			}
			// The node updates itself to v2 and reboots into slot b:
			// the database on the state partition is the same.
			if m := guestLine(t, ctx, vm, what+" (v2, slot b)", `IMGFORGE-ROW slot=b: (.*)$`); m[1] != "kept-across-reboot" {
				t.Errorf("%s: after the update the row is %q, want %q", what, m[1], "kept-across-reboot")
			}
			if m2 := guestLine(t, ctx, vm, what+" (v2, slot b)", `IMGFORGE-ROWS slot=b: (.*)$`); m2[1] != m[1] {
				t.Errorf("%s: after the update MAX(id), COUNT(*) is %q, before it %q", what, m2[1], m[1])
			}
			t.Logf("%s: updated to db v2 in place; the rows are there (%.0fs)", what, time.Since(start).Seconds())
		}
		if !strings.Contains(vm.Console.String(), "imgforge: state partition") {
			t.Fatalf("%s: the initramfs did not say it grew the state partition", what)
		}
		if err := vm.Powerdown(ctx); err != nil {
			t.Fatalf("%s: powering down: %v", what, err)
		}
		if i == 0 {
			lastAck = lastACK(vm)
			t.Logf("%s: powered off after %.0fs; the last row acknowledged: %d", what, time.Since(start).Seconds(), lastAck)
		}
		checkStateFillsDisk(t, img)
	}
}

// guestErr is the line the guest script of the db reboot test prints when
// a query fails: it carries mariadb's error.
var guestErr = regexp.MustCompile(`IMGFORGE-ERR: .*`)

// guestLine waits for a console line that re matches and returns re's
// submatches in it; a guestErr line first fails the test with its text.
func guestLine(t *testing.T, ctx context.Context, vm *qemu.VM, what, re string) []string {
	t.Helper()
	want := regexp.MustCompile(re)
	line, err := vm.WaitFor(ctx, regexp.MustCompile(guestErr.String()+"|"+re))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if e := guestErr.FindString(line); e != "" {
		t.Fatalf("%s: the guest's query failed: %s", what, e)
	}
	return want.FindStringSubmatch(line)
}

var ackRE = regexp.MustCompile(`IMGFORGE-ACK (\d+)$`)

// lastACK is the highest row the db writer said mariadb acknowledged.
func lastACK(vm *qemu.VM) int {
	last := 0
	for _, l := range vm.Console.Tail(math.MaxInt) {
		if m := ackRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			last = max(last, n)
		}
	}
	return last
}

func growFile(t *testing.T, p string, by int64) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, fi.Size()+by); err != nil {
		t.Fatal(err)
	}
}

// checkStateFillsDisk reads the GPT of img and the ext4 superblock of its
// state partition (6, the last): both must reach (nearly) the end of the disk.
func checkStateFillsDisk(t *testing.T, img string) {
	t.Helper()
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	table, err := gpt.Read(file.New(fh, true), 512, 512)
	if err != nil {
		t.Fatal(err)
	}
	var start, end uint64
	for _, p := range table.Partitions {
		if p.Index == 6 {
			start, end = p.Start, p.End
		}
	}
	diskSectors := uint64(fi.Size() / 512)
	if start == 0 || diskSectors-end > 34+2048 {
		t.Fatalf("state partition sectors %d-%d on a disk of %d sectors: not grown to its end", start, end, diskSectors)
	}
	sb := make([]byte, 1024)
	if _, err := fh.ReadAt(sb, int64(start)*512+1024); err != nil {
		t.Fatal(err)
	}
	if be.LittleEndian.Uint16(sb[0x38:]) != 0xef53 {
		t.Fatal("state partition: no ext4 superblock")
	}
	blocks := uint64(be.LittleEndian.Uint32(sb[4:])) | uint64(be.LittleEndian.Uint32(sb[0x150:]))<<32
	fsBytes := blocks << (10 + be.LittleEndian.Uint32(sb[24:]))
	partBytes := (end - start + 1) * 512
	if partBytes-fsBytes > 4<<20 {
		t.Fatalf("state file system %d bytes in a partition of %d: not grown", fsBytes, partBytes)
	}
	t.Logf("state partition %d MiB, file system %d MiB", partBytes>>20, fsBytes>>20)
}

// TestBootISO boots the lb hybrid ISO from a CD drive.
func TestBootISO(t *testing.T) {
	lbAnswers(t, bootOpts{name: "lb-iso"}, qemu.Disk{Path: "lb.iso", Media: "cdrom"}, nil)
}

// TestBootISOBIOS boots the lb hybrid ISO from a CD drive on a PC BIOS
// (SeaBIOS): ISOLINUX, then the same kernel, initramfs and verified root.
func TestBootISOBIOS(t *testing.T) {
	lbAnswers(t, bootOpts{name: "lb-iso-bios", bios: true}, qemu.Disk{Path: "lb.iso", Media: "cdrom"}, func(ctx context.Context, vm *qemu.VM) {
		if _, err := vm.WaitFor(ctx, regexp.MustCompile(`ISOLINUX \d`)); err != nil {
			t.Fatalf("ISOLINUX did not start: %v", err)
		}
	})
}
