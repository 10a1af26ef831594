package sign

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func pemKey(t *testing.T, typ string, key any) []byte {
	t.Helper()
	var der []byte
	var err error
	if typ == "EC PRIVATE KEY" {
		der, err = x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
	} else {
		der, err = x509.MarshalPKCS8PrivateKey(key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func keys(t *testing.T) map[string][]byte {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	return map[string][]byte{
		"ecdsa pkcs8": pemKey(t, "PRIVATE KEY", p256),
		"ecdsa sec1":  pemKey(t, "EC PRIVATE KEY", p256),
		"ed25519":     pemKey(t, "PRIVATE KEY", ed),
	}
}

// TestSignVerify: each accepted key signs blobs and envelopes that its
// public key (through its PEM) verifies, deterministically; another key
// and altered data do not verify.
func TestSignVerify(t *testing.T) {
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, err := ParseSigner(pemKey(t, "PRIVATE KEY", otherKey))
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range keys(t) {
		t.Run(name, func(t *testing.T) {
			s, err := ParseSigner(k)
			if err != nil {
				t.Fatal(err)
			}
			v, err := ParseVerifier(s.PublicKeyPEM())
			if err != nil {
				t.Fatal(err)
			}
			if v.ID != s.ID || !strings.HasPrefix(s.ID, "sha256:") {
				t.Errorf("ids %s and %s", v.ID, s.ID)
			}
			data := []byte("abc  lb.raw\n")
			sig, err := s.SignBlob(data)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := s.SignBlob(data)
			if string(sig) != string(again) {
				t.Error("two signatures of the same data differ")
			}
			if err := v.VerifyBlob(data, append(sig, '\n')); err != nil {
				t.Errorf("VerifyBlob: %v", err)
			}
			if err := v.VerifyBlob([]byte("abd  lb.raw\n"), sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("altered data: %v", err)
			}
			if err := other.Verifier().VerifyBlob(data, sig); !errors.Is(err, ErrBadSignature) {
				t.Errorf("another key: %v", err)
			}
			if err := v.VerifyBlob(data, []byte("not base64!")); !errors.Is(err, ErrBadSignature) {
				t.Errorf("garbage: %v", err)
			}

			st, err := NewStatement(SLSAProvenanceV1, []byte(`{"a":1}`), NewSubject("lb", "sha256:abcd"))
			if err != nil {
				t.Fatal(err)
			}
			env, err := s.SignEnvelope(InTotoPayloadType, st)
			if err != nil {
				t.Fatal(err)
			}
			pt, payload, err := v.OpenEnvelope(env)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseStatement(pt, payload)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Covers("sha256:abcd") || got.Covers("sha256:abce") || got.PredicateType != SLSAProvenanceV1 {
				t.Errorf("statement %+v", got)
			}
			if _, _, err := other.Verifier().OpenEnvelope(env); !errors.Is(err, ErrBadSignature) {
				t.Errorf("envelope, another key: %v", err)
			}
			// The payload type is signed too.
			var e Envelope
			json.Unmarshal(env, &e)
			e.PayloadType = "text/plain"
			bad, _ := json.Marshal(e)
			if _, _, err := v.OpenEnvelope(bad); !errors.Is(err, ErrBadSignature) {
				t.Errorf("envelope with another payload type: %v", err)
			}
		})
	}
}

// TestImagePayload: the payload names the digest it was made for.
func TestImagePayload(t *testing.T) {
	p, err := ImagePayload("lb", "sha256:1234")
	if err != nil {
		t.Fatal(err)
	}
	if ref, err := CheckImagePayload(p, "sha256:1234"); err != nil || ref != "lb" {
		t.Errorf("CheckImagePayload = %q, %v", ref, err)
	}
	if _, err := CheckImagePayload(p, "sha256:1235"); err == nil {
		t.Error("a payload of another digest passed")
	}
	want := `{"critical":{"identity":{"docker-reference":"lb"},"image":{"docker-manifest-digest":"sha256:1234"},"type":"cosign container image signature"},"optional":null}`
	if string(p) != want {
		t.Errorf("payload\n%s\nwant cosign's\n%s", p, want)
	}
}

// TestKeyErrors: keys that cannot sign are refused with what is accepted,
// and never echo the key.
func TestKeyErrors(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	secret := pemKey(t, "PRIVATE KEY", p256)
	for _, tc := range []struct {
		name, data, want string
	}{
		{"empty", "", "no PEM block"},
		{"p384", string(pemKey(t, "PRIVATE KEY", p384)), "accepted: P-256"},
		{"encrypted cosign key", "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n", "accepted"},
		{"public key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "accepted"},
		{"damaged", strings.Replace(string(secret), "M", "A", 3), "parsing the private key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			os.WriteFile(path, []byte(tc.data), 0o600)
			_, err := LoadSigner(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("LoadSigner: %v, want an error naming %s and %q", err, path, tc.want)
			}
			if len(tc.data) > 80 && strings.Contains(err.Error(), tc.data[40:60]) {
				t.Errorf("the error shows the key: %v", err)
			}
		})
	}
	if _, err := ParseVerifier(secret); err == nil {
		t.Error("a private key was taken for a public one")
	}
}
