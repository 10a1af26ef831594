// Package sign signs imgforge's outputs in the formats cosign reads:
// blob signatures (cosign sign-blob: base64 of the signature), the
// simple-signing payload of a container image signature, and DSSE
// envelopes holding in-toto statements (attestations).
//
// Keys are PEM files: an ECDSA P-256 key (PKCS #8 or SEC 1, as openssl
// and cosign write them) or an Ed25519 key (PKCS #8). Signatures are
// deterministic (ECDSA per RFC 6979, Ed25519 by design), so the same
// inputs and key give the same bytes, as every other output does.
// Keyless signing (Fulcio, Rekor) needs a network and is not offered.
package sign

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// Signer signs with one private key.
type Signer struct {
	key crypto.Signer
	// ID names the key without revealing it: "sha256:" and the hex
	// SHA-256 of the public key's PKIX DER encoding.
	ID string
}

// Verifier checks signatures made with one key.
type Verifier struct {
	pub crypto.PublicKey
	ID  string
}

// ErrBadSignature is what a signature that does not verify wraps.
var ErrBadSignature = errors.New("signature does not verify")

// PasswordEnv holds the password of an encrypted cosign key, as for cosign.
const PasswordEnv = "COSIGN_PASSWORD"

func accepted(what string) string {
	return what + "; accepted: an ECDSA P-256 or Ed25519 private key in PEM: PKCS #8 \"PRIVATE KEY\" or SEC 1 \"EC PRIVATE KEY\" (openssl genpkey), or cosign's \"ENCRYPTED SIGSTORE PRIVATE KEY\" (cosign generate-key-pair) with its password in " + PasswordEnv
}

// LoadSigner reads a private key from a PEM file. Errors name the file,
// never the key's contents.
func LoadSigner(path string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	s, err := ParseSigner(data)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return s, nil
}

// ParseSigner reads a private key from PEM data.
func ParseSigner(data []byte) (*Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, errors.New(accepted("no PEM block"))
	}
	var key any
	var err error
	switch b.Type {
	case "ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY":
		der, derr := decryptCosignKey(b.Bytes, os.Getenv(PasswordEnv))
		if derr != nil {
			return nil, derr
		}
		key, err = x509.ParsePKCS8PrivateKey(der)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return nil, errors.New(accepted(fmt.Sprintf("PEM block %q", b.Type)))
	}
	if err != nil {
		return nil, fmt.Errorf("parsing the private key: %w", err)
	}
	var signer crypto.Signer
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ECDSA key on %s; accepted: P-256", k.Curve.Params().Name)
		}
		signer = k
	case ed25519.PrivateKey:
		signer = k
	default:
		return nil, fmt.Errorf("a %T; accepted: ECDSA P-256 or Ed25519", key)
	}
	id, err := keyID(signer.Public())
	if err != nil {
		return nil, err
	}
	return &Signer{key: signer, ID: id}, nil
}

// LoadVerifier reads a public key from a PEM file ("PUBLIC KEY", PKIX),
// as cosign writes cosign.pub.
func LoadVerifier(path string) (*Verifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	v, err := ParseVerifier(data)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return v, nil
}

// ParseVerifier reads a public key from PEM data.
func ParseVerifier(data []byte) (*Verifier, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" {
		return nil, errors.New("no \"PUBLIC KEY\" PEM block; accepted: an ECDSA P-256 or Ed25519 public key in PEM (PKIX), as cosign.pub or openssl pkey -pubout")
	}
	pub, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parsing the public key: %w", err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ECDSA key on %s; accepted: P-256", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("a %T; accepted: ECDSA P-256 or Ed25519", pub)
	}
	id, err := keyID(pub)
	if err != nil {
		return nil, err
	}
	return &Verifier{pub: pub, ID: id}, nil
}

func keyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encoding the public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// PublicKeyPEM is the signer's public key as cosign.pub holds it.
func (s *Signer) PublicKeyPEM() []byte {
	der, err := x509.MarshalPKIXPublicKey(s.key.Public())
	if err != nil {
		panic(err) // the key was parsed from PKIX-encodable types
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Verifier is the signer's own public key.
func (s *Signer) Verifier() *Verifier {
	return &Verifier{pub: s.key.Public(), ID: s.ID}
}

// Sign signs data as sigstore's verifiers check it: ECDSA over the
// SHA-256 of data (ASN.1 DER), Ed25519 over data itself.
func (s *Signer) Sign(data []byte) ([]byte, error) {
	switch k := s.key.(type) {
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256(data)
		// A nil rand makes the signature deterministic (RFC 6979).
		return k.Sign(nil, sum[:], crypto.SHA256)
	case ed25519.PrivateKey:
		return ed25519.Sign(k, data), nil
	}
	return nil, fmt.Errorf("unsupported key %T", s.key)
}

// Verify checks sig over data.
func (v *Verifier) Verify(data, sig []byte) error {
	ok := false
	switch k := v.pub.(type) {
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(data)
		ok = ecdsa.VerifyASN1(k, sum[:], sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, data, sig)
	}
	if !ok {
		return fmt.Errorf("%w with key %s", ErrBadSignature, v.ID)
	}
	return nil
}

// SignBlob is cosign sign-blob's output for data: the base64 of its
// signature, which cosign verify-blob --signature reads.
func (s *Signer) SignBlob(data []byte) ([]byte, error) {
	sig, err := s.Sign(data)
	if err != nil {
		return nil, err
	}
	return []byte(base64.StdEncoding.EncodeToString(sig)), nil
}

// VerifyBlob checks a SignBlob signature (base64, surrounding white space
// allowed) over data.
func (v *Verifier) VerifyBlob(data, sigB64 []byte) error {
	sig, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(sigB64)))
	if err != nil {
		return fmt.Errorf("%w: not base64: %w", ErrBadSignature, err)
	}
	return v.Verify(data, sig)
}
