package qemu

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var testFirmware = Firmware{Code: "/fw/CODE.fd", Vars: "/fw/VARS.fd"}

// testMachine is the smallest machine the tests boot: a user net that
// reaches nothing outside.
func testMachine() Machine {
	return Machine{
		Name: "t", MemoryMiB: 512, CPUs: 1, Accel: AccelTCG, Firmware: testFirmware,
		Nets: []Net{{Restrict: true}},
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Machine)
		want []string // consecutive arguments that must appear, in order
		not  []string // arguments that must not appear
	}{
		{
			name: "base",
			edit: func(*Machine) {},
			want: []string{
				"-name t -machine q35 -accel tcg,tb-size=64 -cpu qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,-svm -m 512 -smp 1 -nodefaults",
				"-chardev stdio,id=console,mux=on,signal=off -serial chardev:console",
				"-monitor unix:/tmp/vm/monitor.sock,server=on,wait=off",
				"-drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd",
				"-drive if=pflash,format=raw,unit=1,file=/tmp/vm/efivars.fd",
				"-netdev user,id=net0,restrict=on -device virtio-net-pci,netdev=net0,mac=" + DefaultMAC("t", 0),
			},
		},
		{
			name: "defaults",
			edit: func(m *Machine) { *m = Machine{} },
			want: []string{"-name vm", "-accel kvm -accel tcg,tb-size=64", "-m 1024 -smp 1"},
			not:  []string{"-drive", "-netdev", "-kernel"},
		},
		{
			name: "kvm",
			edit: func(m *Machine) { m.Accel = AccelKVM },
			want: []string{"-accel kvm -cpu max"},
			not:  []string{"-accel tcg"},
		},
		{
			name: "forwards",
			edit: func(m *Machine) {
				m.Nets[0].Forwards = []Forward{{HostPort: 10080, GuestPort: 80}, {Protocol: "udp", HostAddr: "127.0.0.2", HostPort: 0, GuestPort: 53}}
			},
			want: []string{"-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:10080-:80,hostfwd=udp:127.0.0.2:0-:53"},
		},
		{
			name: "tftp",
			edit: func(m *Machine) { m.Nets[0].TFTPDir, m.Nets[0].BootFile = "/srv/a,b", "ipxe.efi" },
			want: []string{"-netdev user,id=net0,restrict=on,tftp=/srv/a,,b,bootfile=ipxe.efi"},
		},
		{
			name: "guestfwd",
			edit: func(m *Machine) {
				m.Nets[0].BootFile = "http://10.0.2.100/boot.ipxe"
				m.Nets[0].GuestForwards = []GuestForward{{Addr: "10.0.2.100:80", Cmd: "relay 127.0.0.1:8080,x"}}
			},
			want: []string{"user,id=net0,restrict=on,bootfile=http://10.0.2.100/boot.ipxe,guestfwd=tcp:10.0.2.100:80-cmd:relay 127.0.0.1:8080,,x"},
		},
		{
			name: "mcast",
			edit: func(m *Machine) {
				m.Nets = append(m.Nets, Net{Mcast: "230.0.0.1:5000", MAC: "52:54:00:AA:00:01"})
			},
			want: []string{
				"-netdev user,id=net0,restrict=on",
				"-netdev socket,id=net1,mcast=230.0.0.1:5000,localaddr=127.0.0.1 -device virtio-net-pci,netdev=net1,mac=52:54:00:aa:00:01",
			},
		},
		{
			name: "tap",
			edit: func(m *Machine) {
				m.Nets = append(m.Nets, Net{Tap: "if-lb1", MAC: "52:54:00:AA:00:02"})
			},
			want: []string{"-netdev tap,id=net1,ifname=if-lb1,script=no,downscript=no -device virtio-net-pci,netdev=net1,mac=52:54:00:aa:00:02"},
		},
		{
			name: "disks",
			edit: func(m *Machine) {
				m.Disks = []Disk{
					{Path: "/out/lb/lb.iso", Media: MediaCDROM, Snapshot: true},
					{Path: "/out/lb/lb.qcow2", Format: FormatQCOW2, Snapshot: true},
					{Path: "/tmp/seed.iso", ReadOnly: true},
					{Path: "/tmp/seed2.iso", Media: MediaCDROM},
				}
			},
			want: []string{
				"-drive if=none,id=disk0,format=raw,file=/out/lb/lb.iso,media=cdrom,readonly=on,snapshot=on -device ide-cd,drive=disk0,bus=ide.0,bootindex=1",
				"-drive if=none,id=disk1,format=qcow2,file=/out/lb/lb.qcow2,snapshot=on -device virtio-blk-pci,drive=disk1,bootindex=2",
				"-drive if=none,id=disk2,format=raw,file=/tmp/seed.iso,readonly=on -device virtio-blk-pci,drive=disk2,bootindex=3",
				"-device ide-cd,drive=disk3,bus=ide.1,bootindex=4",
			},
		},
		{
			name: "kernel",
			edit: func(m *Machine) {
				m.Firmware = Firmware{}
				m.Kernel, m.Initrd, m.Append = "/k/vmlinuz", "/k/initrd.img", "console=ttyS0 quiet"
				m.ExtraArgs = []string{"-no-reboot"}
			},
			want: []string{"-kernel /k/vmlinuz -initrd /k/initrd.img -append", "console=ttyS0 quiet", "-no-reboot"},
			not:  []string{"if=pflash"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMachine()
			tt.edit(&m)
			args, err := m.Args("/tmp/vm")
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !containsRun(args, strings.Split(w, " ")) && !slices.Contains(args, w) {
					t.Errorf("args lack %q:\n%s", w, strings.Join(args, " "))
				}
			}
			for _, n := range tt.not {
				for _, a := range args {
					if strings.Contains(a, n) {
						t.Errorf("args hold %q:\n%s", n, strings.Join(args, " "))
						break
					}
				}
			}
			if m.Nets != nil && !slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, "restrict=on") || strings.HasPrefix(a, "socket,") }) {
				t.Errorf("a test machine's user net without restrict=on:\n%s", strings.Join(args, " "))
			}
		})
	}
}

// containsRun reports whether run appears in args as consecutive items.
func containsRun(args, run []string) bool {
	for i := 0; i+len(run) <= len(args); i++ {
		if slices.Equal(args[i:i+len(run)], run) {
			return true
		}
	}
	return false
}

func TestArgsErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Machine)
		want string
	}{
		{"name", func(m *Machine) { m.Name = "a b" }, `machine name "a b"`},
		{"accel", func(m *Machine) { m.Accel = "hvf" }, `accelerator "hvf": accepted: kvm, tcg`},
		{"memory", func(m *Machine) { m.MemoryMiB = -1 }, "want positive numbers"},
		{"format", func(m *Machine) { m.Disks = []Disk{{Path: "x", Format: "vmdk"}} }, `format "vmdk": accepted: raw, qcow2`},
		{"media", func(m *Machine) { m.Disks = []Disk{{Path: "x", Media: "floppy"}} }, `media "floppy": accepted: disk, cdrom`},
		{"no path", func(m *Machine) { m.Disks = []Disk{{}} }, "disk 0 has no path"},
		{"cdroms", func(m *Machine) { m.Disks = slices.Repeat([]Disk{{Path: "x", Media: MediaCDROM}}, 7) }, "at most 6 cdroms"},
		{"mcast unicast", func(m *Machine) { m.Nets = []Net{{Mcast: "10.0.0.1:5000"}} }, "want an IPv4 multicast group and port"},
		{"mcast no port", func(m *Machine) { m.Nets = []Net{{Mcast: "230.0.0.1"}} }, "want an IPv4 multicast group and port"},
		{"mcast and user", func(m *Machine) { m.Nets = []Net{{Mcast: "230.0.0.1:5000", Restrict: true}} }, "takes no user-networking settings"},
		{"localaddr", func(m *Machine) { m.Nets = []Net{{Mcast: "230.0.0.1:5000", LocalAddr: "lo"}} }, `local address "lo"`},
		{"localaddr without mcast", func(m *Machine) { m.Nets = []Net{{LocalAddr: "127.0.0.1"}} }, "needs a multicast group"},
		{"mac", func(m *Machine) { m.Nets[0].MAC = "01:00:5e:00:00:01" }, "want a unicast Ethernet address"},
		{"guest port", func(m *Machine) { m.Nets[0].Forwards = []Forward{{HostPort: 1, GuestPort: 0}} }, "guest port 1 to 65535"},
		{"protocol", func(m *Machine) { m.Nets[0].Forwards = []Forward{{Protocol: "sctp", GuestPort: 1}} }, `protocol "sctp"`},
		{"host addr", func(m *Machine) { m.Nets[0].Forwards = []Forward{{HostAddr: "localhost", GuestPort: 1}} }, `host address "localhost"`},
		{"initrd alone", func(m *Machine) { m.Initrd = "/i" }, "needs a kernel"},
		{"tap name", func(m *Machine) { m.Nets = []Net{{Tap: "a,b"}} }, `tap "a,b"`},
		{"tap and user", func(m *Machine) { m.Nets = []Net{{Tap: "t0", Restrict: true}} }, "a tap net takes no"},
		{"guestfwd addr", func(m *Machine) { m.Nets[0].GuestForwards = []GuestForward{{Addr: "10.0.2.100", Cmd: "x"}} }, "want an IPv4 address and port"},
		{"guestfwd cmd", func(m *Machine) { m.Nets[0].GuestForwards = []GuestForward{{Addr: "10.0.2.100:80"}} }, "and a command"},
		{"guestfwd mcast", func(m *Machine) {
			m.Nets = []Net{{Mcast: "230.0.0.1:5000", GuestForwards: []GuestForward{{Addr: "10.0.2.100:80", Cmd: "x"}}}}
		}, "takes no user-networking settings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testMachine()
			tt.edit(&m)
			_, err := m.Args("/tmp/vm")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestFindFirmware(t *testing.T) {
	cands := []Firmware{{Code: "/a/CODE_4M", Vars: "/a/VARS_4M"}, {Code: "/a/CODE", Vars: "/a/VARS"}}
	tests := []struct {
		name    string
		present []string
		want    Firmware
		wantErr string
	}{
		{"4M first", []string{"/a/CODE_4M", "/a/VARS_4M", "/a/CODE", "/a/VARS"}, cands[0], ""},
		{"2M", []string{"/a/CODE_4M", "/a/CODE", "/a/VARS"}, cands[1], ""},
		{"none", nil, Firmware{}, "install the Debian package ovmf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := findFirmware(cands, func(p string) bool { return slices.Contains(tt.present, p) })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestFindQEMUMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := FindQEMU()
	if err == nil || !strings.Contains(err.Error(), "install the Debian package qemu-system-x86") {
		t.Errorf("error %v", err)
	}
}

func TestDefaultMAC(t *testing.T) {
	a, b := DefaultMAC("lb-1", 0), DefaultMAC("lb-2", 0)
	if a == b || a != DefaultMAC("lb-1", 0) || a == DefaultMAC("lb-1", 1) || !strings.HasPrefix(a, "52:54:00:") {
		t.Errorf("DefaultMAC: %s %s", a, b)
	}
}

func TestParseUsernet(t *testing.T) {
	out := "Hub -1 (net0):\n" +
		"  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\n" +
		"  TCP[HOST_FORWARD]   9       127.0.0.1 45835       10.0.2.15    22     0     0\n" +
		"  UDP[HOST_FORWARD]   8       127.0.0.1 10053       10.0.2.15    53     0     0\n" +
		"  TCP[ESTABLISHED]   10       10.0.2.15 40000        10.0.2.2    80     0     0\n"
	want := []Forward{
		{Protocol: "tcp", HostAddr: "127.0.0.1", HostPort: 45835, GuestPort: 22},
		{Protocol: "udp", HostAddr: "127.0.0.1", HostPort: 10053, GuestPort: 53},
	}
	if got := parseUsernet(out); !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"\x1b[1m\x1b[37m\x1b[40miPXE 1.0\x1b[0m -- x\r", "iPXE 1.0 -- x"},
		{"Press Ctrl-B...\b \b\b \bnet0: up", "Press Ctrl-B.net0: up"},
		{"\x1b[2J\x1b[01;01H\x1b[=3hShell> ", "Shell> "},
		{"plain", "plain"},
	}
	for _, tt := range tests {
		if got := Clean(tt.in); got != tt.want {
			t.Errorf("Clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func fakeVM() *VM {
	return &VM{Name: "fake", Console: newConsole(), done: make(chan struct{})}
}

func TestWaitFor(t *testing.T) {
	vm := fakeVM()
	vm.Console.Write([]byte("\x1b[2Jfirst line\r\nBdsDx"))
	got := make(chan string)
	go func() {
		line, err := vm.WaitFor(context.Background(), regexp.MustCompile(`BdsDxe: \w+`))
		if err != nil {
			t.Error(err)
		}
		got <- line
	}()
	time.Sleep(10 * time.Millisecond)
	vm.Console.Write([]byte("e: failed to load Boot0001\r\nnext"))
	if line := <-got; line != "BdsDxe: failed to load Boot0001" {
		t.Errorf("line %q", line)
	}
	// A prompt, which has no newline, is found by WaitForPrompt, not by
	// WaitFor.
	vm.Console.Write([]byte("\r\nShell> "))
	if line, err := vm.WaitFor(canceled(), regexp.MustCompile(`Shell>`)); err == nil {
		t.Errorf("WaitFor matched the unfinished line %q", line)
	}
	if line, err := vm.WaitForPrompt(context.Background(), regexp.MustCompile(`Shell> $`)); err != nil || line != "Shell> " {
		t.Errorf("prompt: %q, %v", line, err)
	}
}

// canceled is a context that has ended: WaitFor with it looks at the
// output once and returns.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestWaitForWholeLine writes a line in small pieces, as serial output
// arrives under load: a pattern ending in .* must see the whole line,
// never the part that has come so far (boot 2 of the db reboot test once
// "printed" "IMGFORGE-ROW: ke").
func TestWaitForWholeLine(t *testing.T) {
	re := regexp.MustCompile(`IMGFORGE-ROW: .*`)
	const text = "boot\r\n\x1b[0mIMGFORGE-ROW: kept-across-reboot\r\nnext"
	const want = "IMGFORGE-ROW: kept-across-reboot"
	for _, size := range []int{1, 2, 3, 7, 16} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			vm := fakeVM()
			got := make(chan string, 1)
			go func() {
				line, err := vm.WaitFor(context.Background(), re)
				if err != nil {
					t.Error(err)
				}
				got <- line
			}()
			end := strings.Index(text, want) + len(want) + 2 // its "\r\n" written
			for i := 0; i < len(text); i += size {
				vm.Console.Write([]byte(text[i:min(i+size, len(text))]))
				line, err := vm.WaitFor(canceled(), re)
				if i+size < end && err == nil {
					t.Fatalf("after %q: matched %q before the line was complete", text[:i+size], line)
				}
				if i+size >= end && line != want {
					t.Fatalf("after %q: %q, %v; want %q", text[:i+size], line, err, want)
				}
				time.Sleep(time.Millisecond) // let the waiter look at the pieces
			}
			if line := <-got; line != want {
				t.Errorf("waiter got %q, want %q", line, want)
			}
		})
	}
}

// TestWaitForExitTail: once QEMU has exited, its unfinished last line is
// all there is, and WaitFor matches it.
func TestWaitForExitTail(t *testing.T) {
	vm := fakeVM()
	vm.Console.Write([]byte("IMGFORGE-ROW: las"))
	got := make(chan string, 1)
	go func() {
		line, err := vm.WaitFor(context.Background(), regexp.MustCompile(`IMGFORGE-ROW: .*`))
		if err != nil {
			t.Error(err)
		}
		got <- line
	}()
	time.Sleep(5 * time.Millisecond)
	vm.Console.Write([]byte("t words"))
	close(vm.done)
	if line := <-got; line != "IMGFORGE-ROW: last words" {
		t.Errorf("line %q", line)
	}
}

// TestWaitForOneLine: a match never spans lines.
func TestWaitForOneLine(t *testing.T) {
	vm := fakeVM()
	vm.Console.Write([]byte("IMGFORGE-ROW:\r\nkept\r\n"))
	if line, err := vm.WaitFor(canceled(), regexp.MustCompile(`IMGFORGE-ROW:\s+\S+`)); err == nil {
		t.Errorf("matched %q across lines", line)
	}
}

func TestWaitForTimeout(t *testing.T) {
	vm := fakeVM()
	for i := range 40 {
		fmt.Fprintf(vm.Console, "line %d\r\n", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := vm.WaitFor(ctx, regexp.MustCompile(`login:`))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want a deadline", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "last 30 console lines") || !strings.Contains(msg, "| line 39") || !strings.Contains(msg, "| line 10\n") || strings.Contains(msg, "| line 9\n") {
		t.Errorf("error:\n%s", msg)
	}
}

func TestWaitForExit(t *testing.T) {
	vm := fakeVM()
	vm.Console.Write([]byte("Reset System\r\n"))
	vm.err = errors.New("qemu fake: exit status 1")
	close(vm.done)
	_, err := vm.WaitFor(context.Background(), regexp.MustCompile(`login:`))
	if err == nil || !strings.Contains(err.Error(), "stopped before its console showed") || !strings.Contains(err.Error(), "| Reset System") {
		t.Errorf("error %v", err)
	}
}

func TestConsoleDropsOldOutput(t *testing.T) {
	c := newConsole()
	line := []byte(strings.Repeat("x", 1023) + "\n")
	for range (maxConsole / len(line)) + 10 {
		c.Write(line)
	}
	c.Write([]byte("the end"))
	if n := len(c.String()); n > maxConsole {
		t.Errorf("console keeps %d bytes", n)
	}
	if _, ok, _, _ := c.find(regexp.MustCompile(`the end`), 0, true); !ok {
		t.Error("lost the newest output")
	}
	if tail := c.Tail(1); len(tail) != 1 || tail[0] != "the end" {
		t.Errorf("tail %q", tail)
	}
}

func TestConsoleTee(t *testing.T) {
	c := newConsole()
	c.Write([]byte("before "))
	var b strings.Builder
	c.Tee(&b)
	c.Write([]byte("after"))
	if b.String() != "before after" {
		t.Errorf("tee got %q", b.String())
	}
}

// TestWatchWriterSplitMessage: QEMU's standard error arrives in pieces of
// any size; a KVM failure split between two of them is still noticed.
func TestWatchWriterSplitMessage(t *testing.T) {
	for _, msg := range kvmFailures {
		for cut := 1; cut < len(msg); cut++ {
			fired := 0
			var out strings.Builder
			w := &watchWriter{w: &out, onKVMFailure: func() { fired++ }}
			text := "qemu: error: " + msg + " (code 1)\n"
			at := len("qemu: error: ") + cut
			w.Write([]byte(text[:at]))
			w.Write([]byte(text[at:]))
			if fired != 1 {
				t.Errorf("%q cut at %d: not noticed", msg, cut)
			}
			w.Write([]byte(text))
			if fired != 1 || out.String() != text+text {
				t.Errorf("%q cut at %d: fired %d times, passed on %q", msg, cut, fired, out.String())
			}
		}
	}
	fired := false
	w := &watchWriter{w: io.Discard, onKVMFailure: func() { fired = true }}
	w.Write([]byte("qemu-system-x86_64: warning: host doesn't support requested feature\n"))
	if fired {
		t.Error("a warning was taken for a KVM failure")
	}
}

// TestPowerdownGuestExits: when the guest powers off by itself just as
// the button is pressed, QEMU closes the monitor before its exit is seen.
// That is a clean power-off, not a failure to kill.
func TestPowerdownGuestExits(t *testing.T) {
	dir := t.TempDir()
	vm := fakeVM()
	vm.monPath = filepath.Join(dir, "m.sock")
	l, err := net.Listen("unix", vm.monPath)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A process for Kill to kill, as the old Powerdown did.
	vm.cmd = exec.Command("sleep", "60")
	if err := vm.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = vm.cmd.Process.Kill(); _ = vm.cmd.Wait() }()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, "QEMU 7.2 monitor - type 'help' for more information\r\n"+prompt)
		bufio.NewReader(c).ReadString('\n') // system_powerdown
		c.Close()                           // QEMU exits as the guest powers off...
		time.Sleep(50 * time.Millisecond)   // ...and Wait sees it a moment later
		vm.setStopReason(nil)
		close(vm.done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := vm.Powerdown(ctx); err != nil {
		t.Errorf("powerdown: %v, want nil (the guest powered off)", err)
	}
}
