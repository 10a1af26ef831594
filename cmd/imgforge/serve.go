package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/serve"
)

func newServeCmd() *cobra.Command {
	var (
		cfg      serve.Config
		machines string
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Netboot machines from the PXE sets of built roles (HTTP, TFTP, optional proxyDHCP)",
		Long: `Serve the PXE sets under --root (ROLE/pxe/, made by imgforge build ROLE --format pxe) to machines that
netboot with iPXE: the HTTP entry script /boot.ipxe chains each machine's script by its MAC address,
which boots the role the machines file gives it (or the file's default, or a menu) with its NoCloud
seed served over HTTP (ds=nocloud-net;s=http://.../seed/MAC/). TFTP serves the iPXE loaders (ipxe.efi,
snponly.efi, undionly.kpxe from --loaders, Debian's ipxe package) and autoexec.ipxe; serve fails at start
when --loaders does not hold one, and warns when --root holds no PXE set. The loaders folder's symbolic
links are followed once, at start (Debian links ipxe.efi to /boot/ipxe.efi); links in the PXE sets are
never followed out of --root. With --proxy-dhcp IFACE, PXE firmware on
that interface's network is told where to boot from while the network's DHCP server keeps giving the
addresses. Every request is logged on standard error; SIGTERM or Ctrl-C stops it cleanly.

A machine's user-data and vendor-data from a seed folder carry the cluster's secrets: each is handed
out once. A second fetch is refused (410 Gone) and logged as a WARNING naming the MAC address and
the client; SIGHUP (kill -HUP PID, the PID is in that line) re-arms every seed, for a machine that
boots again. Connections close after --idle-timeout without a request and --io-timeout without a
byte moving; at most --max-conns are open at once.`,
		Example: `  imgforge build lb web --format pxe
  imgforge serve --root out --listen :8080
  imgforge serve --root out --listen :80 --tftp :69 --proxy-dhcp eth1 --machines machines.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if machines == "" {
				if p := filepath.Join(cfg.Root, serve.MachinesFile); fileExists(p) {
					machines = p
				}
			}
			if machines != "" {
				m, err := serve.LoadMachines(machines, cfg.Root)
				if err != nil {
					return err
				}
				cfg.Machines = m
			}
			if cfg.TFTPAddr != "" || cmd.Flags().Changed("loaders") {
				if err := serve.CheckLoaders(cfg.Loaders); err != nil {
					return fmt.Errorf("--loaders: %w", err)
				}
			}
			cfg.Log = cmd.ErrOrStderr()
			cfg.RearmHint = fmt.Sprintf("kill -HUP %d (re-arms every machine's seeds)", os.Getpid())
			s, err := serve.Listen(cfg)
			if err != nil {
				return err
			}
			// SIGHUP re-arms the seeds that were handed out.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			go func() {
				for {
					select {
					case <-hup:
						s.Rearm()
					case <-ctx.Done():
						return
					}
				}
			}()
			return s.Serve(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Root, "root", "out", "folder of the PXE sets: a build's --output-dir")
	f.StringVar(&cfg.HTTPAddr, "listen", ":8080", "HTTP listen address")
	f.StringVar(&cfg.URL, "url", "", "base URL machines reach the HTTP server by (default: from each request)")
	f.StringVar(&cfg.TFTPAddr, "tftp", "", "TFTP listen address, such as :69 (default: no TFTP)")
	f.StringVar(&cfg.Loaders, "loaders", serve.DefaultLoaders, "folder of the iPXE/EFI loaders TFTP serves by name; with --tftp it must hold ipxe.efi, snponly.efi or undionly.kpxe (its links are followed)")
	f.StringVar(&cfg.ProxyDHCP, "proxy-dhcp", "", "answer PXE clients as a proxyDHCP server on this interface (default: off)")
	f.DurationVar(&cfg.IdleTimeout, "idle-timeout", 30*time.Second, "close a keep-alive connection without a next request after this long")
	f.DurationVar(&cfg.IOTimeout, "io-timeout", time.Minute, "close a connection on which no byte moves for this long (not a limit on a download's length)")
	f.IntVar(&cfg.MaxConns, "max-conns", 256, "most HTTP connections open at once; more clients wait")
	f.StringVar(&machines, "machines", "", "machines file: MAC address -> role and seed (default: ROOT/"+serve.MachinesFile+" when present)")
	return cmd
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
