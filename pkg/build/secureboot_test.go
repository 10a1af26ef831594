package build

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/internal/testtool"
	"github.com/imgforge/imgforge/pkg/boot"
)

// writeSBKey writes a private key (PKCS#8 PEM) and a self-signed
// certificate of certKey into dir.
func writeSBKey(t *testing.T, dir, name string, key, certKey any) (keyPath, certPath string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPath = filepath.Join(dir, name+".key")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "imgforge test db"}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(4e9, 0)}
	signer := certKey.(crypto.Signer)
	cder, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), certKey)
	if err != nil {
		t.Fatal(err)
	}
	certPath = filepath.Join(dir, name+".pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cder}), 0o644); err != nil {
		t.Fatal(err)
	}
	return keyPath, certPath
}

func TestLoadSecureBoot(t *testing.T) {
	dir := t.TempDir()
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key, cert := writeSBKey(t, dir, "db", rk, rk)
	otherKey, _ := writeSBKey(t, dir, "other", other, other)
	ecKey, ecCert := writeSBKey(t, dir, "ec", ek, ek)
	encrypted := filepath.Join(dir, "enc.key")
	os.WriteFile(encrypted, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), 0o600)
	sb, err := LoadSecureBoot(key, cert)
	if err != nil || !strings.HasPrefix(sb.ID, "sha256:") {
		t.Fatalf("a good pair: %v %+v", err, sb)
	}
	for _, tt := range []struct{ name, key, cert, want string }{
		{"no cert", key, "", "needs both"},
		{"missing", key, filepath.Join(dir, "none.pem"), "no such file"},
		{"key as cert", key, key, "not a PEM CERTIFICATE"},
		{"ecdsa", ecKey, ecCert, "accepted: RSA"},
		{"mismatch", otherKey, cert, "is not the key of certificate"},
		{"encrypted", encrypted, cert, "encrypted; accepted: an unencrypted RSA private key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := LoadSecureBoot(tt.key, tt.cert); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want %q", err, tt.want)
			}
		})
	}
}

// TestSecureBootSign signs a UKI with the real sbsign: sbverify accepts
// it with the certificate and refuses it once its command line changed,
// and signing again gives the same bytes (the signing time is
// SOURCE_DATE_EPOCH).
func TestSecureBootSign(t *testing.T) {
	sbverify, err := exec.LookPath("sbverify")
	if err != nil {
		t.Skip("sbsigntool is not installed (hack/setup.sh installs it)")
	}
	dir := t.TempDir()
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	key, cert := writeSBKey(t, dir, "db", rk, rk)
	sb, err := LoadSecureBoot(key, cert)
	if err != nil {
		t.Fatal(err)
	}
	uki, err := boot.UKI(testtool.TinyEFI(0x1000, 0x200), []byte("kernel"), [][]byte{[]byte("initrd")}, "boot=imgforge imgforge.slot=a", []byte("ID=debian\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	signed, err := sb.sign(ctx, dir, "uki", uki, 1700000000)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	again, err := sb.sign(ctx, dir, "uki", uki, 1700000000)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(signed, again) {
		t.Error("two signatures of the same UKI at the same SOURCE_DATE_EPOCH differ")
	}
	p := filepath.Join(dir, "signed.efi")
	os.WriteFile(p, signed, 0o644)
	if out, err := exec.Command(sbverify, "--cert", cert, p).CombinedOutput(); err != nil {
		t.Fatalf("sbverify refuses the signed UKI: %v: %s", err, out)
	}
	i := bytes.Index(signed, []byte("imgforge.slot=a"))
	signed[i+len("imgforge.slot=")] = 'b'
	os.WriteFile(p, signed, 0o644)
	if out, err := exec.Command(sbverify, "--cert", cert, p).CombinedOutput(); err == nil {
		t.Fatalf("sbverify accepts a UKI whose command line changed after signing: %s", out)
	}
}
