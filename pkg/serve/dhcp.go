package serve

import (
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

// ProxyDHCP answers the PXE part of DHCP and leaves addresses to the
// network's DHCP server (a "proxyDHCP" server, PXE specification 2.1): to
// a DHCPDISCOVER or DHCPREQUEST from a PXE client (vendor class
// "PXEClient...") it offers no address, only the TFTP server and the
// boot file for the client's architecture; to iPXE (user class "iPXE")
// it gives the HTTP entry script, so that the loader does not load
// itself again.
type ProxyDHCP struct {
	// ServerIP is this server's address on the network it answers.
	ServerIP net.IP
	// HTTPURL is the base URL of the HTTP server, such as http://192.0.2.1:8080.
	HTTPURL string
	// BIOS and EFI are the TFTP names of the loaders for legacy BIOS and
	// x86-64 UEFI clients.
	BIOS, EFI string
}

// Default loader names, from Debian's ipxe package.
const (
	BIOSLoader = "undionly.kpxe"
	EFILoader  = "ipxe.efi"
)

// Reply is the answer to m, or nil when m is not for a proxyDHCP server
// (not a PXE client, not a DISCOVER or REQUEST, an architecture without a
// loader, or a REQUEST addressed to another server).
func (p ProxyDHCP) Reply(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return nil
	}
	var typ dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		typ = dhcpv4.MessageTypeAck
		if sid := m.ServerIdentifier(); sid != nil && !sid.Equal(p.ServerIP) {
			return nil
		}
	default:
		return nil
	}
	class := m.ClassIdentifier()
	ipxe := false
	for _, uc := range m.UserClass() {
		ipxe = ipxe || uc == "iPXE"
	}
	if !ipxe && (len(class) < 9 || class[:9] != "PXEClient") {
		return nil
	}
	var file string
	switch {
	case ipxe:
		file = p.HTTPURL + EntryPath
	default:
		arch := iana.INTEL_X86PC
		if a := m.ClientArch(); len(a) > 0 {
			arch = a[0]
		}
		switch arch {
		case iana.INTEL_X86PC:
			file = p.BIOS
		case iana.EFI_X86_64, iana.EFI_BC:
			file = p.EFI
		default:
			return nil
		}
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(net.IPv4zero),
		dhcpv4.WithServerIP(p.ServerIP),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.ServerIP)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")),
		dhcpv4.WithOption(dhcpv4.OptTFTPServerName(p.ServerIP.String())),
		dhcpv4.WithOption(dhcpv4.OptBootFileName(file)),
		// PXE vendor options: discovery control 8, "boot the file in
		// this reply" (no boot server discovery, no menu).
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255})),
		dhcpv4.WithOptionCopied(m, dhcpv4.OptionClientMachineIdentifier),
	}
	r, err := dhcpv4.NewReplyFromRequest(m, mods...)
	if err != nil {
		return nil
	}
	r.BootFileName = file
	return r
}

// proxyDHCP runs a ProxyDHCP on one interface, on ports 67 and 4011.
type proxyDHCP struct {
	s       *Server
	iface   string
	ip      net.IP
	servers []*server4.Server
	once    sync.Once
}

func listenProxyDHCP(s *Server, iface string) (*proxyDHCP, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", iface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", iface, err)
	}
	var ip net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			ip = n.IP.To4()
			break
		}
	}
	if ip == nil {
		return nil, fmt.Errorf("interface %s has no IPv4 address to answer from", iface)
	}
	d := &proxyDHCP{s: s, iface: iface, ip: ip}
	for _, port := range []int{dhcpv4.ServerPort, 4011} {
		srv, err := server4.NewServer(iface, &net.UDPAddr{Port: port}, d.handle)
		if err != nil {
			d.close()
			return nil, fmt.Errorf("listening on %s port %d: %w", iface, port, err)
		}
		d.servers = append(d.servers, srv)
	}
	return d, nil
}

func (d *proxyDHCP) handle(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	p := ProxyDHCP{ServerIP: d.ip, HTTPURL: d.s.httpURL(d.ip), BIOS: BIOSLoader, EFI: EFILoader}
	r := p.Reply(m)
	if r == nil {
		return
	}
	if _, err := conn.WriteTo(r.ToBytes(), peer); err != nil {
		d.s.logf("proxyDHCP: answering %s: %v", m.ClientHWAddr, err)
		return
	}
	d.s.logf("proxyDHCP: %s to %s (%s): boot file %s", r.MessageType(), m.ClientHWAddr, clean(m.ClassIdentifier()), r.BootFileName)
}

func (d *proxyDHCP) serve() error {
	errc := make(chan error, len(d.servers))
	for _, srv := range d.servers {
		go func() { errc <- srv.Serve() }()
	}
	var first error
	for range d.servers {
		if err := <-errc; err != nil && first == nil && !errors.Is(err, net.ErrClosed) {
			first = err
		}
	}
	return first
}

func (d *proxyDHCP) close() {
	d.once.Do(func() {
		for _, srv := range d.servers {
			srv.Close()
		}
	})
}
