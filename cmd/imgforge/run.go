package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/imgforge/imgforge/pkg/imgforge"
	"github.com/imgforge/imgforge/pkg/qemu"
)

// runFlags are the flags of imgforge run.
type runFlags struct {
	seed          string
	format        string
	outDir        string
	memory        int
	cpus          int
	forwards      []string
	accel         string
	allowOutbound bool
	firmware      string
}

// powerdownTimeout is how long run waits for the guest to power off after
// Ctrl-C or SIGTERM before it kills QEMU.
const powerdownTimeout = 2 * time.Minute

func newRunCmd(c *common) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run ROLE|IMAGE",
		Short: "Boot a built image in QEMU, with its serial console here",
		Long: `Boot a role's built image (OUTPUT_DIR/ROLE/ROLE.FORMAT) or an image file in QEMU with UEFI firmware.
The image is never modified: the guest's writes go to a temporary overlay. Its serial console is copied
to standard output (and, on a terminal, what you type goes to it). The guest gets user-mode networking
that reaches nothing outside (--allow-outbound lifts that) and forwards from 127.0.0.1: by default
port 10000+P for each port P of the role (from manifest.json) and for SSH (22).
Ctrl-C or SIGTERM powers the guest down (a second one kills it); Ctrl-a x quits QEMU at once.`,
		Example: `  imgforge run lb
  imgforge run web --format qcow2 --forward 8080:80 --forward 8443:443
  imgforge run out/app/app.iso --seed my-seed/ --memory 2048`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImage(cmd, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.seed, "seed", "", "NoCloud seed: a folder with meta-data, user-data and optionally vendor-data and network-config, or an ISO (default: a minimal one)")
	fl.StringVar(&f.format, "format", "", "image to boot for a ROLE: raw, qcow2 or iso (default raw; for an IMAGE, its extension)")
	fl.StringVar(&f.outDir, "output-dir", "out", "folder the images were built into, one sub-folder per role")
	fl.IntVar(&f.memory, "memory", 1024, "guest memory in MiB")
	fl.IntVar(&f.cpus, "cpus", 2, "guest CPUs (under TCG, give several VMs on one machine one each: more vCPUs than cores slow every guest down)")
	fl.StringArrayVar(&f.forwards, "forward", nil, "forward [ADDR:]HOST:GUEST[/tcp|/udp] from the host into the guest, e.g. 8080:80 (repeatable; replaces the default forwards)")
	fl.StringVar(&f.accel, "accel", "auto", "accelerator: auto, kvm or tcg")
	fl.BoolVar(&f.allowOutbound, "allow-outbound", false, "let the guest reach the network outside this machine")
	fl.StringVar(&f.firmware, "firmware", "", "UEFI firmware as CODE.fd[,VARS.fd] (default: the ovmf package's)")
	return cmd
}

func runImage(cmd *cobra.Command, arg string, f runFlags) error {
	ctx := cmd.Context()
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()

	forwards, err := parseForwards(f.forwards)
	if err != nil {
		return err
	}
	accel := f.accel
	switch accel {
	case "auto":
		accel = qemu.AccelAuto
	case qemu.AccelKVM, qemu.AccelTCG:
	default:
		return usage(fmt.Errorf("--accel %q: accepted: auto, kvm, tcg", f.accel))
	}
	if f.memory < 64 || f.cpus < 1 {
		return usage(fmt.Errorf("--memory %d --cpus %d: want at least 64 MiB and 1 cpu", f.memory, f.cpus))
	}
	img, err := findImage(arg, f.format, f.outDir)
	if err != nil {
		return err
	}
	if f.forwards == nil {
		forwards = imgforge.DefaultForwards(img)
	}
	if _, err := qemu.FindQEMU(); err != nil {
		return err
	}
	fw, err := firmware(f.firmware)
	if err != nil {
		return err
	}

	tmp, err := os.MkdirTemp("", "imgforge-run-")
	if err != nil {
		return fmt.Errorf("making a temporary folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	seedISO, err := imgforge.SeedISO(f.seed, img, tmp)
	if err != nil {
		if f.seed != "" {
			err = fmt.Errorf("--seed %s: %w", f.seed, err)
		}
		return err
	}

	m := qemu.Machine{
		Name: img.Name, MemoryMiB: f.memory, CPUs: f.cpus, Accel: accel, Firmware: fw,
		Disks: []qemu.Disk{
			{Path: img.Path, Format: diskFormat(img), Media: media(img), Snapshot: true},
			{Path: seedISO, Format: qemu.FormatRaw, ReadOnly: true},
		},
		Nets: []qemu.Net{{Restrict: !f.allowOutbound, Forwards: forwards}},
	}
	in, interactive := cmd.InOrStdin().(*os.File)
	interactive = interactive && term.IsTerminal(int(in.Fd()))
	fmt.Fprintf(stderr, "imgforge: booting %s (changes are discarded); %s; outbound network %s; %s stops it\n",
		img.Path, describeForwards(forwards), map[bool]string{true: "allowed", false: "blocked"}[f.allowOutbound],
		map[bool]string{true: "Ctrl-a x or Ctrl-C", false: "Ctrl-C"}[interactive])

	// The machine outlives the command's context by the time it takes to
	// power down; Kill makes sure it never outlives the command.
	vm, err := qemu.Start(context.WithoutCancel(ctx), &m)
	if err != nil {
		return err
	}
	defer vm.Kill()
	vm.ConsoleTo(stdout)

	stopKeys := make(chan struct{}, 1)
	restore := func() {}
	if interactive {
		if state, err := term.MakeRaw(int(in.Fd())); err == nil {
			restore = func() { _ = term.Restore(int(in.Fd()), state) }
			defer restore()
		}
		go func() { _, _ = io.Copy(consoleInput{vm: vm, ctrlC: stopKeys}, in) }()
	}

	select {
	case <-vm.Done():
		restore()
		return vm.Wait()
	case <-ctx.Done():
	case <-stopKeys:
	}
	restore()
	fmt.Fprintf(stderr, "\nimgforge: powering %s down (Ctrl-C again kills it)\n", vm.Name)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), powerdownTimeout)
	defer cancel()
	pctx, stop := signal.NotifyContext(pctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return vm.Powerdown(pctx)
}

// consoleInput passes what is typed to the guest's console, except Ctrl-C,
// which asks run to power the guest down (the terminal is in raw mode, so
// Ctrl-C is a byte here rather than a signal).
type consoleInput struct {
	vm    *qemu.VM
	ctrlC chan struct{}
}

func (c consoleInput) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, 0x03)
		if i < 0 {
			i = len(p)
		}
		if _, err := c.vm.WriteConsole(p[:i]); err != nil {
			return n - len(p), err
		}
		if i < len(p) {
			select {
			case c.ctrlC <- struct{}{}:
			default:
			}
			i++
		}
		p = p[i:]
	}
	return n, nil
}

func diskFormat(img imgforge.Image) string {
	if img.Format == "qcow2" {
		return qemu.FormatQCOW2
	}
	return qemu.FormatRaw
}

func media(img imgforge.Image) string {
	if img.Format == "iso" {
		return qemu.MediaCDROM
	}
	return qemu.MediaDisk
}

// findImage checks the --format flag and finds the image.
func findImage(arg, format, outDir string) (imgforge.Image, error) {
	if format != "" && !slices.Contains(imgforge.ImageFormats, format) {
		return imgforge.Image{}, usage(fmt.Errorf("--format %q: accepted: %s", format, strings.Join(imgforge.ImageFormats, ", ")))
	}
	return imgforge.FindImage(arg, format, outDir)
}

// parseForwards reads --forward values: [ADDR:]HOST:GUEST[/tcp|/udp].
func parseForwards(specs []string) ([]qemu.Forward, error) {
	var fs []qemu.Forward
	for _, s := range specs {
		bad := usage(fmt.Errorf("--forward %q: expected [ADDR:]HOST:GUEST[/tcp|/udp] with ports 1 to 65535, such as 8080:80", s))
		f := qemu.Forward{Protocol: "tcp", HostAddr: "127.0.0.1"}
		rest, proto, ok := strings.Cut(s, "/")
		if ok {
			if proto != "tcp" && proto != "udp" {
				return nil, bad
			}
			f.Protocol = proto
		}
		parts := strings.Split(rest, ":")
		if len(parts) == 3 {
			a, err := netip.ParseAddr(parts[0])
			if err != nil || !a.Is4() {
				return nil, bad
			}
			f.HostAddr, parts = parts[0], parts[1:]
		}
		if len(parts) != 2 {
			return nil, bad
		}
		var err1, err2 error
		f.HostPort, err1 = strconv.Atoi(parts[0])
		f.GuestPort, err2 = strconv.Atoi(parts[1])
		if err1 != nil || err2 != nil || f.HostPort < 1 || f.HostPort > 65535 || f.GuestPort < 1 || f.GuestPort > 65535 {
			return nil, bad
		}
		fs = append(fs, f)
	}
	return fs, nil
}

func describeForwards(fs []qemu.Forward) string {
	if len(fs) == 0 {
		return "no port forwards"
	}
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.String()
	}
	return "forwards " + strings.Join(s, ", ")
}

// firmware returns --firmware CODE[,VARS], or the installed OVMF.
func firmware(flag string) (qemu.Firmware, error) {
	if flag == "" {
		return qemu.FindFirmware()
	}
	code, vars, _ := strings.Cut(flag, ",")
	for _, p := range []string{code, vars} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return qemu.Firmware{}, fmt.Errorf("--firmware: %w (install the Debian package ovmf, or give CODE.fd[,VARS.fd])", err)
		}
	}
	return qemu.Firmware{Code: code, Vars: vars}, nil
}
