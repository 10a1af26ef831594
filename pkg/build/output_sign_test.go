package build

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/oci"
	"github.com/imgforge/imgforge/pkg/sign"
)

func testSigner(t *testing.T, ed bool) *sign.Signer {
	t.Helper()
	var key any
	if ed {
		_, key, _ = ed25519.GenerateKey(rand.Reader)
	} else {
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.ParseSigner(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// readTree is every file of dir with its bytes.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == stateName {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestSignedOutputs: with a key, a build writes SHA256SUMS.sig, the
// signed provenance, and the OCI image's signature and attestations, all
// of which verify with the public key and not with another; the manifest
// names the key; two builds give the same bytes; a no-op build keeps a
// signed folder, and another key or none writes it again.
func TestSignedOutputs(t *testing.T) {
	c, err := cache.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tools := newFakeTools()
	formats := []string{"raw", "oci"}
	for _, ed := range []bool{false, true} {
		name := "ecdsa-p256"
		if ed {
			name = "ed25519"
		}
		t.Run(name, func(t *testing.T) {
			s, other := testSigner(t, ed), testSigner(t, ed)
			out := t.TempDir()
			dir := filepath.Join(out, "web")
			res, _ := buildSigned(t, c, tools, out, formats, "sha256:tool", fakePlan("worker_processes 1;\n"), s)
			checkSums(t, dir)
			v := s.Verifier()

			sums, _ := os.ReadFile(filepath.Join(dir, imagemeta.SumsName))
			sig, err := os.ReadFile(filepath.Join(dir, SigName))
			if err != nil {
				t.Fatal(err)
			}
			if err := v.VerifyBlob(sums, sig); err != nil {
				t.Errorf("SHA256SUMS.sig: %v", err)
			}
			if err := other.Verifier().VerifyBlob(sums, sig); !errors.Is(err, sign.ErrBadSignature) {
				t.Errorf("SHA256SUMS.sig with another key: %v, want ErrBadSignature", err)
			}
			m, err := imagemeta.ReadManifest(filepath.Join(dir, imagemeta.ManifestName))
			if err != nil {
				t.Fatal(err)
			}
			if !m.Signing.Signed || m.Signing.Key != s.ID {
				t.Errorf("manifest signing %+v, want signed by %s", m.Signing, s.ID)
			}

			env, err := os.ReadFile(filepath.Join(dir, ProvenanceName))
			if err != nil {
				t.Fatal(err)
			}
			pt, payload, err := v.OpenEnvelope(env)
			if err != nil {
				t.Fatal(err)
			}
			st, err := sign.ParseStatement(pt, payload)
			if err != nil {
				t.Fatal(err)
			}
			raw := ""
			for _, o := range m.Outputs {
				if o.Format == "raw" {
					raw = o.Digest
				}
			}
			if st.PredicateType != sign.SLSAProvenanceV1 || !st.Covers(res.ImageDigest) || !st.Covers(raw) {
				t.Errorf("provenance %s about %+v; want SLSA v1 about the image %s and web.raw %s", st.PredicateType, st.Subject, res.ImageDigest, raw)
			}
			for _, want := range []string{`"5555"`, `"stage:`, `"source_date_epoch"`, `"imgforge test"`} {
				if !bytes.Contains(payload, []byte(want)) {
					t.Errorf("provenance lacks %s: %s", want, payload)
				}
			}
			if _, _, err := other.Verifier().OpenEnvelope(env); !errors.Is(err, sign.ErrBadSignature) {
				t.Errorf("provenance with another key: %v", err)
			}

			idx, err := layout.ImageIndexFromPath(filepath.Join(dir, "oci"))
			if err != nil {
				t.Fatal(err)
			}
			d, _ := v1.NewHash(res.ImageDigest)
			sigs, err := oci.LayoutSignatures(idx, d)
			if err != nil {
				t.Fatal(err)
			}
			types, err := sigs.Verify(v)
			if err != nil {
				t.Fatal(err)
			}
			if len(types) != 3 {
				t.Errorf("attestations %v, want provenance, SPDX and CycloneDX", types)
			}
			if _, err := sigs.Verify(other.Verifier()); !errors.Is(err, sign.ErrBadSignature) {
				t.Errorf("OCI signature with another key: %v", err)
			}

			// The same bytes from another build; a no-op build keeps them.
			out2 := t.TempDir()
			buildSigned(t, c, tools, out2, formats, "sha256:tool", fakePlan("worker_processes 1;\n"), s)
			a, b := readTree(t, dir), readTree(t, filepath.Join(out2, "web"))
			if len(a) != len(b) {
				t.Errorf("%d files, then %d", len(a), len(b))
			}
			for p, x := range a {
				if !bytes.Equal(x, b[p]) {
					t.Errorf("%s differs between two signed builds", p)
				}
			}
			if _, kept := buildSigned(t, c, tools, out, formats, "sha256:tool", fakePlan("worker_processes 1;\n"), s); !kept {
				t.Error("a signed no-op build wrote the outputs again")
			}
			if _, kept := buildSigned(t, c, tools, out, formats, "sha256:tool", fakePlan("worker_processes 1;\n"), other); kept {
				t.Error("a build with another key kept the outputs")
			}
			if _, kept := buildSigned(t, c, tools, out, formats, "sha256:tool", fakePlan("worker_processes 1;\n"), nil); kept {
				t.Error("an unsigned build kept signed outputs")
			}
			if _, err := os.Stat(filepath.Join(dir, SigName)); err == nil {
				t.Error("an unsigned build left SHA256SUMS.sig")
			}
			// The signature file missing: written again.
			buildSigned(t, c, tools, out, formats, "sha256:tool", fakePlan("worker_processes 1;\n"), s)
			os.Remove(filepath.Join(dir, SigName))
			if _, kept := buildSigned(t, c, tools, out, formats, "sha256:tool", fakePlan("worker_processes 1;\n"), s); kept {
				t.Error("a build kept a folder whose SHA256SUMS.sig was removed")
			}
		})
	}
}
