// Package qemu starts virtual machines for imgforge's images: UEFI
// firmware, disks, networks and the serial console.
//
// A Machine is plain data: its firmware, disks, NICs and limits. Args turns
// it into a qemu-system-x86_64 command line (a q35 machine, virtio disks
// and NICs, a serial console on QEMU's standard output, an HMP monitor on
// a unix socket), and Start runs it: the OVMF variable store is copied
// into a private temporary folder per machine, the serial output is kept
// in a Console that tests can wait on, and the QEMU process never outlives
// the context given to Start nor the process that started it.
//
// The package does not build images or seeds (see pkg/seed), and it does
// not decide what a test's network looks like: a Net says it, and the
// network rules of the project (user networking with restrict=on, socket
// multicast on loopback) are the caller's to follow.
package qemu

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Binary is the QEMU system emulator this package runs.
const Binary = "qemu-system-x86_64"

// FindQEMU returns the path of qemu-system-x86_64 on PATH.
func FindQEMU() (string, error) {
	p, err := exec.LookPath(Binary)
	if err != nil {
		return "", fmt.Errorf("%s is not installed (install the Debian package qemu-system-x86): %w", Binary, err)
	}
	return p, nil
}

// Firmware is a UEFI firmware: its code, mapped read-only, and the
// template of its variable store, copied for each machine. An empty Code
// means QEMU's built-in BIOS (SeaBIOS); an empty Vars, a firmware image
// that carries its own store and is mapped read-only.
type Firmware struct {
	Code string
	Vars string
	// SecureBoot runs a Secure Boot build of OVMF (its code needs SMM
	// and a flash only SMM writes): the machine gets smm=on and a secure
	// pflash.
	SecureBoot bool
}

// SnakeoilFirmware is Debian's Secure Boot OVMF with the variable store
// that enrols the snakeoil test key set (/usr/share/ovmf/PkKek-1-snakeoil.key
// and .pem, the key's passphrase "snakeoil") and enforces Secure Boot.
func SnakeoilFirmware() (Firmware, error) {
	fw := Firmware{Code: "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", Vars: "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd", SecureBoot: true}
	for _, f := range []string{fw.Code, fw.Vars} {
		if !fileExists(f) {
			return Firmware{}, fmt.Errorf("no Secure Boot OVMF firmware (%s): install the Debian package ovmf (bookworm or later)", f)
		}
	}
	return fw, nil
}

// firmwareCandidates are the OVMF builds FindFirmware looks for, best
// first: Debian's 4 MiB and 2 MiB builds, then Fedora's and Arch's.
var firmwareCandidates = []Firmware{
	{Code: "/usr/share/OVMF/OVMF_CODE_4M.fd", Vars: "/usr/share/OVMF/OVMF_VARS_4M.fd"},
	{Code: "/usr/share/OVMF/OVMF_CODE.fd", Vars: "/usr/share/OVMF/OVMF_VARS.fd"},
	{Code: "/usr/share/edk2/ovmf/OVMF_CODE.fd", Vars: "/usr/share/edk2/ovmf/OVMF_VARS.fd"},
	{Code: "/usr/share/edk2/x64/OVMF_CODE.4m.fd", Vars: "/usr/share/edk2/x64/OVMF_VARS.4m.fd"},
}

// FindFirmware returns the first OVMF build installed, the 4 MiB one first.
func FindFirmware() (Firmware, error) {
	return findFirmware(firmwareCandidates, fileExists)
}

func findFirmware(candidates []Firmware, exists func(string) bool) (Firmware, error) {
	for _, f := range candidates {
		if exists(f.Code) && exists(f.Vars) {
			return f, nil
		}
	}
	return Firmware{}, fmt.Errorf("no OVMF UEFI firmware found (looked for %s): install the Debian package ovmf", candidates[0].Code)
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// Disk formats and media.
const (
	FormatRaw   = "raw"
	FormatQCOW2 = "qcow2"
	MediaDisk   = "disk"
	MediaCDROM  = "cdrom"
)

// Disk is one disk of a machine. Disks boot in the order given.
type Disk struct {
	Path   string
	Format string // raw (default) or qcow2
	Media  string // disk (default: virtio-blk) or cdrom (AHCI, boots El Torito images)
	// ReadOnly opens the file read-only; a cdrom always is.
	ReadOnly bool
	// Snapshot sends the guest's writes to a temporary overlay that QEMU
	// drops on exit, so the file is never modified.
	Snapshot bool
}

// Forward is a port forward from the host into a user-networking guest.
type Forward struct {
	Protocol  string // tcp (default) or udp
	HostAddr  string // default 127.0.0.1
	HostPort  int    // 0: any free port (see VM.Forwards)
	GuestPort int
}

func (f Forward) String() string {
	return fmt.Sprintf("%s:%d->%d/%s", f.hostAddr(), f.HostPort, f.GuestPort, f.protocol())
}

func (f Forward) protocol() string {
	if f.Protocol == "" {
		return "tcp"
	}
	return f.Protocol
}

func (f Forward) hostAddr() string {
	if f.HostAddr == "" {
		return "127.0.0.1"
	}
	return f.HostAddr
}

// Net is one virtio NIC and the network behind it: QEMU's user
// networking (the default), or, when Mcast is set, a socket multicast
// segment shared with the other machines that name the same group.
type Net struct {
	// MAC is the NIC's address; empty derives a stable one from the
	// machine's name and the NIC's index (52:54:00:xx:xx:xx), so that
	// machines on one segment never share QEMU's default address.
	MAC string

	// User networking.
	Restrict bool      // restrict=on: the guest reaches nothing outside, forwards still work
	Forwards []Forward // host to guest
	TFTPDir  string    // served by the built-in TFTP server
	BootFile string    // offered by the built-in DHCP server (a file name, or a URL for iPXE)
	// GuestForwards connect guest TCP connections to an address to a
	// command on the host, one process per connection (works with
	// Restrict).
	GuestForwards []GuestForward

	// Socket multicast segment.
	Mcast     string // group and port, e.g. 230.0.0.1:5000
	LocalAddr string // the address multicast is sent from; default 127.0.0.1

	// Tap is an existing tap device (in the machine's network namespace,
	// see Machine.Netns) to attach the NIC to, for a bridge a test made.
	Tap string
}

// GuestForward runs Cmd for each TCP connection the guest makes to
// Addr (an address in the user network, such as 10.0.2.100:80), with the
// connection on the command's standard input and output.
type GuestForward struct {
	Addr string
	Cmd  string // split into words as a shell would, but run without one
}

// Accelerators.
const (
	AccelAuto = ""
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// tcgAccel is TCG with a translation cache of 64 MiB instead of QEMU's
// 1 GiB. The cache keeps the code it translated until it is full, and a
// guest's write to a page that holds translated code takes QEMU's slow
// path: after a reset or a reboot, with a large cache, the old boot's
// code covers much of the guest's memory, and the new boot crawls (the
// kernel unpacked an lb's 16 MiB initramfs in 86 s after a reset, 2.6 s
// on the first boot of the same QEMU). A small cache is flushed often
// enough that a reboot is as fast as a first boot (1.3 s).
const tcgAccel = "tcg,tb-size=64"

// tcgCPU is the guest CPU under TCG: x86-64-v2's features and no more.
// QEMU's "max" model offers AVX2, SVM and the rest, which the guest then
// uses (glibc's AVX2 string functions, the kvm module loaded by udev) and
// TCG emulates slowly: a lone web VM reached multi-user in 145 s with this
// model against 212 s with max, and used 29 % of a core settled against
// 38 % (on the 2-core machine, 2026-12-02). qemu64 itself offers SVM,
// for which udev loads kvm_amd in every guest: -svm. Under KVM the guest
// gets the host's CPU (max).
const tcgCPU = "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,-svm"

// Machine is a virtual machine to start.
type Machine struct {
	Name      string // letters, digits, '.', '_', '-'; default "vm"
	MemoryMiB int    // default 1024
	CPUs      int    // default 1
	// Accel is kvm, tcg, or empty: Start picks kvm when KVMAvailable,
	// else tcg (Args alone lets QEMU try kvm, then tcg).
	Accel    string
	Firmware Firmware
	Disks    []Disk
	Nets     []Net
	// Direct kernel boot.
	Kernel, Initrd, Append string
	// ExtraArgs are appended to the command line as they are.
	ExtraArgs []string
	// Netns is a network namespace (ip netns) to run QEMU in: its tap
	// devices and the ports of its user-networking forwards live there.
	Netns string
}

// Names of the files Start makes in a machine's temporary folder.
const (
	varsFile    = "efivars.fd"
	monitorFile = "monitor.sock"
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,63}$`)

func (m *Machine) name() string {
	if m.Name == "" {
		return "vm"
	}
	return m.Name
}

// Args returns QEMU's arguments (without the program name) for the
// machine, whose temporary folder is tmp: the copy of the firmware's
// variable store and the monitor socket live there.
func (m *Machine) Args(tmp string) ([]string, error) {
	name := m.name()
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("machine name %q: use 1 to 63 letters, digits, '.', '_' or '-'", m.Name)
	}
	mem, cpus := m.MemoryMiB, m.CPUs
	if mem == 0 {
		mem = 1024
	}
	if cpus == 0 {
		cpus = 1
	}
	if mem < 0 || cpus < 0 {
		return nil, fmt.Errorf("machine %s: memory %d MiB and %d cpus: want positive numbers", name, m.MemoryMiB, m.CPUs)
	}
	machine := "q35"
	if m.Firmware.SecureBoot {
		machine = "q35,smm=on"
	}
	args := []string{"-name", escape(name), "-machine", machine}
	switch m.Accel {
	case AccelAuto:
		args = append(args, "-accel", "kvm", "-accel", tcgAccel)
	case AccelKVM:
		args = append(args, "-accel", m.Accel)
	case AccelTCG:
		args = append(args, "-accel", tcgAccel)
	default:
		return nil, fmt.Errorf("machine %s: accelerator %q: accepted: kvm, tcg, or empty for automatic", name, m.Accel)
	}
	cpu := "max"
	if m.Accel == AccelTCG {
		cpu = tcgCPU
	}
	args = append(args,
		"-cpu", cpu,
		"-m", strconv.Itoa(mem),
		"-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none",
		// The host's entropy: a guest never waits for its random pool.
		"-object", "rng-random,id=rng0,filename=/dev/urandom", "-device", "virtio-rng-pci,rng=rng0",
		"-chardev", "stdio,id=console,mux=on,signal=off",
		"-serial", "chardev:console",
		"-monitor", "unix:"+escape(filepath.Join(tmp, monitorFile))+",server=on,wait=off",
	)
	if m.Firmware.SecureBoot {
		args = append(args, "-global", "driver=cfi.pflash01,property=secure,value=on")
	}
	if m.Firmware.Code != "" {
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+escape(m.Firmware.Code))
		if m.Firmware.Vars != "" {
			args = append(args, "-drive", "if=pflash,format=raw,unit=1,file="+escape(filepath.Join(tmp, varsFile)))
		}
	}
	cdroms := 0
	for i, d := range m.Disks {
		if d.Path == "" {
			return nil, fmt.Errorf("machine %s: disk %d has no path", name, i)
		}
		format := d.Format
		if format == "" {
			format = FormatRaw
		}
		if format != FormatRaw && format != FormatQCOW2 {
			return nil, fmt.Errorf("machine %s: disk %s: format %q: accepted: raw, qcow2", name, d.Path, d.Format)
		}
		id := "disk" + strconv.Itoa(i)
		drive := "if=none,id=" + id + ",format=" + format + ",file=" + escape(d.Path)
		var device string
		switch d.Media {
		case "", MediaDisk:
			if d.ReadOnly {
				drive += ",readonly=on"
			}
			device = "virtio-blk-pci,drive=" + id
		case MediaCDROM:
			// q35's AHCI controller has six ports, ide.0 to ide.5.
			if cdroms == 6 {
				return nil, fmt.Errorf("machine %s: disk %s: at most 6 cdroms", name, d.Path)
			}
			drive += ",media=cdrom,readonly=on"
			device = "ide-cd,drive=" + id + ",bus=ide." + strconv.Itoa(cdroms)
			cdroms++
		default:
			return nil, fmt.Errorf("machine %s: disk %s: media %q: accepted: disk, cdrom", name, d.Path, d.Media)
		}
		if d.Snapshot {
			drive += ",snapshot=on"
		}
		args = append(args, "-drive", drive, "-device", device+",bootindex="+strconv.Itoa(i+1))
	}
	for i, n := range m.Nets {
		netArgs, err := n.args(name, i)
		if err != nil {
			return nil, fmt.Errorf("machine %s: net %d: %w", name, i, err)
		}
		args = append(args, netArgs...)
	}
	if m.Kernel != "" {
		args = append(args, "-kernel", m.Kernel)
		if m.Initrd != "" {
			args = append(args, "-initrd", m.Initrd)
		}
		if m.Append != "" {
			args = append(args, "-append", m.Append)
		}
	} else if m.Initrd != "" || m.Append != "" {
		return nil, fmt.Errorf("machine %s: an initrd or kernel command line needs a kernel", name)
	}
	return append(args, m.ExtraArgs...), nil
}

func (n Net) args(machine string, index int) ([]string, error) {
	id := "net" + strconv.Itoa(index)
	var netdev string
	if n.Tap != "" {
		if n.Mcast != "" || n.Restrict || len(n.Forwards) > 0 || n.TFTPDir != "" || n.BootFile != "" || n.LocalAddr != "" || len(n.GuestForwards) > 0 {
			return nil, errors.New("a tap net takes no user-networking or multicast settings")
		}
		if !tapRE.MatchString(n.Tap) {
			return nil, fmt.Errorf("tap %q: want an interface name of 1 to 15 letters, digits, '-' or '_'", n.Tap)
		}
		netdev = "tap,id=" + id + ",ifname=" + n.Tap + ",script=no,downscript=no"
	} else if n.Mcast != "" {
		if n.Restrict || len(n.Forwards) > 0 || n.TFTPDir != "" || n.BootFile != "" || len(n.GuestForwards) > 0 {
			return nil, errors.New("a socket multicast net takes no user-networking settings (restrict, forwards, tftp, boot file)")
		}
		group, err := netip.ParseAddrPort(n.Mcast)
		if err != nil || !group.Addr().Is4() || !group.Addr().IsMulticast() || group.Port() == 0 {
			return nil, fmt.Errorf("mcast %q: want an IPv4 multicast group and port, such as 230.0.0.1:5000", n.Mcast)
		}
		local := n.LocalAddr
		if local == "" {
			local = "127.0.0.1"
		}
		if a, err := netip.ParseAddr(local); err != nil || !a.Is4() {
			return nil, fmt.Errorf("local address %q: want an IPv4 address, such as 127.0.0.1", n.LocalAddr)
		}
		netdev = "socket,id=" + id + ",mcast=" + group.String() + ",localaddr=" + local
	} else {
		if n.LocalAddr != "" {
			return nil, errors.New("a local address needs a multicast group (mcast)")
		}
		netdev = "user,id=" + id
		if n.Restrict {
			netdev += ",restrict=on"
		}
		for _, f := range n.Forwards {
			if f.protocol() != "tcp" && f.protocol() != "udp" {
				return nil, fmt.Errorf("forward %s: protocol %q: accepted: tcp, udp", f, f.Protocol)
			}
			if a, err := netip.ParseAddr(f.hostAddr()); err != nil || !a.Is4() {
				return nil, fmt.Errorf("forward %s: host address %q: want an IPv4 address", f, f.HostAddr)
			}
			if f.HostPort < 0 || f.HostPort > 65535 || f.GuestPort < 1 || f.GuestPort > 65535 {
				return nil, fmt.Errorf("forward %s: ports: want a host port 0 to 65535 (0: any) and a guest port 1 to 65535", f)
			}
			netdev += fmt.Sprintf(",hostfwd=%s:%s:%d-:%d", f.protocol(), f.hostAddr(), f.HostPort, f.GuestPort)
		}
		if n.TFTPDir != "" {
			netdev += ",tftp=" + escape(n.TFTPDir)
		}
		if n.BootFile != "" {
			netdev += ",bootfile=" + escape(n.BootFile)
		}
		for _, g := range n.GuestForwards {
			a, err := netip.ParseAddrPort(g.Addr)
			if err != nil || !a.Addr().Is4() || a.Port() == 0 || g.Cmd == "" {
				return nil, fmt.Errorf("guest forward %q to %q: want an IPv4 address and port, such as 10.0.2.100:80, and a command", g.Addr, g.Cmd)
			}
			netdev += ",guestfwd=tcp:" + a.String() + "-cmd:" + escape(g.Cmd)
		}
	}
	mac := n.MAC
	if mac == "" {
		mac = DefaultMAC(machine, index)
	}
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 || hw[0]&1 != 0 {
		return nil, fmt.Errorf("mac %q: want a unicast Ethernet address, such as 52:54:00:12:34:56", n.MAC)
	}
	return []string{"-netdev", netdev, "-device", "virtio-net-pci,netdev=" + id + ",mac=" + hw.String()}, nil
}

// DefaultMAC is the address a NIC gets when its Net has no MAC: QEMU's
// 52:54:00 prefix and three bytes of a hash of the machine's name and the
// NIC's index.
func DefaultMAC(machine string, index int) string {
	h := sha256.Sum256([]byte(machine + "/" + strconv.Itoa(index)))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", h[0], h[1], h[2])
}

var tapRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,15}$`)

// escape doubles the commas of a value inside a QEMU option list.
func escape(s string) string {
	return strings.ReplaceAll(s, ",", ",,")
}
