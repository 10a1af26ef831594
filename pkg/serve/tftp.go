package serve

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
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
	var f *os.File
	var err error
	if !strings.Contains(name, "/") && s.cfg.Loaders != "" {
		f, err = openIn(s.cfg.Loaders, name)
	} else {
		parts := strings.Split(name, "/")
		if len(parts) != 3 || !names.Role(parts[0]) || parts[1] != "pxe" || strings.HasPrefix(parts[2], ".") {
			return fmt.Errorf("%s: not served; TFTP serves the loaders, %s and ROLE/pxe/FILE", clean(name), AutoexecScript)
		}
		f, err = s.root.Open(name)
	}
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

// openIn opens name in dir without leaving it.
func openIn(dir, name string) (*os.File, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return r.Open(name)
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
