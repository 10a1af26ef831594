package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrKilled is the error of a machine that Kill (or Powerdown, when the
// guest did not power off in time) stopped.
var ErrKilled = errors.New("killed")

// consoleLines is how many console lines the errors of WaitFor show.
const consoleLines = 30

// VM is a running QEMU process.
type VM struct {
	Name string
	// Console is the serial console's output since the start.
	Console *Console

	cmd    *exec.Cmd
	tmp    string
	stdin  io.WriteCloser
	stderr *Console

	stopOnce sync.Once
	stopWhy  error // why we stopped the process, before done
	done     chan struct{}
	err      error // the exit, after done

	monMu   sync.Mutex
	monPath string
	mon     net.Conn
}

// Start starts the machine and returns once QEMU is up (its monitor
// answers). If QEMU fails to start, the error carries its message. The
// process is killed when ctx ends, and when the calling process dies; its
// temporary folder is removed when it exits.
//
// An empty Accel becomes kvm when KVMAvailable, else tcg; kvm that does
// not work here is an error.
func Start(ctx context.Context, m *Machine) (*VM, error) {
	bin, err := FindQEMU()
	if err != nil {
		return nil, err
	}
	mc := *m
	switch mc.Accel {
	case AccelAuto:
		mc.Accel = AccelTCG
		if KVMAvailable() {
			mc.Accel = AccelKVM
		}
	case AccelKVM:
		if !KVMAvailable() {
			return nil, fmt.Errorf("machine %s: kvm cannot run virtual machines here (/dev/kvm is missing, not writable, or fails a test guest): use tcg", mc.name())
		}
	}
	if _, err := mc.Args(os.TempDir()); err != nil { // validate before making anything
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "imgforge-qemu-"+mc.name()+"-")
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", mc.name(), err)
	}
	started := false
	defer func() {
		if !started {
			os.RemoveAll(tmp)
		}
	}()
	monPath := filepath.Join(tmp, monitorFile)
	if len(monPath) > 100 {
		return nil, fmt.Errorf("starting %s: the monitor socket path %s is too long for a unix socket: set TMPDIR to a shorter folder", mc.name(), monPath)
	}
	if mc.Firmware.Code != "" && mc.Firmware.Vars != "" {
		if err := copyFile(filepath.Join(tmp, varsFile), mc.Firmware.Vars); err != nil {
			return nil, fmt.Errorf("starting %s: copying the firmware's variable store: %w", mc.name(), err)
		}
	}
	args, err := mc.Args(tmp)
	if err != nil {
		return nil, err
	}

	vm := &VM{
		Name: mc.name(), Console: newConsole(), tmp: tmp, stderr: newConsole(),
		done: make(chan struct{}), monPath: monPath,
	}
	if mc.Netns != "" {
		// ip netns exec enters the namespace and execs QEMU: the process
		// is QEMU's, for signals and waiting.
		if !tapRE.MatchString(mc.Netns) {
			return nil, fmt.Errorf("starting %s: network namespace %q: want letters, digits, '-' or '_'", mc.name(), mc.Netns)
		}
		args = append([]string{"netns", "exec", mc.Netns, bin}, args...)
		if bin, err = exec.LookPath("ip"); err != nil {
			return nil, fmt.Errorf("starting %s in network namespace %s: ip is not installed (apt-get install iproute2): %w", mc.name(), mc.Netns, err)
		}
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout = vm.Console
	cmd.Stderr = &watchWriter{w: vm.stderr, onKVMFailure: func() {
		vm.stop(errors.New("kvm cannot run this guest here (QEMU reported an emulation failure): use tcg"))
	}}
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = 5 * time.Second
	cmd.Cancel = func() error {
		vm.setStopReason(context.Cause(ctx))
		return cmd.Process.Kill()
	}
	if vm.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", vm.Name, err)
	}
	vm.cmd = cmd
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", vm.Name, err)
	}
	started = true
	go vm.wait()

	// QEMU makes the monitor socket once it has parsed its arguments and
	// opened its files; until then, an exit is a start failure.
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if err := vm.connectMonitor(); err == nil {
			return vm, nil
		}
		select {
		case <-vm.done:
			if vm.err == nil {
				return nil, fmt.Errorf("qemu %s: exited while starting", vm.Name)
			}
			return nil, vm.err
		case <-startCtx.Done():
			vm.Kill()
			return nil, fmt.Errorf("starting %s: waiting for its monitor: %w", vm.Name, startCtx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (vm *VM) wait() {
	err := vm.cmd.Wait()
	vm.monMu.Lock()
	if vm.mon != nil {
		vm.mon.Close()
		vm.mon = nil
	}
	vm.monMu.Unlock()
	os.RemoveAll(vm.tmp)
	vm.setStopReason(nil)
	switch {
	case vm.stopWhy != nil:
		vm.err = fmt.Errorf("qemu %s: %w", vm.Name, vm.stopWhy)
	case err != nil:
		vm.err = fmt.Errorf("qemu %s: %w", vm.Name, err)
		if lines := vm.stderr.Tail(1); len(lines) > 0 {
			vm.err = fmt.Errorf("qemu %s: %w: %s", vm.Name, err, lines[0])
		}
	}
	close(vm.done)
}

// setStopReason records why the process is being stopped; the first
// reason wins, and nil (from the exit itself) freezes it.
func (vm *VM) setStopReason(why error) {
	vm.stopOnce.Do(func() { vm.stopWhy = why })
}

func (vm *VM) stop(why error) {
	vm.setStopReason(why)
	_ = vm.cmd.Process.Kill() // fails only once it has exited
}

// Done is closed when QEMU has exited and its temporary folder is gone.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Wait waits for QEMU to exit. It returns nil when QEMU exited by itself
// with status 0 (the guest powered off, or Ctrl-a x on the console).
func (vm *VM) Wait() error {
	<-vm.done
	return vm.err
}

// exitErr is how QEMU ended, for messages: never nil.
func (vm *VM) exitErr() error {
	if vm.err == nil {
		return errors.New("qemu exited")
	}
	return vm.err
}

// Kill kills QEMU and waits for it to exit.
func (vm *VM) Kill() {
	vm.stop(ErrKilled)
	<-vm.done
}

// exitGrace is how long Powerdown waits for QEMU to exit when its monitor
// failed, before it kills QEMU: the monitor fails when QEMU exits under it.
const exitGrace = 5 * time.Second

// Powerdown presses the machine's power button (ACPI) and waits for QEMU
// to exit; it returns how QEMU exited (see Wait). When ctx ends first it
// kills QEMU and returns an error.
func (vm *VM) Powerdown(ctx context.Context) error {
	select {
	case <-vm.done:
		return vm.err
	default:
	}
	if _, err := vm.Monitor(ctx, "system_powerdown"); err != nil {
		// A guest that powers off by itself as the button is pressed
		// closes the monitor before Wait has seen QEMU exit.
		select {
		case <-vm.done:
			return vm.err
		case <-ctx.Done():
		case <-time.After(exitGrace):
		}
		vm.Kill()
		return fmt.Errorf("powering %s down: %w", vm.Name, err)
	}
	select {
	case <-vm.done:
		return vm.err
	case <-ctx.Done():
		vm.Kill()
		return fmt.Errorf("waiting for %s to power down: %w; killed it", vm.Name, ctx.Err())
	}
}

// ConsoleTo copies the console's output so far, and all later output,
// to w.
func (vm *VM) ConsoleTo(w io.Writer) { vm.Console.Tee(w) }

// WriteConsole sends p to the serial console's input, as if typed.
// QEMU's console escapes apply: Ctrl-a x quits QEMU, Ctrl-a h lists them.
func (vm *VM) WriteConsole(p []byte) (int, error) { return vm.stdin.Write(p) }

// WaitFor waits until re matches a complete line of the console output,
// searched from the machine's start, and returns that line, without its
// end and terminal escapes (see Clean). A line is complete once its
// '\n' has arrived, so a pattern such as `ROW: .*` sees the whole line,
// never the part of it that has come so far. When QEMU exits, its
// unfinished last line counts too, since nothing more will come. WaitFor
// fails when ctx ends or QEMU exits first; the error then ends with the
// last console lines.
func (vm *VM) WaitFor(ctx context.Context, re *regexp.Regexp) (string, error) {
	return vm.waitFor(ctx, re, false)
}

// WaitForPrompt is WaitFor for a prompt, which waits for input without
// a newline: the unfinished last line counts too, as far as it has come.
// re must match the prompt itself (`Shell> $`, `login: $`), never what
// may follow it.
func (vm *VM) WaitForPrompt(ctx context.Context, re *regexp.Regexp) (string, error) {
	return vm.waitFor(ctx, re, true)
}

func (vm *VM) waitFor(ctx context.Context, re *regexp.Regexp, prompt bool) (string, error) {
	var from int64
	for {
		line, ok, next, changed := vm.Console.find(re, from, prompt)
		if ok {
			return line, nil
		}
		from = next
		select {
		case <-changed:
		case <-vm.done:
			// All output has been written by now: exec's Wait returns
			// once it has copied the last of QEMU's standard output.
			if line, ok, _, _ := vm.Console.find(re, from, true); ok {
				return line, nil
			}
			return "", fmt.Errorf("%s stopped before its console showed %q: %w%s", vm.Name, re, vm.exitErr(), vm.consoleTail())
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %s's console to show %q: %w%s", vm.Name, re, ctx.Err(), vm.consoleTail())
		}
	}
}

func (vm *VM) consoleTail() string {
	lines := vm.Console.Tail(consoleLines)
	if len(lines) == 0 {
		return "; the console is empty"
	}
	return fmt.Sprintf("; last %d console lines:\n  | %s", len(lines), strings.Join(lines, "\n  | "))
}

// Monitor runs one command of QEMU's human monitor (HMP), such as
// "info status", and returns its output.
func (vm *VM) Monitor(ctx context.Context, command string) (string, error) {
	if strings.ContainsAny(command, "\r\n") {
		return "", fmt.Errorf("monitor command %q: one line only", command)
	}
	vm.monMu.Lock()
	defer vm.monMu.Unlock()
	select {
	case <-vm.done:
		return "", fmt.Errorf("monitor of %s: qemu has exited", vm.Name)
	default:
	}
	if vm.mon == nil {
		if err := vm.dialMonitor(); err != nil {
			return "", err
		}
	}
	conn := vm.mon
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	out, err := hmp(conn, command)
	if !stop() || err != nil {
		// Cut short, or out of step with the prompts: start afresh next time.
		conn.Close()
		vm.mon = nil
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return "", fmt.Errorf("monitor of %s: %s: %w", vm.Name, command, err)
	}
	return out, nil
}

func (vm *VM) connectMonitor() error {
	vm.monMu.Lock()
	defer vm.monMu.Unlock()
	return vm.dialMonitor()
}

// dialMonitor connects to the monitor and reads its greeting; monMu is held.
func (vm *VM) dialMonitor() error {
	c, err := net.DialTimeout("unix", vm.monPath, 5*time.Second)
	if err != nil {
		return fmt.Errorf("monitor of %s: %w", vm.Name, err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := readPrompt(c); err != nil {
		c.Close()
		return fmt.Errorf("monitor of %s: %w", vm.Name, err)
	}
	_ = c.SetDeadline(time.Time{})
	vm.mon = c
	return nil
}

const prompt = "(qemu) "

// hmp sends a command and returns its output: what follows the echo of
// the command line, up to the next prompt.
func hmp(c net.Conn, command string) (string, error) {
	if _, err := io.WriteString(c, command+"\n"); err != nil {
		return "", err
	}
	b, err := readPrompt(c)
	quit := command == "quit" || command == "q"
	if err != nil && (!quit || !errors.Is(err, io.EOF)) {
		return "", err
	}
	_, out, _ := strings.Cut(string(b), "\r\n")
	lines := strings.Split(strings.TrimSuffix(out, prompt), "\n")
	for i, l := range lines {
		lines[i] = Clean(l)
	}
	return strings.TrimSpace(strings.Join(lines, "\n")), nil
}

func readPrompt(r io.Reader) ([]byte, error) {
	var b []byte
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		b = append(b, buf[:n]...)
		if bytes.HasSuffix(b, []byte(prompt)) {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// Forwards returns the host-to-guest forwards of the machine's user
// networks as QEMU set them up: a host port asked as 0 shows the port it
// was given.
func (vm *VM) Forwards(ctx context.Context) ([]Forward, error) {
	out, err := vm.Monitor(ctx, "info usernet")
	if err != nil {
		return nil, err
	}
	return parseUsernet(out), nil
}

// parseUsernet reads the HOST_FORWARD lines of "info usernet":
//
//	TCP[HOST_FORWARD]   9       127.0.0.1 45835       10.0.2.15    22     0     0
func parseUsernet(out string) []Forward {
	var fs []Forward
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasSuffix(f[0], "[HOST_FORWARD]") {
			continue
		}
		hp, err1 := strconv.Atoi(f[3])
		gp, err2 := strconv.Atoi(f[5])
		if err1 != nil || err2 != nil {
			continue
		}
		fs = append(fs, Forward{
			Protocol: strings.ToLower(strings.TrimSuffix(f[0], "[HOST_FORWARD]")),
			HostAddr: f[2], HostPort: hp, GuestPort: gp,
		})
	}
	return fs
}

// watchWriter passes QEMU's standard error on and notices KVM failing to
// run the guest, after which QEMU would sit paused for ever. QEMU's
// messages reach it in pieces of any size, so it looks for them in the end
// of the previous write joined to the new one.
type watchWriter struct {
	w            io.Writer
	onKVMFailure func()
	once         sync.Once
	last         []byte // the end of the previous write
}

// kvmFailures are the messages of QEMU when KVM cannot run the guest.
var kvmFailures = []string{"emulation failure", "KVM internal error"}

func (w *watchWriter) Write(p []byte) (int, error) {
	b := append(append(make([]byte, 0, len(w.last)+len(p)), w.last...), p...)
	for _, m := range kvmFailures {
		if bytes.Contains(b, []byte(m)) {
			w.once.Do(w.onKVMFailure)
		}
	}
	const keep = 32 // longer than any of kvmFailures
	w.last = append([]byte(nil), b[max(len(b)-keep, 0):]...)
	return w.w.Write(p)
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
