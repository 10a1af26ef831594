package build

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/oci"
	"github.com/imgforge/imgforge/pkg/sign"
)

// With Options.Signer, a build signs what it writes, in cosign's formats:
//
//   - SHA256SUMS.sig: the signature of SHA256SUMS (cosign sign-blob), and
//     with it every file the sums list: the disks, the ISO, the PXE set,
//     manifest.json, the SBOMs and the OCI layout's blobs;
//   - provenance.intoto.json: a DSSE envelope of an in-toto statement
//     whose predicate is SLSA v1 provenance and whose subjects are the
//     OCI image and every bootable file (cosign verify-blob-attestation);
//   - in the OCI layout, the image's signature and attestations (the
//     provenance and both SBOMs) as cosign's .sig and .att images, which
//     imgforge push sends along.
//
// Signatures are deterministic, so a signed build is as reproducible as
// an unsigned one.

// ProvenanceName is the signed provenance's file name in an output folder.
const ProvenanceName = "provenance.intoto.json"

// SigName is the signature of SHA256SUMS in an output folder.
const SigName = imagemeta.SumsName + ".sig"

// signedOutput is what signing needs from writeOutputs.
type signedOutput struct {
	dir         string
	arts        []imagemeta.Output // the outputs so far (paths relative to dir)
	spdx, cdx   []byte
	manifestRaw imagemeta.Manifest // its inputs, for the provenance
}

// signOutputs writes the provenance and, when the build has an OCI
// layout, the image's signature and attestations into it. It returns
// the provenance's output entry.
func (b *Builder) signOutputs(ctx context.Context, im *Image, j *outputJob, so signedOutput) (imagemeta.Output, error) {
	s := b.o.Signer
	p := im.Plan
	prov, err := provenance(p.Role, so.manifestRaw, b.o.ToolVersion)
	if err != nil {
		return imagemeta.Output{}, err
	}
	subjects := []sign.Subject{sign.NewSubject(p.Role+"@oci", j.digest)}
	for _, a := range so.arts {
		if a.Format != "oci" && a.Digest != "" {
			subjects = append(subjects, sign.NewSubject(a.Path, a.Digest))
		}
	}
	stmt, err := sign.NewStatement(sign.SLSAProvenanceV1, prov, subjects...)
	if err != nil {
		return imagemeta.Output{}, err
	}
	env, err := s.SignEnvelope(sign.InTotoPayloadType, stmt)
	if err != nil {
		return imagemeta.Output{}, fmt.Errorf("signing the provenance: %w", err)
	}
	a, err := writeHashed(ctx, filepath.Join(so.dir, ProvenanceName), func(w io.Writer) error { _, err := w.Write(append(env, '\n')); return err })
	if err != nil {
		return imagemeta.Output{}, err
	}
	a.Path, a.Format = ProvenanceName, "provenance"

	if !slices.Contains(j.formats, "oci") {
		return a, nil
	}
	atts := []oci.Attestation{{PredicateType: sign.SLSAProvenanceV1, Envelope: env}}
	for _, sb := range []struct {
		typ  string
		body []byte
	}{{sign.SPDXDocument, so.spdx}, {sign.CycloneDXBOM, so.cdx}} {
		st, err := sign.NewStatement(sb.typ, sb.body, sign.NewSubject(p.Role, j.digest))
		if err != nil {
			return imagemeta.Output{}, err
		}
		e, err := s.SignEnvelope(sign.InTotoPayloadType, st)
		if err != nil {
			return imagemeta.Output{}, fmt.Errorf("signing the SBOM attestation: %w", err)
		}
		atts = append(atts, oci.Attestation{PredicateType: sb.typ, Envelope: e})
	}
	sigs, err := oci.SignImage(j.img, p.Role, s, atts)
	if err != nil {
		return imagemeta.Output{}, err
	}
	ociDir := filepath.Join(so.dir, "oci")
	if err := sigs.AddToLayout(ociDir); err != nil {
		return imagemeta.Output{}, err
	}
	return a, nil
}

// provenance is the SLSA v1 predicate of a build: its plan, every input's
// digest (the plan, the stage keys, the layers), the apt releases it
// read, and the builder's versions.
func provenance(role string, m imagemeta.Manifest, tool string) ([]byte, error) {
	deps := []sign.ResourceDescriptor{{Name: "plan", Digest: digestMap(m.PlanDigest)}}
	for _, k := range slices.Sorted(maps.Keys(m.Inputs.StageKeys)) {
		deps = append(deps, sign.ResourceDescriptor{Name: "stage:" + k, Digest: digestMap(m.Inputs.StageKeys[k])})
	}
	for _, src := range slices.Sorted(maps.Keys(m.Inputs.Releases)) {
		uri := src
		if f := strings.Fields(src); len(f) >= 3 {
			uri = strings.TrimSuffix(f[1], "/") + "/dists/" + f[2] + "/InRelease"
		}
		deps = append(deps, sign.ResourceDescriptor{URI: uri, Name: src, Digest: digestMap(m.Inputs.Releases[src])})
	}
	for _, l := range m.Layers {
		deps = append(deps, sign.ResourceDescriptor{Name: "layer:" + l.Kind, Digest: digestMap(l.Digest)})
	}
	return sign.Provenance{
		BuildDefinition: sign.BuildDefinition{
			BuildType: sign.BuildType,
			ExternalParameters: map[string]any{
				"role": role, "image": m.Image, "plan": m.Inputs.Plan,
			},
			InternalParameters:   map[string]any{"source_date_epoch": m.Inputs.SourceDateEpoch},
			ResolvedDependencies: deps,
		},
		RunDetails: sign.RunDetails{Builder: sign.Builder{
			ID:      sign.BuilderID,
			Version: map[string]string{"imgforge": tool, "mmdebstrap": m.Inputs.Mmdebstrap},
		}},
	}.Marshal()
}

func digestMap(d string) map[string]string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok {
		return map[string]string{"sha256": d}
	}
	return map[string]string{algo: hex}
}

// signSums writes SigName, the signature of dir's SHA256SUMS.
func (b *Builder) signSums(dir string) (imagemeta.Output, error) {
	data, err := os.ReadFile(filepath.Join(dir, imagemeta.SumsName))
	if err != nil {
		return imagemeta.Output{}, err
	}
	sig, err := b.o.Signer.SignBlob(data)
	if err != nil {
		return imagemeta.Output{}, fmt.Errorf("signing %s: %w", imagemeta.SumsName, err)
	}
	sig = append(sig, '\n')
	if err := os.WriteFile(filepath.Join(dir, SigName), sig, 0o644); err != nil {
		return imagemeta.Output{}, err
	}
	return imagemeta.Output{Path: SigName, Format: "signature", Size: int64(len(sig)), Digest: digestOf(sig)}, nil
}
