// Package serve netboots machines from imgforge's PXE sets: an HTTP
// server for the sets, each machine's iPXE script and its NoCloud seed, a
// read-only TFTP server for the iPXE and EFI loaders, and an optional
// proxyDHCP responder that points PXE firmware at them without touching
// the network's own DHCP server.
//
// The root folder is a build's output folder: ROOT/ROLE/pxe/ holds the
// PXE set of ROLE (vmlinuz, initrd.img, root.img, boot.ipxe; see
// imgforge build --format pxe); /sets/ROLE/ also serves the output
// folder's manifest.json and overlay.cpio when the set has none, which
// makes the set a source of imgforge-agent update. The machines file (see Machines) maps MAC
// addresses to roles and seeds. A machine's iPXE fetches /boot.ipxe,
// which chains /machines/MAC.ipxe, which sets the set's URL and the
// machine's seed URL (ds=nocloud-net;s=.../seed/MAC/) and chains the set's
// boot.ipxe; the initramfs then fetches root.img over HTTP and verifies it
// against the root hash on the kernel command line.
//
// Nothing outside the root is served: files are opened through an
// os.Root, so neither ".." nor a symbolic link leads out. The loaders
// folder is the exception by design: it is the operator's, and its
// links are followed when the server starts. The package
// does not build PXE sets (package build does) nor run a full DHCP
// server.
package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Config says what to serve and where.
type Config struct {
	// Root is the folder of PXE sets (ROOT/ROLE/pxe/...).
	Root string
	// Machines maps MAC addresses to roles and seeds; nil: every machine
	// gets a menu of the roles.
	Machines *Machines
	// HTTPAddr is the HTTP listen address, such as ":8080".
	HTTPAddr string
	// URL is the base URL machines reach the HTTP server by, such as
	// http://192.0.2.1:8080; empty: the Host of each request (for HTTP)
	// and the address a TFTP or DHCP request came to.
	URL string
	// TFTPAddr is the TFTP listen address (":69"); empty: no TFTP.
	TFTPAddr string
	// Loaders is the folder of iPXE and EFI loaders TFTP serves by
	// name (ipxe.efi, snponly.efi, undionly.kpxe); see DefaultLoaders.
	// With TFTP on it must hold at least one of them. It is trusted
	// configuration: its symbolic links are followed (Debian's ipxe.efi
	// links to /boot/ipxe.efi) and resolved once, when Listen opens
	// every file at its top.
	Loaders string
	// ProxyDHCP is the network interface to answer PXE clients on as a
	// proxyDHCP server (ports 67 and 4011); empty: off.
	ProxyDHCP string
	// ReadHeaderTimeout bounds the reading of a request's headers;
	// default 10 s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no next
	// request for this long; default 30 s.
	IdleTimeout time.Duration
	// IOTimeout closes a connection on which no byte moves, either way,
	// for this long: a stalled client, not a slow one (the deadline is
	// refreshed whenever bytes move, so a download of any size over a
	// slow link goes on); default 60 s.
	IOTimeout time.Duration
	// MaxConns caps the HTTP connections open at once; further clients
	// wait in the listen backlog until one closes. Default 256.
	MaxConns int
	// SeedGrace is how long after a secret-bearing seed file (user-data,
	// vendor-data) was handed out the same client address may fetch it
	// again (a retry after a broken transfer); after that, or from any
	// other address, a fetch is refused until the seeds are re-armed
	// (Server.Rearm). Default 1 minute; negative: no second fetch.
	SeedGrace time.Duration
	// RearmHint tells an operator how to re-arm the seeds, in the log
	// line of a refused seed; default: "call Server.Rearm".
	RearmHint string
	// ShutdownGrace is how long running transfers may go on after the
	// context ends; default 10 s.
	ShutdownGrace time.Duration
	// Log gets one line per request and event; nil: discarded.
	Log io.Writer
}

// DefaultLoaders is where Debian's ipxe package puts its loaders.
const DefaultLoaders = "/usr/lib/ipxe"

// Server is a listening server; Serve runs it.
type Server struct {
	cfg  Config
	root *os.Root

	httpLn   net.Listener
	httpSrv  *http.Server
	tftpConn net.PacketConn
	dhcp     *proxyDHCP

	loaders map[string]loader

	seeds seedLedger
	logMu sync.Mutex
}

// Listen opens the root and every listening socket the configuration
// asks for, so that errors (a port in use, a missing interface) come
// before anything is served.
func Listen(cfg Config) (*Server, error) {
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&cfg.ReadHeaderTimeout, 10 * time.Second}, {&cfg.IdleTimeout, 30 * time.Second}, {&cfg.IOTimeout, time.Minute}, {&cfg.SeedGrace, time.Minute}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 256
	}
	if cfg.RearmHint == "" {
		cfg.RearmHint = "call Server.Rearm"
	}
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("opening the PXE root: %w", err)
	}
	s := &Server{cfg: cfg, root: root}
	if err := s.listen(); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *Server) listen() error {
	var err error
	ln, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	s.httpLn = newLimitListener(ln, s.cfg.MaxConns, s.cfg.IOTimeout, func(max int) {
		s.logf("http: %d connections open, the most allowed: the next client waits until one closes", max)
	})
	s.httpSrv = &http.Server{
		Handler:           logged(s, handler{s}),
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
	}
	if s.cfg.TFTPAddr != "" {
		if s.loaders, err = openLoaders(s.cfg.Loaders); err != nil {
			return fmt.Errorf("tftp: %w", err)
		}
		if s.tftpConn, err = net.ListenPacket("udp4", s.cfg.TFTPAddr); err != nil {
			return fmt.Errorf("tftp: %w", err)
		}
	}
	if s.cfg.ProxyDHCP != "" {
		if s.dhcp, err = listenProxyDHCP(s, s.cfg.ProxyDHCP); err != nil {
			return fmt.Errorf("proxyDHCP: %w", err)
		}
	}
	return nil
}

// HTTPAddr is the address the HTTP server listens on.
func (s *Server) HTTPAddr() net.Addr { return s.httpLn.Addr() }

// TFTPAddr is the address the TFTP server listens on, or nil.
func (s *Server) TFTPAddr() net.Addr {
	if s.tftpConn == nil {
		return nil
	}
	return s.tftpConn.LocalAddr()
}

// Serve serves until ctx ends, then stops taking requests, lets running
// transfers finish for the configured grace time and returns nil; or it
// returns the first error of a server.
func (s *Server) Serve(ctx context.Context) error {
	roles, _ := Roles(s.cfg.Root)
	s.logf("serving the PXE sets of %s (%d: %v) over http on %s", s.cfg.Root, len(roles), roles, s.httpLn.Addr())
	if len(roles) == 0 {
		s.logf("WARNING: %s holds no PXE set (ROLE/pxe/boot.ipxe), so no machine can boot; make one with imgforge build ROLE --format pxe --output-dir %s", s.cfg.Root, s.cfg.Root)
	}
	s.logf("http: at most %d connections; a connection closes after %s without a request, %s without a byte moving", s.cfg.MaxConns, s.cfg.IdleTimeout, s.cfg.IOTimeout)
	if n := s.cfg.Machines.seeded(); n > 0 {
		s.logf("seeds: the user-data and vendor-data of the %d machine(s) with a seed folder are handed out once; to re-arm them: %s", n, s.cfg.RearmHint)
	}
	errc := make(chan error, 3)
	go func() {
		if err := s.httpSrv.Serve(s.httpLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	var tftp interface{ Shutdown() }
	if s.tftpConn != nil {
		t := s.newTFTP()
		tftp = t
		var have []string
		for _, n := range Loaders {
			if _, ok := s.loaders[n]; ok {
				have = append(have, n)
			}
		}
		s.logf("tftp on %s (loaders from %s: %s, and %d more files)", s.tftpConn.LocalAddr(), s.cfg.Loaders, strings.Join(have, ", "), len(s.loaders)-len(have))
		go func() {
			if err := t.Serve(s.tftpConn); err != nil {
				errc <- fmt.Errorf("tftp: %w", err)
			}
		}()
	}
	if s.dhcp != nil {
		s.logf("proxyDHCP: answering PXE clients on interface %s (%s), ports 67 and 4011", s.dhcp.iface, s.dhcp.ip)
		go func() {
			if err := s.dhcp.serve(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("proxyDHCP: %w", err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.logf("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	if e := s.httpSrv.Shutdown(sctx); e != nil {
		s.httpSrv.Close()
	}
	if s.dhcp != nil {
		s.dhcp.close()
	}
	if tftp != nil {
		tftp.Shutdown()
	}
	closeLoaders(s.loaders)
	s.root.Close()
	s.logf("stopped")
	return err
}

// close releases what Listen opened, when Serve will not run.
func (s *Server) close() {
	if s.httpLn != nil {
		s.httpLn.Close()
	}
	if s.tftpConn != nil {
		s.tftpConn.Close()
	}
	if s.dhcp != nil {
		s.dhcp.close()
	}
	closeLoaders(s.loaders)
	s.root.Close()
}

// logf writes one log line. Client-supplied strings go in through
// clean; as a last guard, any control character left in the line is
// escaped, so nothing a client sends can start a line of its own or
// drive the terminal that shows the log.
func (s *Server) logf(format string, args ...any) {
	line := escapeControls(fmt.Sprintf(format, args...))
	s.logMu.Lock()
	defer s.logMu.Unlock()
	fmt.Fprintf(s.cfg.Log, "%s %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), line)
}

// clean is how a client-supplied string (a TFTP file name, an HTTP path
// or header, a DHCP option) goes into a log line or an error: as it is
// when it is printable ASCII without spaces, quotes or backslashes,
// else quoted by strconv.Quote, which escapes newlines, escape sequences
// and every other control character.
func clean(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return strconv.Quote(s)
		}
	}
	return s
}

// escapeControls writes the control characters of s as Go escapes.
func escapeControls(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
