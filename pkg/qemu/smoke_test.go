package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func needQEMU(t *testing.T) {
	t.Helper()
	if _, err := FindQEMU(); err != nil {
		t.Skip(err)
	}
}

// TestStartFailure starts QEMU with a disk that does not exist: Start
// must return QEMU's own message and leave nothing behind.
func TestStartFailure(t *testing.T) {
	needQEMU(t)
	t.Setenv("TMPDIR", t.TempDir())
	m := Machine{Name: "broken", MemoryMiB: 64, Accel: AccelTCG, Disks: []Disk{{Path: "/nonexistent/lb.raw"}}}
	_, err := Start(context.Background(), &m)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/lb.raw") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error %v; want one line naming the missing disk", err)
	}
	if left, _ := os.ReadDir(os.Getenv("TMPDIR")); len(left) > 0 {
		t.Errorf("left %v in TMPDIR", left[0].Name())
	}
}

// TestSmoke boots OVMF with an empty disk and waits for the firmware on
// the serial console. With a disk to boot first, OVMF leaves the NICs out
// of its boot order and reaches the UEFI shell in seconds, without trying
// PXE.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a machine; not in -short mode")
	}
	needQEMU(t)
	fw, err := FindFirmware()
	if err != nil {
		t.Skip(err)
	}
	t.Setenv("TMPDIR", t.TempDir())
	empty := filepath.Join(t.TempDir(), "empty.raw")
	if err := os.WriteFile(empty, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	m := Machine{
		Name: "smoke", MemoryMiB: 512, CPUs: 1, Firmware: fw,
		Disks: []Disk{{Path: empty, Snapshot: true}},
		Nets:  []Net{{Restrict: true}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	vm, err := Start(ctx, &m)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	entries, _ := os.ReadDir(os.Getenv("TMPDIR"))
	if len(entries) != 1 {
		t.Fatalf("TMPDIR holds %d entries, want the machine's folder", len(entries))
	}
	tmp := filepath.Join(os.Getenv("TMPDIR"), entries[0].Name())
	for _, f := range []string{varsFile, monitorFile} {
		if _, err := os.Stat(filepath.Join(tmp, f)); err != nil {
			t.Error(err)
		}
	}

	if status, err := vm.Monitor(ctx, "info status"); err != nil || status != "VM status: running" {
		t.Errorf("info status = %q, %v", status, err)
	}
	waitCtx, waitCancel := context.WithTimeout(ctx, 90*time.Second)
	line, err := vm.WaitFor(waitCtx, regexp.MustCompile(`BdsDxe: .*|Shell>`))
	waitCancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("firmware: %s", line)

	pid := vm.cmd.Process.Pid
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	err = vm.Powerdown(pctx) // the firmware ignores the power button: expect a kill
	pcancel()
	t.Logf("powerdown: %v", err)
	select {
	case <-vm.Done():
	default:
		t.Fatal("qemu still runs after Powerdown returned")
	}
	if err == nil && vm.Wait() != nil {
		t.Errorf("powerdown returned nil, wait %v", vm.Wait())
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("qemu process %d: %v, want it gone", pid, err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary folder: %v, want it removed", err)
	}
}

// TestContextKills starts a machine and ends its context: QEMU must go.
func TestContextKills(t *testing.T) {
	needQEMU(t)
	ctx, cancel := context.WithCancel(context.Background())
	m := Machine{Name: "ctx", MemoryMiB: 64, Accel: AccelTCG}
	vm, err := Start(ctx, &m)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-vm.Done():
	case <-time.After(10 * time.Second):
		vm.Kill()
		t.Fatal("qemu outlived its context")
	}
	if err := vm.Wait(); !errors.Is(err, context.Canceled) {
		t.Errorf("wait: %v, want context.Canceled", err)
	}
	if _, err := os.Stat(vm.tmp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary folder: %v, want it removed", err)
	}
}

// TestForwards asks for any free host port and reads back the one QEMU
// bound; the machine needs no firmware to answer its monitor.
func TestForwards(t *testing.T) {
	needQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := Machine{Name: "fwd", MemoryMiB: 64, Accel: AccelTCG, Nets: []Net{{Restrict: true, Forwards: []Forward{{GuestPort: 22}}}}}
	vm, err := Start(ctx, &m)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	fs, err := vm.Forwards(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].HostPort == 0 || fs[0].GuestPort != 22 || fs[0].HostAddr != "127.0.0.1" || fs[0].Protocol != "tcp" {
		t.Errorf("forwards %v", fs)
	}
}
