package imgforge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/imgforge/imgforge/pkg/build"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/oci"
	"github.com/imgforge/imgforge/pkg/sign"
	"github.com/imgforge/imgforge/pkg/verify"
)

func newSigner(t *testing.T) *sign.Signer {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	s, err := sign.ParseSigner(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// signedFolder writes an output folder as a signed build leaves it: an
// image file, an OCI layout with its signature and attestations, the
// provenance, the manifest, SHA256SUMS and its signature.
func signedFolder(t *testing.T, s *sign.Signer) (Image, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lb")
	os.MkdirAll(dir, 0o755)
	raw := []byte("a disk")
	os.WriteFile(filepath.Join(dir, "lb.raw"), raw, 0o644)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	st, _ := sign.NewStatement(sign.SLSAProvenanceV1, []byte(`{}`), sign.NewSubject("lb@oci", d.String()), sign.NewSubject("lb.raw", "sha256:"+sha(raw)))
	env, err := s.SignEnvelope(sign.InTotoPayloadType, st)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, build.ProvenanceName), env, 0o644)
	lp := filepath.Join(dir, "oci")
	p, _ := layout.Write(lp, empty.Index)
	p.AppendImage(img, layout.WithAnnotations(map[string]string{oci.RefNameAnnotation: "lb"}))
	sigs, err := oci.SignImage(img, "lb", s, []oci.Attestation{{PredicateType: sign.SLSAProvenanceV1, Envelope: env}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sigs.AddToLayout(lp); err != nil {
		t.Fatal(err)
	}
	m := imagemeta.Manifest{Role: "lb", ImageDigest: d.String(), Signing: imagemeta.Signing{Signed: true, Key: s.ID},
		Outputs: []imagemeta.Output{{Path: "lb.raw", Format: "raw", Digest: "sha256:" + sha(raw)}}}
	mj, _ := m.Marshal()
	os.WriteFile(filepath.Join(dir, imagemeta.ManifestName), mj, 0o644)
	sums := imagemeta.MarshalSums(map[string]string{"lb.raw": sha(raw), imagemeta.ManifestName: sha(mj), build.ProvenanceName: sha(env)})
	os.WriteFile(filepath.Join(dir, imagemeta.SumsName), sums, 0o644)
	sig, _ := s.SignBlob(sums)
	os.WriteFile(filepath.Join(dir, build.SigName), sig, 0o644)
	return Image{Path: filepath.Join(dir, "lb.raw"), Format: "raw", Name: "lb"}, dir
}

func failedChecks(checks []verify.Check) []string {
	var f []string
	for _, c := range checks {
		if !c.OK {
			f = append(f, c.Name)
		}
	}
	return f
}

// TestVerifySignatures: a signed folder passes every signature check
// with its key; another key, and each kind of tampering, fails the
// checks it should.
func TestVerifySignatures(t *testing.T) {
	s := newSigner(t)
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
		other  bool
		want   string // the failed checks, comma-separated
	}{
		{name: "intact"},
		{name: "another key", other: true, want: "signature-sums,signature-key,attestation-provenance,signature-oci"},
		{name: "SHA256SUMS edited", tamper: func(t *testing.T, dir string) {
			p := filepath.Join(dir, imagemeta.SumsName)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, append(b, strings.Repeat("0", 64)+"  extra\n"...), 0o644)
		}, want: "signature-sums"},
		{name: "manifest edited", tamper: func(t *testing.T, dir string) {
			p := filepath.Join(dir, imagemeta.ManifestName)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, []byte(strings.Replace(string(b), `"role": "lb"`, `"role": "lx"`, 1)), 0o644)
		}, want: "signature-covers"},
		{name: "provenance replaced", tamper: func(t *testing.T, dir string) {
			env, _ := newSigner(t).SignEnvelope(sign.InTotoPayloadType, []byte(`{}`))
			os.WriteFile(filepath.Join(dir, build.ProvenanceName), env, 0o644)
		}, want: "attestation-provenance"},
		{name: "signature removed", tamper: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, build.SigName))
		}, want: "signature-sums"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, dir := signedFolder(t, s)
			if tc.tamper != nil {
				tc.tamper(t, dir)
			}
			v := s.Verifier()
			if tc.other {
				v = newSigner(t).Verifier()
			}
			checks := VerifySignatures(img, "", v)
			if got := strings.Join(failedChecks(checks), ","); got != tc.want {
				t.Errorf("failed checks %q, want %q: %+v", got, tc.want, checks)
			}
			if len(checks) != 5 {
				t.Errorf("%d checks, want 5", len(checks))
			}
		})
	}
}
