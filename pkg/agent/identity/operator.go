package identity

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"time"
)

// OperatorOrg is the subject organization of an operator certificate: a
// person or tool (imgforge rollout) allowed to command the cluster's
// nodes through their agents' control endpoints.
//
// Node certificates never carry an organization (the node verifier
// refuses one), and operator certificates always do and carry no OU, so
// neither passes for the other: an operator certificate cannot join
// discovery as a node, and a node's certificate cannot command another
// node. The second matters most: a node's key lives on the node, so a
// node taken over (a web node runs code that faces the internet) would
// otherwise command every other node, for example to boot an image of its
// choosing. Operator certificates are made only from the CA's key, which
// lives in the operator's secrets file and on no node.
const OperatorOrg = "imgforge-operator"

// OperatorValidity is how long IssueOperator's certificates last by
// default: long enough for a rollout, short enough that a leaked one is
// soon worthless.
const OperatorValidity = 4 * time.Hour

// IssueOperator makes an operator's key and client certificate (subject
// O=imgforge-operator, CN=name, extended key usage clientAuth), valid from
// now (less Backdate) for validity, in memory: callers keep it there.
func (ca *CA) IssueOperator(r io.Reader, name string, now time.Time, validity time.Duration) (tls.Certificate, error) {
	if name == "" {
		return tls.Certificate{}, errors.New("an operator certificate needs a name")
	}
	pub, key, err := ed25519.GenerateKey(r)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("making the operator's key: %w", err)
	}
	sn, err := serial(r)
	if err != nil {
		return tls.Certificate{}, err
	}
	notAfter := now.Add(validity).UTC().Truncate(time.Second)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	t := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{Organization: []string{OperatorOrg}, CommonName: name},
		NotBefore:    now.Add(-Backdate).UTC().Truncate(time.Second),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(r, t, ca.Cert, pub, ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("making the operator's certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// VerifyOperator checks that cert is an operator certificate of the
// verifier's CA at now, and returns the operator's name. Node
// certificates are refused.
func (v *Verifier) VerifyOperator(cert *x509.Certificate, now time.Time) (string, error) {
	if _, err := cert.Verify(x509.VerifyOptions{Roots: v.pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return "", fmt.Errorf("the certificate is not an operator certificate of the cluster CA: %s", oneLine(err.Error()))
	}
	s := cert.Subject
	if cert.IsCA || len(s.Organization) != 1 || s.Organization[0] != OperatorOrg || len(s.OrganizationalUnit) != 0 || s.CommonName == "" {
		return "", fmt.Errorf("the certificate's subject is not O=%s, CN=NAME: a node's certificate does not command other nodes", OperatorOrg)
	}
	if _, ok := cert.PublicKey.(ed25519.PublicKey); !ok {
		return "", errors.New("the certificate's key is not Ed25519")
	}
	return s.CommonName, nil
}

// TLSCertificate is the node's certificate and key for a TLS server or
// client.
func (n *Node) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{n.Cert.Raw}, PrivateKey: n.Key, Leaf: n.Cert}
}

// Pool is a certificate pool holding the CA alone.
func Pool(ca *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca)
	return p
}

// VerifyPeer checks that cert is a node certificate of the verifier's CA
// at now whose role is role: a peer of a node of that role, such as a
// replica asking its primary for a snapshot. Operator certificates and
// nodes of other roles are refused.
func (v *Verifier) VerifyPeer(cert *x509.Certificate, role string, now time.Time) (Claims, error) {
	c, err := v.verify(cert, now)
	if err != nil {
		return Claims{}, err
	}
	if c.Role != role {
		return Claims{}, fmt.Errorf("the certificate is node %s's, of role %s; only nodes of role %s are accepted here", c.Name, c.Role, role)
	}
	return c, nil
}
