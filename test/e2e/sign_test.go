//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/internal/testtool"

	"github.com/google/go-containerregistry/pkg/registry"
)

// writeKeyPair writes an ECDSA P-256 key pair, as openssl genpkey makes
// one, into dir: key.pem and key.pub.
func writeKeyPair(t *testing.T, dir string) (priv, pub string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	pder, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	priv, pub = filepath.Join(dir, "key.pem"), filepath.Join(dir, "key.pub")
	os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), 0o644)
	return priv, pub
}

// cosignBin is the cosign that make cosign-tool builds ($COSIGN).
func cosignBin(t *testing.T) string {
	t.Helper()
	p, err := testtool.Path("cosign", "COSIGN")
	if err != nil {
		t.Fatalf("%v; the README's test command builds it", err)
	}
	return p
}

// TestSignedBuild builds lb with --sign-key; imgforge verify --key
// accepts it and refuses another key; pushed to a registry on loopback,
// the real cosign verifies the image's signature and its provenance,
// SPDX and CycloneDX attestations, SHA256SUMS.sig and the provenance of
// the raw disk, and refuses another key.
func TestSignedBuild(t *testing.T) {
	t.Parallel()
	f := cold(t, 0)
	hostSlots(t, 1)
	cosign := cosignBin(t)
	keys, other := t.TempDir(), t.TempDir()
	priv, pub := writeKeyPair(t, keys)
	_, otherPub := writeKeyPair(t, other)
	out := t.TempDir()
	mustBuild(t, f.cache, out, "--sign-key", priv, "--format", "raw,oci", "lb")
	dir := filepath.Join(out, "lb")
	if b, _ := os.ReadFile(filepath.Join(dir, "manifest.json")); !strings.Contains(string(b), `"signed": true`) {
		t.Errorf("the manifest does not say the build is signed")
	}

	r := imgforge(t, f.cache, workdir, "verify", "--output-dir", out, "--key", pub, "lb")
	if r.code != 0 || !strings.Contains(r.stdout, "signature-oci") {
		t.Errorf("verify --key: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = imgforge(t, f.cache, workdir, "verify", "--output-dir", out, "--key", otherPub, "lb")
	if r.code == 0 || !strings.Contains(r.stdout, "FAILED  signature-sums") {
		t.Errorf("verify with another key: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(true)))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/stack/lb:signed"
	r = imgforge(t, f.cache, workdir, "push", "lb", ref, "--output-dir", out)
	if r.code != 0 || strings.Count(r.stdout, "\n") != 3 {
		t.Fatalf("push: exit %d, want the image, its signature and its attestations\n%s%s", r.code, r.stdout, r.stderr)
	}
	cosignRun := func(args ...string) (string, error) {
		cmd := exec.Command(cosign, args...)
		cmd.Env = testtool.CosignEnv(t.TempDir())
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	offline := []string{"--insecure-ignore-tlog=true"}
	for _, args := range [][]string{
		{"verify", "--allow-http-registry", ref},
		{"verify-attestation", "--allow-http-registry", "--type", "slsaprovenance1", ref},
		{"verify-attestation", "--allow-http-registry", "--type", "spdxjson", ref},
		{"verify-attestation", "--allow-http-registry", "--type", "cyclonedx", ref},
		{"verify-blob", "--signature", filepath.Join(dir, "SHA256SUMS.sig"), filepath.Join(dir, "SHA256SUMS")},
		{"verify-blob-attestation", "--type", "slsaprovenance1", "--signature", filepath.Join(dir, "provenance.intoto.json"), filepath.Join(dir, "lb.raw")},
	} {
		full := append(append([]string{args[0], "--key", pub}, offline...), args[1:]...)
		if o, err := cosignRun(full...); err != nil {
			t.Errorf("cosign %s: %v\n%s", strings.Join(full, " "), err, o)
		}
		full = append(append([]string{args[0], "--key", otherPub}, offline...), args[1:]...)
		if o, err := cosignRun(full...); err == nil {
			t.Errorf("cosign %s passed with another key\n%s", strings.Join(full, " "), o)
		}
	}
}
