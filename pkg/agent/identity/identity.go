// Package identity is a cluster's certificate authority and its nodes'
// certificates: who a node is (its name and role, in which cluster),
// proven with a key only that node holds.
//
// imgforge seed makes one CA per cluster (an Ed25519 key and a
// self-signed X.509 certificate whose subject is O=CLUSTER) and, per
// node, an Ed25519 key and a certificate from that CA whose subject is
// OU=ROLE, CN=NODE; its issuer (the CA's subject) names the cluster.
// Node certificates are plain X.509: key usage digitalSignature, no
// extended key usage (so they serve TLS clients and servers alike, as a
// rollout tool's mutual TLS will need), an 8-byte authority key id and an
// 8-byte serial, and nothing else, because a member carries its
// certificate in memberlist's 512-byte node metadata (package discovery).
//
// The package makes and checks identities; it does not know how they
// travel.
package identity

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// Validity of what Issue and NewCA make.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	NodeValidity = 5 * 365 * 24 * time.Hour
	// Backdate is how far before "now" certificates start, for nodes
	// whose clocks lag.
	Backdate = time.Hour
	// RenewBefore: imgforge seed issues a node a new certificate when
	// its own ends sooner than this.
	RenewBefore = 90 * 24 * time.Hour
)

// Claims are what a node certificate says about its holder.
type Claims struct {
	Cluster string
	Role    string
	Name    string
}

func (c Claims) String() string {
	return fmt.Sprintf("%s (%s) of cluster %s", c.Name, c.Role, c.Cluster)
}

// CA is a cluster's certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  ed25519.PrivateKey
}

// Node is a node's identity: its certificate, its key, and the CA that
// issued it.
type Node struct {
	Claims
	Cert *x509.Certificate
	Key  ed25519.PrivateKey
	CA   *x509.Certificate
}

func serial(r io.Reader) (*big.Int, error) {
	b := make([]byte, 8)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("making a serial number: %w", err)
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // positive, and always 8 bytes long
	return new(big.Int).SetBytes(b), nil
}

// NewCA makes a cluster's CA, valid from now (less Backdate) for
// CAValidity, and returns its certificate and key as PEM.
func NewCA(r io.Reader, cluster string, now time.Time) (certPEM, keyPEM []byte, err error) {
	pub, key, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, nil, fmt.Errorf("making the cluster CA's key: %w", err)
	}
	sn, err := serial(r)
	if err != nil {
		return nil, nil, err
	}
	ski := sha256.Sum256(pub)
	t := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{Organization: []string{cluster}},
		NotBefore:             now.Add(-Backdate).UTC().Truncate(time.Second),
		NotAfter:              now.Add(CAValidity).UTC().Truncate(time.Second),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          ski[:8], // short: node certificates repeat it
	}
	der, err := x509.CreateCertificate(r, t, t, pub, key)
	if err != nil {
		return nil, nil, fmt.Errorf("making the cluster CA's certificate: %w", err)
	}
	keyPEM, err = pemKey(key)
	return pemCert(der), keyPEM, err
}

// ParseCA reads a CA's PEM certificate and key and checks that they are
// an imgforge cluster CA and make a pair.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCACert(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !key.Public().(ed25519.PublicKey).Equal(cert.PublicKey) {
		return nil, errors.New("the CA's key is not the key of its certificate")
	}
	return &CA{Cert: cert, Key: key}, nil
}

// ParseCACert reads a cluster CA's PEM certificate: one Ed25519 CA
// certificate whose subject names one cluster (O).
func ParseCACert(certPEM []byte) (*x509.Certificate, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("the certificate is not a CA certificate (basic constraints CA, key usage certSign)")
	}
	if _, ok := cert.PublicKey.(ed25519.PublicKey); !ok {
		return nil, errors.New("the CA's key is not Ed25519")
	}
	if len(cert.Subject.Organization) != 1 {
		return nil, errors.New("the CA's subject does not name one cluster (O=CLUSTER)")
	}
	return cert, nil
}

// Cluster is the cluster a CA certificate names.
func Cluster(ca *x509.Certificate) string {
	if len(ca.Subject.Organization) != 1 {
		return ""
	}
	return ca.Subject.Organization[0]
}

// Issue makes a node's key and certificate, valid from now (less
// Backdate) for NodeValidity but not beyond the CA's own end, and returns
// them as PEM.
func (ca *CA) Issue(r io.Reader, role, name string, now time.Time) (certPEM, keyPEM []byte, err error) {
	if !imagemeta.ValidRoleName(role) {
		return nil, nil, fmt.Errorf("%q is not a role name (lower-case letters, digits and '-', starting with a letter, at most %d)", role, imagemeta.MaxRoleName)
	}
	pub, key, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, nil, fmt.Errorf("making node %s's key: %w", name, err)
	}
	sn, err := serial(r)
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(NodeValidity).UTC().Truncate(time.Second)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	t := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{OrganizationalUnit: []string{role}, CommonName: name},
		NotBefore:    now.Add(-Backdate).UTC().Truncate(time.Second),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// No subject key id: nothing chains to a node certificate.
		SubjectKeyId: nil,
	}
	der, err := x509.CreateCertificate(r, t, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("making node %s's certificate: %w", name, err)
	}
	keyPEM, err = pemKey(key)
	return pemCert(der), keyPEM, err
}

// ParseNode reads a node's identity (PEM CA certificate, certificate and
// key), checks that the key is the certificate's and that the CA issued
// the certificate (at the certificate's own start, so that a node with a
// wrong clock still starts; members check the time), and returns it with
// what the certificate claims.
func ParseNode(caPEM, certPEM, keyPEM []byte) (*Node, error) {
	ca, err := ParseCACert(caPEM)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("cert: %w", err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	if !key.Public().(ed25519.PublicKey).Equal(cert.PublicKey) {
		return nil, errors.New("key: is not the key of the certificate")
	}
	v := NewVerifier(ca)
	claims, err := v.verify(cert, cert.NotBefore)
	if err != nil {
		return nil, fmt.Errorf("cert: %w", err)
	}
	return &Node{Claims: claims, Cert: cert, Key: key, CA: ca}, nil
}

// Verifier checks node certificates against one cluster CA.
type Verifier struct {
	ca   *x509.Certificate
	pool *x509.CertPool
}

// NewVerifier trusts ca alone.
func NewVerifier(ca *x509.Certificate) *Verifier {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &Verifier{ca: ca, pool: pool}
}

// Cluster is the cluster of the verifier's CA.
func (v *Verifier) Cluster() string { return Cluster(v.ca) }

// Verify parses a DER node certificate and checks it at now: it chains
// to the CA, it is an Ed25519 leaf for digital signatures, and its
// subject names one known role (OU) and one node (CN). It returns the
// claims and the certificate.
func (v *Verifier) Verify(der []byte, now time.Time) (Claims, *x509.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Claims{}, nil, fmt.Errorf("the certificate does not parse: %s", oneLine(err.Error()))
	}
	c, err := v.verify(cert, now)
	return c, cert, err
}

func (v *Verifier) verify(cert *x509.Certificate, now time.Time) (Claims, error) {
	if _, err := cert.Verify(x509.VerifyOptions{Roots: v.pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return Claims{}, fmt.Errorf("the certificate is not valid at %s (valid %s to %s)", now.UTC().Format(time.RFC3339), cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
		}
		return Claims{}, fmt.Errorf("the certificate is not from the cluster CA: %s", oneLine(err.Error()))
	}
	if cert.IsCA || cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return Claims{}, errors.New("the certificate is not a node certificate (a leaf with key usage digitalSignature)")
	}
	if _, ok := cert.PublicKey.(ed25519.PublicKey); !ok {
		return Claims{}, errors.New("the certificate's key is not Ed25519")
	}
	s := cert.Subject
	if len(s.OrganizationalUnit) != 1 || !imagemeta.ValidRoleName(s.OrganizationalUnit[0]) || s.CommonName == "" || len(s.Organization) != 0 {
		return Claims{}, errors.New("the certificate's subject is not OU=ROLE, CN=NODE")
	}
	return Claims{Cluster: Cluster(v.ca), Role: s.OrganizationalUnit[0], Name: s.CommonName}, nil
}

// ParseKey reads a PEM PKCS #8 Ed25519 private key.
func ParseKey(keyPEM []byte) (ed25519.PrivateKey, error) {
	b, rest := pem.Decode(keyPEM)
	if b == nil || b.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("is not one PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, errors.New("the key does not parse as PKCS #8")
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, errors.New("the key is not Ed25519")
	}
	return ek, nil
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	b, rest := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("is not one PEM CERTIFICATE block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("the certificate does not parse: %s", oneLine(err.Error()))
	}
	return c, nil
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func pemKey(k ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Sign signs msg with the node's key.
func (n *Node) Sign(msg []byte) []byte {
	sig, _ := n.Key.Sign(nil, msg, crypto.Hash(0))
	return sig
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
