package serve

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

var testMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func discover(t *testing.T, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.NewDiscovery(testMAC, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func pxeClient(arch iana.Arch) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})),
	}
}

func TestProxyDHCPReply(t *testing.T) {
	p := ProxyDHCP{ServerIP: net.IPv4(192, 0, 2, 1).To4(), HTTPURL: "http://192.0.2.1:8080", BIOS: BIOSLoader, EFI: EFILoader}
	request := func(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		m := discover(t, mods...)
		m.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeRequest))
		return m
	}
	tests := []struct {
		name     string
		m        *dhcpv4.DHCPv4
		wantType dhcpv4.MessageType
		wantFile string // "" for no answer
	}{
		{"uefi x64", discover(t, pxeClient(iana.EFI_X86_64)...), dhcpv4.MessageTypeOffer, "ipxe.efi"},
		{"uefi bc", discover(t, pxeClient(iana.EFI_BC)...), dhcpv4.MessageTypeOffer, "ipxe.efi"},
		{"bios", discover(t, pxeClient(iana.INTEL_X86PC)...), dhcpv4.MessageTypeOffer, "undionly.kpxe"},
		{"no arch is bios", discover(t, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient"))), dhcpv4.MessageTypeOffer, "undionly.kpxe"},
		{"ipxe", discover(t, append(pxeClient(iana.EFI_X86_64), dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE"))))...), dhcpv4.MessageTypeOffer, "http://192.0.2.1:8080/boot.ipxe"},
		{"request", request(pxeClient(iana.EFI_X86_64)...), dhcpv4.MessageTypeAck, "ipxe.efi"},
		{"request to another server", request(append(pxeClient(iana.EFI_X86_64), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IPv4(192, 0, 2, 99))))...), 0, ""},
		{"not pxe", discover(t, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("android-dhcp-14"))), 0, ""},
		{"no class", discover(t), 0, ""},
		{"arm64 uefi", discover(t, pxeClient(iana.EFI_ARM64)...), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p.Reply(tt.m)
			if tt.wantFile == "" {
				if r != nil {
					t.Fatalf("answered: %s", r.Summary())
				}
				return
			}
			if r == nil {
				t.Fatal("no answer")
			}
			if r.MessageType() != tt.wantType || r.BootFileName != tt.wantFile || r.BootFileNameOption() != tt.wantFile {
				t.Errorf("type %s file %q (option %q), want %s %q", r.MessageType(), r.BootFileName, r.BootFileNameOption(), tt.wantType, tt.wantFile)
			}
			// A proxy offers no address: the network's DHCP server does.
			if !r.YourIPAddr.Equal(net.IPv4zero) || !r.ServerIPAddr.Equal(p.ServerIP) || !r.ServerIdentifier().Equal(p.ServerIP) {
				t.Errorf("yiaddr %s siaddr %s server id %s", r.YourIPAddr, r.ServerIPAddr, r.ServerIdentifier())
			}
			if r.ClassIdentifier() != "PXEClient" || r.TransactionID != tt.m.TransactionID || r.ClientHWAddr.String() != testMAC.String() {
				t.Errorf("class %q xid %s mac %s", r.ClassIdentifier(), r.TransactionID, r.ClientHWAddr)
			}
			if tt.m.GetOneOption(dhcpv4.OptionClientMachineIdentifier) != nil && len(r.GetOneOption(dhcpv4.OptionClientMachineIdentifier)) != 17 {
				t.Error("the client machine identifier (option 97) was not echoed")
			}
		})
	}
}

// TestProxyDHCPOverUDP runs the responder on a loopback socket and talks
// DHCP to it.
func TestProxyDHCPOverUDP(t *testing.T) {
	root, _ := testRoot(t, 16)
	s, log := start(t, Config{Root: root})
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d := &proxyDHCP{s: s, iface: "lo", ip: net.IPv4(127, 0, 0, 1).To4()}
	srv, err := server4.NewServer("", nil, d.handle, server4.WithConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	d.servers = []*server4.Server{srv}
	done := make(chan error, 1)
	go func() { done <- d.serve() }()
	defer func() {
		d.close()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ask := func(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
		if _, err := client.WriteTo(m.ToBytes(), conn.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		client.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 1500)
		n, _, err := client.ReadFrom(buf)
		if err != nil {
			return nil
		}
		r, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	r := ask(discover(t, pxeClient(iana.EFI_X86_64)...))
	if r == nil || r.MessageType() != dhcpv4.MessageTypeOffer || r.BootFileName != "ipxe.efi" || !r.ServerIPAddr.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("offer: %v", r)
	}
	// iPXE itself gets the HTTP entry script of the running server.
	r = ask(discover(t, append(pxeClient(iana.EFI_X86_64), dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE"))))...))
	if want := "http://" + s.HTTPAddr().String() + "/boot.ipxe"; r == nil || r.BootFileName != want {
		t.Fatalf("offer to iPXE: %v, want boot file %s", r, want)
	}
	// Not a PXE client: no answer.
	if r := ask(discover(t)); r != nil {
		t.Fatalf("answered a plain DHCP client: %s", r.Summary())
	}
	if want := "proxyDHCP: OFFER to 52:54:00:12:34:56 (PXEClient:Arch:00007:UNDI:003016): boot file ipxe.efi"; !strings.Contains(log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, log)
	}
}
