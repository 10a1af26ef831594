package discovery

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/imgforge/imgforge/pkg/agent/identity"
	"github.com/imgforge/imgforge/pkg/names"
)

// Meta is what a member advertises about itself in its memberlist node
// metadata, signed with its node key. Its name is its memberlist name and
// its cluster the CA's; both are in the signed text.
type Meta struct {
	// Role is the role its certificate names: the envelope does not
	// repeat it.
	Role    string
	Address netip.Addr
	Port    uint16 // the gossip port it listens on
	Mode    string // primary or replica, for a role that has them
	Healthy bool
}

// The signed metadata envelope, version 2. memberlist caps node metadata
// at memberlist.MetaMaxSize (512) bytes, so it is binary. The member's
// role is the one its certificate names (OU=ROLE), so roles are names,
// not codes: any role name (imagemeta.ValidRoleName) travels.
//
//	offset    size  field
//	0         1     version, 2
//	1         1     P, the length of the payload (7 or 19)
//	2         P     payload:
//	                  1  flags: bit 0 healthy; bits 1-2 mode: 0 none,
//	                     1 primary, 2 replica; other bits 0
//	                  2  gossip port, big-endian
//	                  4 or 16  address (IPv4 or IPv6)
//	2+P       2     C, the length of the certificate, big-endian
//	4+P       C     the member's certificate (DER), from the cluster CA
//	4+P+C     64    Ed25519 signature by the certificate's key over
//	                metaContext || cluster || 0 || name || 0 || bytes [0, 2+P)
//
// Nothing may follow. The largest (63-character cluster and node names, a
// 32-character role name, an IPv6 address) is under 512 bytes
// (TestMetaFits). Version 1 carried a role code (1 lb, 2 web, 3 app, 4 db)
// and is refused.
const (
	metaVersion = 2
	metaContext = "imgforge gossip metadata v2\x00"
	sigSize     = ed25519.SignatureSize
)

var modeCodes = map[string]byte{"": 0, "primary": 1, "replica": 2}

func codeName(m map[string]byte, c byte) (string, bool) {
	for k, v := range m {
		if v == c {
			return k, true
		}
	}
	return "", false
}

func signedText(cluster, name string, head []byte) []byte {
	b := make([]byte, 0, len(metaContext)+len(cluster)+len(name)+2+len(head))
	b = append(b, metaContext...)
	b = append(b, cluster...)
	b = append(b, 0)
	b = append(b, name...)
	b = append(b, 0)
	return append(b, head...)
}

// EncodeMeta signs m as the member id names (its cluster and name) and
// returns the envelope.
func EncodeMeta(id *identity.Node, m Meta) ([]byte, error) {
	if m.Role != id.Role {
		return nil, fmt.Errorf("role %q, but the certificate names %q", m.Role, id.Role)
	}
	mode, ok := modeCodes[m.Mode]
	if !ok {
		return nil, fmt.Errorf("unknown mode %q", m.Mode)
	}
	if !m.Address.IsValid() {
		return nil, errors.New("no address")
	}
	flags := mode << 1
	if m.Healthy {
		flags |= 1
	}
	addr := m.Address.Unmap().AsSlice()
	payload := append([]byte{flags, byte(m.Port >> 8), byte(m.Port)}, addr...)
	b := []byte{metaVersion, byte(len(payload))}
	b = append(b, payload...)
	sig := id.Sign(signedText(id.Cluster, id.Name, b))
	der := id.Cert.Raw
	b = binary.BigEndian.AppendUint16(b, uint16(len(der)))
	b = append(b, der...)
	b = append(b, sig...)
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("the signed metadata is %d bytes, over memberlist's %d", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// MetaError is why a member's metadata was refused. Reason is one of a
// few fixed phrases (the rate limit of the log is per member and reason).
type MetaError struct {
	Member string
	Reason string
	Detail string
}

// Reasons a member is refused.
const (
	ReasonName      = "not a node name"
	ReasonEnvelope  = "metadata is not imgforge's signed metadata"
	ReasonPayload   = "garbage in the signed metadata"
	ReasonCert      = "certificate not from the cluster CA"
	ReasonIdentity  = "certificate names another node or role"
	ReasonSignature = "bad signature"
	ReasonAddress   = "address is not the one it gossips from"
)

func (e *MetaError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("member %q: %s", e.Member, e.Reason)
	}
	return fmt.Sprintf("member %q: %s: %s", e.Member, e.Reason, e.Detail)
}

// MetaVerifier checks members' signed metadata against the cluster CA.
type MetaVerifier struct {
	v       *identity.Verifier
	cluster string
	now     func() time.Time
}

// NewMetaVerifier trusts the cluster CA of id; now is the clock that
// certificates are checked at (time.Now when nil).
func NewMetaVerifier(ca *identity.Verifier, now func() time.Time) *MetaVerifier {
	if now == nil {
		now = time.Now
	}
	return &MetaVerifier{v: ca, cluster: ca.Cluster(), now: now}
}

// ParseMeta decodes a member's metadata and checks everything: the
// envelope; a certificate that chains to the cluster CA at the current
// time and names this member (its memberlist name) and the role it
// claims; the signature; a unicast address equal to the one it gossips
// from (from, when known) and the port it gossips on (port, when not 0).
// It returns the metadata and the verified certificate.
// A member that fails is no member.
func (v *MetaVerifier) ParseMeta(name string, from net.IP, port uint16, data []byte) (Meta, *x509.Certificate, error) {
	fail := func(reason, format string, args ...any) (Meta, *x509.Certificate, error) {
		return Meta{}, nil, &MetaError{Member: name, Reason: reason, Detail: fmt.Sprintf(format, args...)}
	}
	if !names.Node(name) {
		return fail(ReasonName, "")
	}
	if len(data) < 2 || data[0] != metaVersion {
		return fail(ReasonEnvelope, "no certificate, or an unknown version (%d bytes)", len(data))
	}
	p := int(data[1])
	if len(data) < 2+p+2 {
		return fail(ReasonEnvelope, "truncated (%d bytes)", len(data))
	}
	head, payload := data[:2+p], data[2:2+p]
	c := int(binary.BigEndian.Uint16(data[2+p:]))
	if len(data) != 2+p+2+c+sigSize {
		return fail(ReasonEnvelope, "%d bytes where the lengths say %d", len(data), 2+p+2+c+sigSize)
	}
	der, sig := data[4+p:4+p+c], data[4+p+c:]
	if c == 0 {
		return fail(ReasonCert, "no certificate")
	}
	claims, cert, err := v.v.Verify(der, v.now())
	if err != nil {
		return fail(ReasonCert, "%v", err)
	}
	m := Meta{Role: claims.Role}
	if p != 7 && p != 19 {
		return fail(ReasonPayload, "a payload of %d bytes", p)
	}
	var ok bool
	flags := payload[0]
	if m.Mode, ok = codeName(modeCodes, flags>>1); !ok || flags&^7 != 0 {
		return fail(ReasonPayload, "unknown flags %#x", flags)
	}
	m.Healthy = flags&1 == 1
	m.Port = binary.BigEndian.Uint16(payload[1:3])
	a, _ := netip.AddrFromSlice(payload[3:])
	if p == 19 && a.Is4In6() {
		return fail(ReasonPayload, "an IPv4-mapped address")
	}
	if a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || m.Port == 0 {
		return fail(ReasonPayload, "address %s port %d", a, m.Port)
	}
	m.Address = a
	if claims.Name != name || claims.Cluster != v.cluster {
		return fail(ReasonIdentity, "it claims %s %s of cluster %s; its certificate says %s", m.Role, name, v.cluster, claims)
	}
	if !ed25519.Verify(cert.PublicKey.(ed25519.PublicKey), signedText(v.cluster, name, head), sig) {
		return fail(ReasonSignature, "")
	}
	if f, ok := netip.AddrFromSlice(from); ok && f.Unmap() != a {
		return fail(ReasonAddress, "it advertises %s but gossips from %s", a, f.Unmap())
	}
	if port != 0 && port != m.Port {
		return fail(ReasonAddress, "it advertises port %d but gossips on %d", m.Port, port)
	}
	return m, cert, nil
}
