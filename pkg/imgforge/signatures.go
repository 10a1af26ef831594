package imgforge

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/imgforge/imgforge/pkg/build"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/oci"
	"github.com/imgforge/imgforge/pkg/sign"
	"github.com/imgforge/imgforge/pkg/verify"
)

// VerifySignatures checks the signatures of a signed build's output
// folder, the one that holds the manifest at manifestPath, with v:
//
//   - SHA256SUMS.sig over SHA256SUMS, and that SHA256SUMS lists the
//     manifest and the image as they are (the manifest's bytes; the
//     image's digest as the manifest records it, which Verify checks);
//   - the manifest names v's key;
//   - provenance.intoto.json: a DSSE envelope signed with v whose SLSA
//     provenance names the image among its subjects;
//   - with an OCI layout in the folder, the image's cosign signature and
//     every attestation.
//
// Each is one check of the report; a missing signature fails its check.
func VerifySignatures(img Image, manifestPath string, v *sign.Verifier) []verify.Check {
	if manifestPath == "" {
		manifestPath = img.ManifestPath()
	}
	dir := filepath.Dir(manifestPath)
	var checks []verify.Check
	add := func(name string, err error, ok string) {
		c := verify.Check{Name: name, OK: err == nil, Reason: ok}
		if err != nil {
			c.Reason = strings.ReplaceAll(err.Error(), "\n", "; ")
		}
		checks = append(checks, c)
	}
	m, merr := imagemeta.ReadManifest(manifestPath)

	sums, err := os.ReadFile(filepath.Join(dir, imagemeta.SumsName))
	if err == nil {
		var sig []byte
		if sig, err = os.ReadFile(filepath.Join(dir, build.SigName)); err == nil {
			err = v.VerifyBlob(sums, sig)
		} else if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%s has no %s: the build was not signed (imgforge build --sign-key)", dir, build.SigName)
		}
	}
	add("signature-sums", err, fmt.Sprintf("%s is signed by %s", build.SigName, v.ID))

	add("signature-covers", sumsCover(dir, manifestPath, img, m, merr), "SHA256SUMS lists the manifest and the image as they are")

	err = merr
	if err == nil && !m.Signing.Signed {
		err = fmt.Errorf("%s says the build was not signed", manifestPath)
	} else if err == nil && m.Signing.Key != v.ID {
		err = fmt.Errorf("%s names key %s, not %s", manifestPath, m.Signing.Key, v.ID)
	}
	add("signature-key", err, "the manifest names the key")

	add("attestation-provenance", checkProvenance(dir, img, m, merr, v), "provenance.intoto.json is signed SLSA v1 provenance of the image")

	if _, err := os.Stat(filepath.Join(dir, "oci", "index.json")); err == nil {
		types, err := ociSignatures(filepath.Join(dir, "oci"), m, merr, v)
		add("signature-oci", err, "the OCI image's cosign signature and attestations ("+strings.Join(types, ", ")+") verify")
	}
	return checks
}

func sumsCover(dir, manifestPath string, img Image, m *imagemeta.Manifest, merr error) error {
	if merr != nil {
		return merr
	}
	sums, err := imagemeta.ReadSums(dir)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(manifestPath)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if got, want := hex.EncodeToString(sum[:]), sums[imagemeta.ManifestName]; got != want {
		return fmt.Errorf("%s has sha256 %s; %s lists %q", manifestPath, got, imagemeta.SumsName, want)
	}
	base := filepath.Base(img.Path)
	rec := ""
	for _, o := range m.Outputs {
		if filepath.Base(o.Path) == base {
			rec = strings.TrimPrefix(o.Digest, "sha256:")
		}
	}
	if rec == "" || sums[base] != rec {
		return fmt.Errorf("%s lists %s as %q, the manifest as %q", imagemeta.SumsName, base, sums[base], rec)
	}
	return nil
}

func checkProvenance(dir string, img Image, m *imagemeta.Manifest, merr error, v *sign.Verifier) error {
	if merr != nil {
		return merr
	}
	env, err := os.ReadFile(filepath.Join(dir, build.ProvenanceName))
	if err != nil {
		return err
	}
	pt, payload, err := v.OpenEnvelope(env)
	if err != nil {
		return fmt.Errorf("%s: %w", build.ProvenanceName, err)
	}
	st, err := sign.ParseStatement(pt, payload)
	if err != nil {
		return fmt.Errorf("%s: %w", build.ProvenanceName, err)
	}
	if st.PredicateType != sign.SLSAProvenanceV1 {
		return fmt.Errorf("%s: predicate %q, not %q", build.ProvenanceName, st.PredicateType, sign.SLSAProvenanceV1)
	}
	if !st.Covers(m.ImageDigest) {
		return fmt.Errorf("%s does not name the OCI image %s", build.ProvenanceName, m.ImageDigest)
	}
	for _, o := range m.Outputs {
		if filepath.Base(o.Path) == filepath.Base(img.Path) && !st.Covers(o.Digest) {
			return fmt.Errorf("%s does not name %s (%s)", build.ProvenanceName, o.Path, o.Digest)
		}
	}
	return nil
}

func ociSignatures(lp string, m *imagemeta.Manifest, merr error, v *sign.Verifier) ([]string, error) {
	if merr != nil {
		return nil, merr
	}
	d, err := v1.NewHash(m.ImageDigest)
	if err != nil {
		return nil, err
	}
	idx, err := layout.ImageIndexFromPath(lp)
	if err != nil {
		return nil, err
	}
	s, err := oci.LayoutSignatures(idx, d)
	if err != nil {
		return nil, err
	}
	types, err := s.Verify(v)
	if err != nil {
		return nil, err
	}
	if len(types) == 0 {
		return nil, errors.New("no attestations")
	}
	return types, nil
}
