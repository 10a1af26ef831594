package serve

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/pin/tftp/v3"

	"github.com/imgforge/imgforge/pkg/names"
)

// AutoexecScript is the TFTP name of the script that sends iPXE to the
// HTTP entry script; iPXE builds that look for autoexec.ipxe beside
// themselves run it.
const AutoexecScript = "autoexec.ipxe"

// newTFTP is the read-only TFTP server: the loaders by name, the
// autoexec script, and ROLE/pxe/FILE under the root. Writes are refused.
func (s *Server) newTFTP() *tftp.Server {
	t := tftp.NewServer(s.tftpRead, nil)
	t.SetHook(tftpLog{s})
	return t
}

func (s *Server) tftpRead(name string, rf io.ReaderFrom) error {
	name = strings.TrimPrefix(path.Clean("/"+strings.ReplaceAll(name, "\\", "/")), "/")
	var local net.IP
	if pi, ok := rf.(tftp.RequestPacketInfo); ok {
		local = pi.LocalIP()
	}
	if name == AutoexecScript {
		script := "#!ipxe\n# imgforge serve\ndhcp || goto failed\nchain " + s.httpURL(local) + EntryPath + "\n:failed\necho imgforge: no DHCP answer\nexit 1\n"
		rf.(tftp.OutgoingTransfer).SetSize(int64(len(script)))
		_, err := rf.ReadFrom(strings.NewReader(script))
		return err
	}
	if !strings.Contains(name, "/") {
		l, ok := s.loaders[name]
		if !ok {
			return fmt.Errorf("%s: not served: not a loader in %s", clean(name), s.cfg.Loaders)
		}
		rf.(tftp.OutgoingTransfer).SetSize(l.size)
		_, err := rf.ReadFrom(io.NewSectionReader(l.f, 0, l.size))
		return err
	}
	parts := strings.Split(name, "/")
	if len(parts) != 3 || !names.Role(parts[0]) || parts[1] != "pxe" || strings.HasPrefix(parts[2], ".") {
		return fmt.Errorf("%s: not served; TFTP serves the loaders, %s and ROLE/pxe/FILE", clean(name), AutoexecScript)
	}
	f, err := s.root.Open(name)
	if err != nil {
		return fmt.Errorf("%s: not served: %w", clean(name), err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a file", clean(name))
	}
	rf.(tftp.OutgoingTransfer).SetSize(fi.Size())
	_, err = rf.ReadFrom(f)
	return err
}

// Loaders are the TFTP names of the loaders a loaders folder must hold
// at least one of (Debian's ipxe package has all three).
var Loaders = []string{EFILoader, "snponly.efi", BIOSLoader}

// loader is a file of the loaders folder, opened when the server starts.
type loader struct {
	f    *os.File
	size int64
}

// openLoaders opens every regular file at the top of the loaders folder,
// following symbolic links wherever they lead: the folder is the
// operator's choice, and Debian's ipxe package links ipxe.efi to
// /boot/ipxe.efi. (The PXE sets, which builds write, are served through
// an os.Root that refuses links out.) It fails when the folder does not
// exist or holds none of Loaders.
func openLoaders(dir string) (map[string]loader, error) {
	accepted := fmt.Sprintf("accepted: a folder holding %s or %s, such as %s from Debian's ipxe package (apt-get install ipxe)", strings.Join(Loaders[:len(Loaders)-1], ", "), Loaders[len(Loaders)-1], DefaultLoaders)
	if dir == "" {
		return nil, fmt.Errorf("no loaders folder; %s", accepted)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the loaders folder: %w; %s", err, accepted)
	}
	ls := map[string]loader{}
	for _, e := range ents {
		p, err := filepath.EvalSymlinks(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // a dangling link is not a loader
		}
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			closeLoaders(ls)
			return nil, fmt.Errorf("opening loader %s: %w", e.Name(), err)
		}
		ls[e.Name()] = loader{f: f, size: fi.Size()}
	}
	for _, n := range Loaders {
		if _, ok := ls[n]; ok {
			return ls, nil
		}
	}
	closeLoaders(ls)
	return nil, fmt.Errorf("the loaders folder %s holds no loader; %s", dir, accepted)
}

// CheckLoaders says whether dir would do as Config.Loaders: nil when it
// exists and holds at least one of Loaders (after following links), else
// an error that says what is accepted.
func CheckLoaders(dir string) error {
	ls, err := openLoaders(dir)
	closeLoaders(ls)
	return err
}

func closeLoaders(ls map[string]loader) {
	for _, l := range ls {
		l.f.Close()
	}
}

// httpURL is the URL machines reach the HTTP server by: the configured
// one, else the address a request came to and the HTTP port.
func (s *Server) httpURL(local net.IP) string {
	if s.cfg.URL != "" {
		return strings.TrimSuffix(s.cfg.URL, "/")
	}
	port := 80
	if a, ok := s.httpLn.Addr().(*net.TCPAddr); ok {
		port = a.Port
		if local == nil && !a.IP.IsUnspecified() {
			local = a.IP
		}
	}
	host := "127.0.0.1"
	if local != nil && !local.IsUnspecified() {
		host = local.String()
	}
	if port == 80 {
		return "http://" + host
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port))
}

type tftpLog struct{ s *Server }

func (l tftpLog) OnSuccess(st tftp.TransferStats) {
	l.s.logf("tftp %s %s sent in %.3fs", st.RemoteAddr, clean(st.Filename), st.Duration.Seconds())
}

func (l tftpLog) OnFailure(st tftp.TransferStats, err error) {
	if st.Filename == "" && errors.Is(err, net.ErrClosed) {
		return
	}
	l.s.logf("tftp %s %s failed: %v", st.RemoteAddr, clean(st.Filename), err)
}
