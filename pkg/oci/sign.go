package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imgforge/imgforge/pkg/sign"
)

// RefNameAnnotation names an image in an OCI layout's index.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// SigTag and AttTag are cosign's tags for the signatures and the
// attestations of the image whose digest is d: sha256-HEX.sig and .att.
func SigTag(d v1.Hash) string { return d.Algorithm + "-" + d.Hex + ".sig" }

// AttTag is the tag of the attestations of the image whose digest is d.
func AttTag(d v1.Hash) string { return d.Algorithm + "-" + d.Hex + ".att" }

// IsSignatureTag tells whether a tag (or layout ref name) is one of
// SigTag's or AttTag's.
func IsSignatureTag(t string) bool {
	return strings.HasPrefix(t, "sha256-") && (strings.HasSuffix(t, ".sig") || strings.HasSuffix(t, ".att"))
}

// Attestation is one signed DSSE envelope for an attestation image.
type Attestation struct {
	PredicateType string
	Envelope      []byte
}

// Signatures are cosign's two images for a signed image: the signature
// (the simple-signing payload, signed) and the attestations (DSSE
// envelopes of in-toto statements). Both name the image as their OCI
// subject, so a registry with the referrers API lists them as its
// referrers; the .sig and .att tags are cosign's fallback, which cosign
// verify and verify-attestation read.
type Signatures struct {
	Subject      v1.Descriptor
	Signature    v1.Image
	Attestations v1.Image // nil when there are none
}

// SignImage makes img's Signatures: a signature of img's digest under
// the repository name ref (the simple-signing identity), and atts.
func SignImage(img v1.Image, ref string, s *sign.Signer, atts []Attestation) (*Signatures, error) {
	subject, err := partial.Descriptor(img)
	if err != nil {
		return nil, err
	}
	payload, err := sign.ImagePayload(ref, subject.Digest.String())
	if err != nil {
		return nil, err
	}
	sig, err := s.SignBlob(payload)
	if err != nil {
		return nil, fmt.Errorf("signing the image: %w", err)
	}
	sigImg, err := artifact(*subject, mutate.Addendum{
		Layer:       static.NewLayer(payload, sign.SimpleSigningMediaType),
		Annotations: map[string]string{sign.SignatureAnnotation: string(sig)},
	})
	if err != nil {
		return nil, err
	}
	out := &Signatures{Subject: *subject, Signature: sigImg}
	if len(atts) > 0 {
		var adds []mutate.Addendum
		for _, a := range atts {
			adds = append(adds, mutate.Addendum{
				Layer: static.NewLayer(a.Envelope, sign.DSSEMediaType),
				// cosign reads every layer of both images as a signature:
				// an envelope's signature is inside it, so the annotation
				// is empty, as cosign attest writes it.
				Annotations: map[string]string{sign.PredicateAnnotation: a.PredicateType, sign.SignatureAnnotation: ""},
			})
		}
		if out.Attestations, err = artifact(*subject, adds...); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func artifact(subject v1.Descriptor, adds ...mutate.Addendum) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, err
	}
	return mutate.Subject(img, subject).(v1.Image), nil
}

// AddToLayout adds the signature images to the OCI layout in dir, named
// by their cosign tags.
func (s *Signatures) AddToLayout(dir string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		return fmt.Errorf("opening OCI layout %s: %w", dir, err)
	}
	for _, x := range s.images() {
		if err := p.AppendImage(x.img, layout.WithAnnotations(map[string]string{RefNameAnnotation: x.tag})); err != nil {
			return fmt.Errorf("writing %s to the OCI layout %s: %w", x.tag, dir, err)
		}
	}
	return nil
}

type taggedImage struct {
	tag string
	img v1.Image
}

func (s *Signatures) images() []taggedImage {
	out := []taggedImage{{SigTag(s.Subject.Digest), s.Signature}}
	if s.Attestations != nil {
		out = append(out, taggedImage{AttTag(s.Subject.Digest), s.Attestations})
	}
	return out
}

// Push writes the signature images to repo under their cosign tags; each
// also becomes a referrer of the image (through the registry's referrers
// API, or the referrers tag schema where it has none).
func (s *Signatures) Push(ctx context.Context, repo name.Repository, opts ...remote.Option) ([]string, error) {
	var pushed []string
	for _, x := range s.images() {
		d, err := PushRef(ctx, repo.Tag(x.tag), x.img, opts...)
		if err != nil {
			return nil, err
		}
		pushed = append(pushed, d)
	}
	return pushed, nil
}

// ErrNotSigned is what reading the signatures of an unsigned image wraps.
var ErrNotSigned = errors.New("not signed")

// LayoutSignatures reads the signature images of the image with digest d
// from an OCI layout's index; Attestations is nil when there are none,
// and the error wraps ErrNotSigned when there is no signature.
func LayoutSignatures(idx v1.ImageIndex, d v1.Hash) (*Signatures, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	s := &Signatures{}
	for _, m := range im.Manifests {
		switch m.Annotations[RefNameAnnotation] {
		case SigTag(d):
			if s.Signature, err = idx.Image(m.Digest); err != nil {
				return nil, err
			}
		case AttTag(d):
			if s.Attestations, err = idx.Image(m.Digest); err != nil {
				return nil, err
			}
		}
		if m.Digest == d {
			s.Subject = m
		}
	}
	if s.Signature == nil {
		return nil, fmt.Errorf("image %s: %w: the layout has no %s", d, ErrNotSigned, SigTag(d))
	}
	return s, nil
}

// Verify checks the signatures with v: at least one signature layer of
// the image's digest, and every attestation envelope (each must also
// name the image among its statement's subjects). It returns the
// attestations' predicate types.
func (s *Signatures) Verify(v *sign.Verifier) ([]string, error) {
	d := s.Subject.Digest.String()
	layers, err := s.Signature.Layers()
	if err != nil {
		return nil, err
	}
	m, err := s.Signature.Manifest()
	if err != nil {
		return nil, err
	}
	var errs []error
	ok := false
	for i, l := range layers {
		payload, err := readLayer(l)
		if err != nil {
			return nil, err
		}
		if err := v.VerifyBlob(payload, []byte(m.Layers[i].Annotations[sign.SignatureAnnotation])); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := sign.CheckImagePayload(payload, d); err != nil {
			errs = append(errs, err)
			continue
		}
		ok = true
	}
	if !ok {
		if len(errs) == 0 {
			errs = append(errs, errors.New("the signature image has no layer"))
		}
		return nil, fmt.Errorf("image %s: %w", d, errors.Join(errs...))
	}
	if s.Attestations == nil {
		return nil, nil
	}
	layers, err = s.Attestations.Layers()
	if err != nil {
		return nil, err
	}
	var types []string
	for _, l := range layers {
		env, err := readLayer(l)
		if err != nil {
			return nil, err
		}
		pt, payload, err := v.OpenEnvelope(env)
		if err != nil {
			return nil, fmt.Errorf("attestation of image %s: %w", d, err)
		}
		st, err := sign.ParseStatement(pt, payload)
		if err != nil {
			return nil, fmt.Errorf("attestation of image %s: %w", d, err)
		}
		if !st.Covers(d) {
			return nil, fmt.Errorf("attestation %s does not name image %s", st.PredicateType, d)
		}
		types = append(types, st.PredicateType)
	}
	return types, nil
}

func readLayer(l v1.Layer) ([]byte, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 64<<20))
}
