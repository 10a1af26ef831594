package sign

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Media types and annotations of cosign's signature and attestation
// images (the .sig and .att tags).
const (
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	DSSEMediaType          = "application/vnd.dsse.envelope.v1+json"
	SignatureAnnotation    = "dev.cosignproject.cosign/signature"
	PredicateAnnotation    = "predicateType"
	InTotoPayloadType      = "application/vnd.in-toto+json"
	StatementType          = "https://in-toto.io/Statement/v1"
)

// Predicate types of the attestations imgforge writes; cosign
// verify-attestation --type slsaprovenance1, spdxjson and cyclonedx.
const (
	SLSAProvenanceV1 = "https://slsa.dev/provenance/v1"
	SPDXDocument     = "https://spdx.dev/Document"
	CycloneDXBOM     = "https://cyclonedx.org/bom"
)

// ImagePayload is the simple-signing payload cosign signs for an image:
// the image's manifest digest under the repository named by ref.
func ImagePayload(ref, digest string) ([]byte, error) {
	var p simpleSigning
	p.Critical.Identity.DockerReference = ref
	p.Critical.Image.DockerManifestDigest = digest
	p.Critical.Type = "cosign container image signature"
	return json.Marshal(p)
}

type simpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

// CheckImagePayload checks that payload is a signature payload for the
// image digest; it returns the payload's docker-reference.
func CheckImagePayload(payload []byte, digest string) (string, error) {
	var p simpleSigning
	if err := json.Unmarshal(payload, &p); err != nil {
		return "", fmt.Errorf("signature payload: %w", err)
	}
	if p.Critical.Type != "cosign container image signature" {
		return "", fmt.Errorf("signature payload of type %q", p.Critical.Type)
	}
	if p.Critical.Image.DockerManifestDigest != digest {
		return "", fmt.Errorf("signature payload for %s, not %s", p.Critical.Image.DockerManifestDigest, digest)
	}
	return p.Critical.Identity.DockerReference, nil
}

// Envelope is a DSSE envelope.
type Envelope struct {
	PayloadType string        `json:"payloadType"`
	Payload     string        `json:"payload"` // base64
	Signatures  []EnvelopeSig `json:"signatures"`
}

// EnvelopeSig is one signature of an Envelope.
type EnvelopeSig struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"` // base64
}

// pae is DSSE's pre-authentication encoding, what is signed.
func pae(payloadType string, payload []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
}

// SignEnvelope wraps payload in a DSSE envelope signed by s. The key id
// is left empty, as cosign leaves it.
func (s *Signer) SignEnvelope(payloadType string, payload []byte) ([]byte, error) {
	sig, err := s.Sign(pae(payloadType, payload))
	if err != nil {
		return nil, err
	}
	return json.Marshal(Envelope{
		PayloadType: payloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []EnvelopeSig{{Sig: base64.StdEncoding.EncodeToString(sig)}},
	})
}

// OpenEnvelope checks that one of the envelope's signatures is v's and
// returns its payload type and payload.
func (v *Verifier) OpenEnvelope(env []byte) (string, []byte, error) {
	var e Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		return "", nil, fmt.Errorf("DSSE envelope: %w", err)
	}
	payload, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		return "", nil, fmt.Errorf("DSSE envelope's payload: %w", err)
	}
	if len(e.Signatures) == 0 {
		return "", nil, fmt.Errorf("%w: the DSSE envelope has no signature", ErrBadSignature)
	}
	var errs []error
	for _, s := range e.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := v.Verify(pae(e.PayloadType, payload), sig); err != nil {
			errs = append(errs, err)
			continue
		}
		return e.PayloadType, payload, nil
	}
	return "", nil, errors.Join(errs...)
}

// Statement is an in-toto statement (v1).
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Subject is what a Statement is about.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// NewSubject is a subject named name whose digest is "sha256:HEX".
func NewSubject(name, digest string) Subject {
	return Subject{Name: name, Digest: map[string]string{"sha256": strings.TrimPrefix(digest, "sha256:")}}
}

// NewStatement returns the in-toto statement of predicate about subjects.
func NewStatement(predicateType string, predicate []byte, subjects ...Subject) ([]byte, error) {
	return json.Marshal(Statement{Type: StatementType, Subject: subjects, PredicateType: predicateType, Predicate: predicate})
}

// Covers tells whether the statement names digest ("sha256:HEX") among
// its subjects.
func (s Statement) Covers(digest string) bool {
	for _, sub := range s.Subject {
		if "sha256:"+sub.Digest["sha256"] == digest {
			return true
		}
	}
	return false
}

// ParseStatement reads the in-toto statement of an envelope's payload.
func ParseStatement(payloadType string, payload []byte) (Statement, error) {
	var s Statement
	if payloadType != InTotoPayloadType {
		return s, fmt.Errorf("payload type %q, not %q", payloadType, InTotoPayloadType)
	}
	if err := json.Unmarshal(payload, &s); err != nil {
		return s, fmt.Errorf("in-toto statement: %w", err)
	}
	if s.Type != StatementType && s.Type != "https://in-toto.io/Statement/v0.1" {
		return s, fmt.Errorf("in-toto statement of type %q", s.Type)
	}
	return s, nil
}
