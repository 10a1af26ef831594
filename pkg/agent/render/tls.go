package render

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Self-signed certificates last a year and are made again when less than
// a month is left (the agent renders again at least daily).
const (
	selfSignedLifetime = 365 * 24 * time.Hour
	renewBefore        = 30 * 24 * time.Hour
)

// SelfSigned makes an ECDSA P-256 key and a self-signed server
// certificate for host and addr, valid from now for a year, with its
// serial number drawn from rand.
func SelfSigned(rand io.Reader, now time.Time, host string, addr netip.Addr) (*TLS, error) {
	if rand == nil {
		return nil, fmt.Errorf("making a self-signed certificate: no source of randomness")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand)
	if err != nil {
		return nil, fmt.Errorf("making a key: %w", err)
	}
	serial, err := randInt(rand, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("making a serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: host, Organization: []string{"imgforge self-signed"}},
		NotBefore:             now.Add(-time.Hour).UTC().Truncate(time.Second),
		NotAfter:              now.Add(selfSignedLifetime).UTC().Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{host},
		IPAddresses:           []net.IP{addr.AsSlice()},
	}
	der, err := x509.CreateCertificate(rand, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("making a certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the key: %w", err)
	}
	return &TLS{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// randInt is a uniform number in [1, limit) read from r (crypto/rand.Int
// without the retries' dependence on the reader's buffering).
func randInt(r io.Reader, limit *big.Int) (*big.Int, error) {
	b := make([]byte, (limit.BitLen()+7)/8)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	n := new(big.Int).SetBytes(b)
	n.Mod(n, limit)
	if n.Sign() == 0 {
		n.SetInt64(1)
	}
	return n, nil
}

// fits says whether a pair found on the node can be kept: it parses, the
// key matches, it names host and addr, and it is valid for more than a
// month from now.
func fits(t *TLS, now time.Time, host string, addr netip.Addr) bool {
	cert, err := parsePair(t)
	if err != nil {
		return false
	}
	if now.Before(cert.NotBefore) || now.Add(renewBefore).After(cert.NotAfter) {
		return false
	}
	if !slices.ContainsFunc(cert.DNSNames, func(n string) bool { return strings.EqualFold(n, host) }) {
		return false
	}
	return slices.ContainsFunc(cert.IPAddresses, func(ip net.IP) bool {
		a, ok := netip.AddrFromSlice(ip)
		return ok && a.Unmap() == addr
	})
}

// currentPair reads the pair at certPath and keyPath (absolute) from the
// node's root; nil when either is missing.
func currentPair(root fs.FS, certPath, keyPath string) *TLS {
	if root == nil {
		return nil
	}
	c, err := fs.ReadFile(root, strings.TrimPrefix(certPath, "/"))
	if err != nil {
		return nil
	}
	k, err := fs.ReadFile(root, strings.TrimPrefix(keyPath, "/"))
	if err != nil {
		return nil
	}
	return &TLS{CertPEM: c, KeyPEM: k}
}
