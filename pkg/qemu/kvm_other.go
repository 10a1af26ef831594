//go:build !(linux && amd64)

package qemu

// KVMAvailable reports whether QEMU can use KVM here; only Linux on amd64
// is probed, so it is false elsewhere.
func KVMAvailable() bool { return false }
