package oci

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/internal/testtool"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/imgforge/imgforge/pkg/sign"
)

// newKey writes an ECDSA P-256 key pair into dir as key.pem and key.pub.
func newKey(t *testing.T, dir string) *sign.Signer {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	priv := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	s, err := sign.ParseSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "key.pem"), priv, 0o600)
	os.WriteFile(filepath.Join(dir, "key.pub"), s.PublicKeyPEM(), 0o644)
	return s
}

// signedTestImage is a random image with its signature and a provenance
// attestation, signed by s.
func signedTestImage(t *testing.T, s *sign.Signer) (v1.Image, *Signatures) {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	var atts []Attestation
	for _, pt := range []string{sign.SLSAProvenanceV1, sign.SPDXDocument} {
		st, err := sign.NewStatement(pt, []byte(`{"buildDefinition":{"buildType":"x"},"spdxVersion":"SPDX-2.3"}`), sign.NewSubject("lb", d.String()))
		if err != nil {
			t.Fatal(err)
		}
		env, err := s.SignEnvelope(sign.InTotoPayloadType, st)
		if err != nil {
			t.Fatal(err)
		}
		atts = append(atts, Attestation{PredicateType: pt, Envelope: env})
	}
	sigs, err := SignImage(img, "lb", s, atts)
	if err != nil {
		t.Fatal(err)
	}
	return img, sigs
}

// TestSignaturesLayout: the signature images written into a layout read
// back and verify; another key does not.
func TestSignaturesLayout(t *testing.T) {
	dir := t.TempDir()
	s := newKey(t, dir)
	img, sigs := signedTestImage(t, s)
	lp := filepath.Join(dir, "oci")
	p, err := layout.Write(lp, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{RefNameAnnotation: "lb"})); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	idx, _ := layout.ImageIndexFromPath(lp)
	if _, err := LayoutSignatures(idx, d); !errors.Is(err, ErrNotSigned) {
		t.Errorf("unsigned layout: %v, want ErrNotSigned", err)
	}
	if err := sigs.AddToLayout(lp); err != nil {
		t.Fatal(err)
	}
	idx, _ = layout.ImageIndexFromPath(lp)
	got, err := LayoutSignatures(idx, d)
	if err != nil {
		t.Fatal(err)
	}
	types, err := got.Verify(s.Verifier())
	if err != nil || len(types) != 2 {
		t.Errorf("Verify = %v, %v", types, err)
	}
	other := newKey(t, t.TempDir())
	if _, err := got.Verify(other.Verifier()); !errors.Is(err, sign.ErrBadSignature) {
		t.Errorf("another key: %v", err)
	}
}

// cosignPath is the cosign that `make cosign-tool` builds.
func cosignPath(t *testing.T) string {
	t.Helper()
	p, err := testtool.Path("cosign", "COSIGN")
	if err != nil {
		t.Skip(err)
	}
	return p
}

// TestCosignVerifies: the real cosign verifies the signature and the
// attestations of an image pushed with them to a registry, in the
// registry's referrers and under cosign's tags; it refuses another key.
// It also verifies a blob signature (SHA256SUMS.sig).
func TestCosignVerifies(t *testing.T) {
	cosign := cosignPath(t)
	if testing.Short() {
		t.Skip("runs cosign")
	}
	dir := t.TempDir()
	s := newKey(t, dir)
	other := t.TempDir()
	newKey(t, other)
	img, sigs := signedTestImage(t, s)
	for _, referrers := range []bool{true, false} {
		what := "referrers API"
		if !referrers {
			what = "no referrers API"
		}
		t.Run(what, func(t *testing.T) {
			srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0)), registry.WithReferrersSupport(referrers)))
			defer srv.Close()
			ref := strings.TrimPrefix(srv.URL, "http://") + "/stack/lb:1"
			tag, err := name.NewTag(ref)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if _, err := PushRef(ctx, tag, img); err != nil {
				t.Fatal(err)
			}
			if _, err := sigs.Push(ctx, tag.Context()); err != nil {
				t.Fatal(err)
			}
			d, _ := img.Digest()
			// Both are referrers of the image (the API, or the fallback tag).
			idx, err := remote.Referrers(tag.Context().Digest(d.String()))
			if err != nil {
				t.Fatal(err)
			}
			if im, _ := idx.IndexManifest(); len(im.Manifests) != 2 {
				t.Errorf("%d referrers, want the signature and the attestations", len(im.Manifests))
			}
			run := func(key string, args ...string) error {
				cmd := exec.Command(cosign, append(args, "--key", filepath.Join(key, "key.pub"), "--insecure-ignore-tlog=true", "--allow-http-registry", ref)...)
				cmd.Env = testtool.CosignEnv(t.TempDir())
				out, err := cmd.CombinedOutput()
				if err != nil {
					return errors.New(strings.TrimSpace(string(out)))
				}
				return nil
			}
			if err := run(dir, "verify"); err != nil {
				t.Errorf("cosign verify: %v", err)
			}
			for _, typ := range []string{"slsaprovenance1", "spdxjson"} {
				if err := run(dir, "verify-attestation", "--type", typ); err != nil {
					t.Errorf("cosign verify-attestation --type %s: %v", typ, err)
				}
			}
			if err := run(other, "verify"); err == nil {
				t.Error("cosign verify passed with another key")
			}
			if err := run(other, "verify-attestation", "--type", "slsaprovenance1"); err == nil {
				t.Error("cosign verify-attestation passed with another key")
			}
		})
	}

	blob := filepath.Join(dir, "SHA256SUMS")
	os.WriteFile(blob, []byte("abcd  lb.raw\n"), 0o644)
	sig, _ := s.SignBlob([]byte("abcd  lb.raw\n"))
	os.WriteFile(blob+".sig", append(sig, '\n'), 0o644)
	for _, tc := range []struct {
		key string
		ok  bool
	}{{dir, true}, {other, false}} {
		cmd := exec.Command(cosign, "verify-blob", "--key", filepath.Join(tc.key, "key.pub"), "--signature", blob+".sig", "--insecure-ignore-tlog=true", blob)
		cmd.Env = testtool.CosignEnv(t.TempDir())
		out, err := cmd.CombinedOutput()
		if (err == nil) != tc.ok {
			t.Errorf("cosign verify-blob with key %s: %v: %s", tc.key, err, out)
		}
	}
}
