//go:build linux && amd64

package qemu

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KVM ioctls and exit reasons, from linux/kvm.h.
const (
	kvmGetAPIVersion       = 0xAE00
	kvmCreateVM            = 0xAE01
	kvmGetVCPUMmapSize     = 0xAE04
	kvmCreateVCPU          = 0xAE41
	kvmSetUserMemoryRegion = 0x4020AE46
	kvmRun                 = 0xAE80
	kvmExitHLT             = 5
)

type kvmMemoryRegion struct {
	slot, flags                   uint32
	guestPhysAddr, size, userAddr uint64
}

// KVMAvailable reports whether QEMU can use KVM here: /dev/kvm opens
// read-write and runs a one-instruction guest. Opening the device is not
// enough: some nested hypervisors create virtual machines but cannot run
// the FPU instructions firmware starts with, and QEMU then stops with
// "emulation failure". The probe runs `fwait; fninit; hlt` at the reset
// vector and wants the HLT exit.
func KVMAvailable() bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	kvm, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(kvm)
	if v, err := ioctl(kvm, kvmGetAPIVersion, 0); err != nil || v != 12 {
		return false
	}
	vm, err := ioctl(kvm, kvmCreateVM, 0)
	if err != nil {
		return false
	}
	defer unix.Close(int(vm))
	const size = 0x10000
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return false
	}
	defer func() { _ = unix.Munmap(mem) }()
	copy(mem[0xfff0:], []byte{0x9b, 0xdb, 0xe3, 0xf4}) // fwait; fninit; hlt at 0xfffffff0
	region := kvmMemoryRegion{guestPhysAddr: 0xffff0000, size: size, userAddr: uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if _, err := ioctl(int(vm), kvmSetUserMemoryRegion, uintptr(unsafe.Pointer(&region))); err != nil {
		return false
	}
	vcpu, err := ioctl(int(vm), kvmCreateVCPU, 0)
	if err != nil {
		return false
	}
	defer unix.Close(int(vcpu))
	runSize, err := ioctl(kvm, kvmGetVCPUMmapSize, 0)
	if err != nil || runSize < 12 {
		return false
	}
	run, err := unix.Mmap(int(vcpu), 0, int(runSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return false
	}
	defer func() { _ = unix.Munmap(run) }()
	if _, err := ioctl(int(vcpu), kvmRun, 0); err != nil {
		return false
	}
	exitReason := *(*uint32)(unsafe.Pointer(&run[8])) // struct kvm_run: 8 bytes of flags, then exit_reason
	return exitReason == kvmExitHLT
}

func ioctl(fd int, req, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}
