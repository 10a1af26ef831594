package identity

import (
	"crypto/x509"
	"encoding/pem"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newCA(t *testing.T, seed byte, cluster string) (*CA, []byte) {
	t.Helper()
	certPEM, keyPEM, err := NewCA(rand.NewChaCha8([32]byte{seed}), cluster, now)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return ca, certPEM
}

func TestIssueAndVerify(t *testing.T) {
	ca, caPEM := newCA(t, 1, "shop")
	if Cluster(ca.Cert) != "shop" || !ca.Cert.IsCA || ca.Cert.NotAfter.Sub(now) < 9*365*24*time.Hour {
		t.Errorf("CA %v until %v", ca.Cert.Subject, ca.Cert.NotAfter)
	}
	r := rand.NewChaCha8([32]byte{2})
	certPEM, keyPEM, err := ca.Issue(r, "web", "web-1", now)
	if err != nil {
		t.Fatal(err)
	}
	n, err := ParseNode(caPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if n.Claims != (Claims{Cluster: "shop", Role: "web", Name: "web-1"}) {
		t.Errorf("claims %+v", n.Claims)
	}
	c := n.Cert
	if c.Subject.String() != "CN=web-1,OU=web" || c.Issuer.String() != "O=shop" || c.KeyUsage != x509.KeyUsageDigitalSignature || len(c.ExtKeyUsage) != 0 || c.IsCA {
		t.Errorf("certificate %v issued by %v, key usage %v %v", c.Subject, c.Issuer, c.KeyUsage, c.ExtKeyUsage)
	}
	// Usable for mutual TLS later: x509 accepts it for client and server authentication.
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Errorf("usage %v: %v", u, err)
		}
	}
	v := NewVerifier(ca.Cert)
	if got, _, err := v.Verify(c.Raw, now.Add(time.Hour)); err != nil || got != n.Claims {
		t.Errorf("%+v %v", got, err)
	}
	if _, _, err := v.Verify(c.Raw, now.Add(NodeValidity+time.Hour)); err == nil || !strings.Contains(err.Error(), "is not valid at") {
		t.Errorf("an expired certificate: %v", err)
	}
	if _, _, err := v.Verify(c.Raw, now.Add(-2*Backdate)); err == nil {
		t.Error("a certificate before its start verified")
	}
	other, _ := newCA(t, 3, "shop")
	if _, _, err := NewVerifier(other.Cert).Verify(c.Raw, now); err == nil || !strings.Contains(err.Error(), "not from the cluster CA") {
		t.Errorf("another CA: %v", err)
	}
	if _, _, err := v.Verify(ca.Cert.Raw, now); err == nil {
		t.Error("the CA's own certificate verified as a node's")
	}
	if _, _, err := v.Verify([]byte("garbage"), now); err == nil {
		t.Error("garbage verified")
	}
	// A key that is not the certificate's, a CA that is not the issuer.
	_, otherKey, err := ca.Issue(r, "web", "web-1", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseNode(caPEM, certPEM, otherKey); err == nil || !strings.HasPrefix(err.Error(), "key: ") {
		t.Errorf("other key: %v", err)
	}
	otherPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Cert.Raw})
	if _, err := ParseNode(otherPEM, certPEM, keyPEM); err == nil || !strings.HasPrefix(err.Error(), "cert: ") {
		t.Errorf("other CA: %v", err)
	}
	if _, err := ParseNode(certPEM, certPEM, keyPEM); err == nil || !strings.HasPrefix(err.Error(), "ca: ") {
		t.Errorf("a node certificate as the CA: %v", err)
	}
	for _, role := range []string{"Cache", "ca che", "cache\n", "", strings.Repeat("r", 33)} {
		if _, _, err := ca.Issue(r, role, "x", now); err == nil {
			t.Errorf("a role named %q was issued", role)
		}
	}
	if _, _, err := ca.Issue(r, "cache", "x", now); err != nil {
		t.Errorf("a role that is data (cache): %v", err)
	}
}

// TestDeterministic: the same randomness and time give the same bytes
// (the seed's golden files rely on it).
func TestDeterministic(t *testing.T) {
	var out []string
	for range 2 {
		r := rand.NewChaCha8([32]byte{7})
		c, k, err := NewCA(r, "shop", now)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := ParseCA(c, k)
		if err != nil {
			t.Fatal(err)
		}
		nc, nk, err := ca.Issue(r, "db", "db-1", now)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(c)+string(k)+string(nc)+string(nk))
	}
	if out[0] != out[1] {
		t.Error("two runs differ")
	}
}

// TestCertificateEndsWithCA: a node certificate never outlives its CA.
func TestCertificateEndsWithCA(t *testing.T) {
	ca, _ := newCA(t, 1, "shop")
	certPEM, _, err := ca.Issue(rand.NewChaCha8([32]byte{2}), "lb", "lb-1", ca.Cert.NotAfter.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if c.NotAfter.After(ca.Cert.NotAfter) {
		t.Errorf("ends %v, after the CA's %v", c.NotAfter, ca.Cert.NotAfter)
	}
}

func TestVerifyPeer(t *testing.T) {
	ca, _ := newCA(t, 1, "shop")
	v := NewVerifier(ca.Cert)
	r := rand.NewChaCha8([32]byte{9})
	leaf := func(role, name string) *x509.Certificate {
		certPEM, _, err := ca.Issue(r, role, name, now)
		if err != nil {
			t.Fatal(err)
		}
		c, err := parseCert(certPEM)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c, err := v.VerifyPeer(leaf("db", "db-2"), "db", now); err != nil || c.Name != "db-2" || c.Role != "db" {
		t.Errorf("a db peer: %+v %v", c, err)
	}
	if _, err := v.VerifyPeer(leaf("web", "web-1"), "db", now); err == nil || !strings.Contains(err.Error(), "only nodes of role db") {
		t.Errorf("a web node: %v", err)
	}
	op, err := ca.IssueOperator(r, "ops", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyPeer(op.Leaf, "db", now); err == nil {
		t.Error("an operator certificate passed as a peer")
	}
	other, _ := newCA(t, 4, "shop")
	certPEM, _, err := other.Issue(r, "db", "db-9", now)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := parseCert(certPEM)
	if _, err := NewVerifier(ca.Cert).VerifyPeer(c, "db", now); err == nil {
		t.Error("a db node of another CA passed")
	}
}
