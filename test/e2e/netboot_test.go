//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/qemu"
)

// relayEnv makes the test binary a TCP relay between its standard input
// and output and the address it names: QEMU's guestfwd runs one per
// connection the guest opens to the PXE server's address, so a guest on
// a restrict=on network reaches imgforge serve on loopback.
const relayEnv = "IMGFORGE_E2E_RELAY"

func init() {
	if addr := os.Getenv(relayEnv); addr != "" {
		os.Exit(relay(addr))
	}
}

func relay(addr string) int {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		return 1
	}
	done := make(chan struct{})
	go func() {
		io.Copy(os.Stdout, c)
		close(done)
	}()
	io.Copy(c, os.Stdin)
	c.(*net.TCPConn).CloseWrite()
	<-done
	return 0
}

var (
	pxeOnce sync.Once
	pxeDir  string // a build's output folder with lb's PXE set
	pxeErr  string
)

// pxeSet builds lb's PXE set with the cache of cold build 0: every stage
// is cached there, so this only writes the set.
func pxeSet(t *testing.T) string {
	t.Helper()
	f := cold(t, 0)
	pxeOnce.Do(func() {
		out := filepath.Join(workdir, "pxe-out")
		var r result
		withSlot(t, func() { r = imgforge(t, f.cache, workdir, "build", "--output-dir", out, "--format", "pxe", "lb") })
		if r.code != 0 {
			pxeErr = fmt.Sprintf("imgforge build --format pxe lb: exit %d\n%s", r.code, r.stderr)
			return
		}
		fmt.Printf("lb PXE set from the cached stages: %.0fs\n", r.elapsed.Seconds())
		pxeDir = out
	})
	if pxeDir == "" {
		t.Fatal(pxeErr)
	}
	return pxeDir
}

var servingRE = regexp.MustCompile(`over http on 127\.0\.0\.1:(\d+)`)

// serve runs imgforge serve on root until the test ends, and checks then
// that SIGTERM stops it cleanly. It returns the port and the log.
func serve(t testing.TB, root string) (int, *syncBuffer) {
	t.Helper()
	log := &syncBuffer{}
	cmd := startImgforge(t, t.TempDir(), log, "serve", "--root", root, "--listen", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("imgforge serve after SIGTERM: %v\n%s", err, log)
			}
		case <-time.After(30 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			t.Errorf("imgforge serve did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("imgforge serve log:\n%s", log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if m := servingRE.FindStringSubmatch(log.String()); m != nil {
			var port int
			fmt.Sscan(m[1], &port)
			return port, log
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("imgforge serve did not start:\n%s", log)
	return 0, nil
}

// netboot starts a diskless VM that boots from the iPXE ROM of its NIC:
// QEMU's DHCP hands it http://10.0.2.100/boot.ipxe, and each connection
// to 10.0.2.100:80 is relayed to imgforge serve on loopback.
func netboot(t testing.TB, ctx context.Context, name, mac string, port int, guest []int) (*qemu.VM, []int) {
	t.Helper()
	fw, err := qemu.FindFirmware()
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var fwds []qemu.Forward
	for _, g := range guest {
		fwds = append(fwds, qemu.Forward{GuestPort: g})
	}
	m := &qemu.Machine{
		// The root lives in RAM.
		Name: name, MemoryMiB: 2048, CPUs: testCPUs, Firmware: fw,
		Nets: []qemu.Net{{
			MAC: mac, Restrict: true, Forwards: fwds,
			BootFile:      "http://10.0.2.100/boot.ipxe",
			GuestForwards: []qemu.GuestForward{{Addr: "10.0.2.100:80", Cmd: fmt.Sprintf("env %s=127.0.0.1:%d %s", relayEnv, port, self)}},
		}},
	}
	vm := startSlotted(t, ctx, m)
	got, err := vm.Forwards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ports := make([]int, len(guest))
	for i, g := range guest {
		for _, f := range got {
			if f.GuestPort == g {
				ports[i] = f.HostPort
			}
		}
	}
	return vm, ports
}

// netbootTimes are the seconds from QEMU's start of a netboot; 0: not
// reached.
type netbootTimes struct {
	fetched, multiUser, haproxy float64
}

// netbootLB netboots a diskless machine into the lb role from the PXE
// set under out, through imgforge serve, with its seed from the machines
// file over HTTP, and waits for haproxy to answer, cloud-init to have
// used that seed, and multi-user.
func netbootLB(t testing.TB, out string) netbootTimes {
	t.Helper()
	root := t.TempDir()
	// The PXE set in a root of the test's own, with a machines file.
	if err := os.MkdirAll(filepath.Join(root, "lb"), 0o755); err != nil {
		t.Fatal(err)
	}
	tool(t, "cp", "-a", filepath.Join(out, "lb", "pxe"), filepath.Join(root, "lb", "pxe"))
	const mac = "52:54:00:1e:b0:01"
	if err := os.WriteFile(filepath.Join(root, "machines.yaml"), []byte("machines:\n  - mac: "+mac+"\n    role: lb\n    hostname: lb-pxe-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port, log := serve(t, root)
	ctx, cancel := bootContext()
	defer cancel()
	start := time.Now()
	var times netbootTimes
	vm, ports := netboot(t, ctx, "lb-pxe", mac, port, []int{8404})
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`imgforge: root file system verified on read`)); err != nil {
		t.Fatal(err)
	}
	times.fetched = time.Since(start).Seconds()
	if err := eventually(ctx, httpCheck(ports[0], "/health", "")); err != nil {
		t.Fatalf("haproxy on the netbooted lb: %v", err)
	}
	times.haproxy = time.Since(start).Seconds()
	for _, want := range []string{
		"GET /machines/52-54-00-1e-b0-01.ipxe 200",
		"machine 52:54:00:1e:b0:01 boots role lb (machines file)",
		"GET /sets/lb/root.img 200",
		"GET /sets/lb/overlay.cpio 200",
		"GET /seed/52-54-00-1e-b0-01/meta-data 200",
		"GET /seed/52-54-00-1e-b0-01/user-data 200",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the serve log lacks %q", want)
		}
	}
	// cloud-init's last words name the datasource it used.
	if _, err := vm.WaitFor(ctx, regexp.MustCompile(`Datasource DataSourceNoCloudNet \[seed=[^\]]*http://10\.0\.2\.100/seed/52-54-00-1e-b0-01/\]`)); err != nil {
		t.Errorf("cloud-init did not use the seed served over HTTP: %v", err)
	}
	if _, err := vm.WaitFor(ctx, multiUser); err != nil {
		t.Fatalf("the netbooted lb did not reach multi-user: %v", err)
	}
	times.multiUser = time.Since(start).Seconds()
	return times
}

// TestNetbootLB netboots lb through imgforge serve (see netbootLB).
func TestNetbootLB(t *testing.T) {
	t.Parallel()
	times := netbootLB(t, pxeSet(t))
	t.Logf("lb netboot: root fetched after %.0fs, haproxy answered after %.0fs, multi-user after %.0fs", times.fetched, times.haproxy, times.multiUser)
}

// BenchmarkNetbootLB reports the seconds from power-on to the root
// fetched, multi-user and haproxy answering of an lb netboot, and the
// size of the PXE set. It builds the set with the default cache (quick
// when lb was built before there).
func BenchmarkNetbootLB(b *testing.B) {
	cacheHome := os.Getenv("XDG_CACHE_HOME")
	if cacheHome == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			b.Fatal(err)
		}
		cacheHome = filepath.Join(home, ".cache")
	}
	out := filepath.Join(b.TempDir(), "out")
	if r := imgforge(b, cacheHome, workdir, "build", "--output-dir", out, "--format", "pxe", "lb"); r.code != 0 {
		b.Fatalf("imgforge build --format pxe lb: exit %d\n%s", r.code, r.stderr)
	}
	var size int64
	for _, f := range []string{"vmlinuz", "initrd.img", "root.img", "boot.ipxe"} {
		fi, err := os.Stat(filepath.Join(out, "lb", "pxe", f))
		if err != nil {
			b.Fatal(err)
		}
		size += fi.Size()
	}
	b.ResetTimer()
	for range b.N {
		times := netbootLB(b, out)
		b.ReportMetric(times.fetched, "root-fetched-s")
		b.ReportMetric(times.multiUser, "multi-user-s")
		b.ReportMetric(times.haproxy, "haproxy-s")
	}
	b.ReportMetric(float64(size)/(1<<20), "pxe-set-MiB")
}

// TestNetbootTamperedRoot serves a root image with one byte changed: the
// initramfs downloads it and refuses to boot it.
func TestNetbootTamperedRoot(t *testing.T) {
	t.Parallel()
	out := pxeSet(t)
	root := t.TempDir()
	set := filepath.Join(root, "lb", "pxe")
	if err := os.MkdirAll(filepath.Dir(set), 0o755); err != nil {
		t.Fatal(err)
	}
	tool(t, "cp", "-a", filepath.Join(out, "lb", "pxe"), set)
	// haproxy's data: the root is verified on read.
	rootImg := filepath.Join(set, "root.img")
	flipByteAt(t, rootImg, squashfsFileOffset(t, rootImg, 0, "/usr/sbin/haproxy")+100)
	if err := os.WriteFile(filepath.Join(root, "machines.yaml"), []byte("default: lb\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port, log := serve(t, root)
	ctx, cancel := bootContext()
	defer cancel()
	vm, _ := netboot(t, ctx, "lb-pxe-tampered", "52:54:00:1e:b0:02", port, nil)
	stopsAfterVerificationFailed(t, ctx, vm)
	if !strings.Contains(log.String(), "GET /sets/lb/root.img 200") {
		t.Errorf("the root image was not fetched from imgforge serve")
	}
}
