package qemu

import "syscall"

// sysProcAttr puts QEMU in its own process group, so that a terminal's
// Ctrl-C reaches imgforge (which powers the guest down) and not QEMU, and
// kills QEMU when the thread that started it dies with its process.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
