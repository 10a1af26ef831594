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
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/internal/testtool"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
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
		{"encrypted cosign key", "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n", "reading the encrypted cosign key"},
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

// sealCosign encrypts a PKCS #8 key as cosign generate-key-pair does.
func sealCosign(t *testing.T, der []byte, password string) []byte {
	t.Helper()
	var s cosignSealed
	s.KDF.Name, s.Cipher.Name = "scrypt", "nacl/secretbox"
	s.KDF.Params.N, s.KDF.Params.R, s.KDF.Params.P = 32768, 8, 1
	s.KDF.Salt = make([]byte, 32)
	s.Cipher.Nonce = make([]byte, 24)
	rand.Read(s.KDF.Salt)
	rand.Read(s.Cipher.Nonce)
	k, err := scrypt.Key([]byte(password), s.KDF.Salt, 32768, 8, 1, 32)
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	var nonce [24]byte
	copy(key[:], k)
	copy(nonce[:], s.Cipher.Nonce)
	s.Ciphertext = secretbox.Seal(nil, der, &nonce, &key)
	j, _ := json.Marshal(s)
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED SIGSTORE PRIVATE KEY", Bytes: j})
}

// TestEncryptedCosignKey: a key as cosign generate-key-pair writes it
// opens with the password in COSIGN_PASSWORD, and not without it or with
// another; the error never shows the password.
func TestEncryptedCosignKey(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	path := filepath.Join(t.TempDir(), "cosign.key")
	os.WriteFile(path, sealCosign(t, der, "hunter2-correct"), 0o600)
	t.Setenv(PasswordEnv, "hunter2-correct")
	s, err := LoadSigner(path)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := keyID(&k.PublicKey); s.ID != want {
		t.Errorf("key %s, want %s", s.ID, want)
	}
	for pw, want := range map[string]string{"": "is encrypted: give its password in COSIGN_PASSWORD", "wrong-password": "does not open with the password in COSIGN_PASSWORD"} {
		t.Setenv(PasswordEnv, pw)
		_, err := LoadSigner(path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("password %q: %v, want %q", pw, err, want)
		} else if pw != "" && strings.Contains(err.Error(), pw) {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

// TestCosignGeneratedKey: the real cosign's generate-key-pair makes a key
// that imgforge signs with, and cosign verify-blob accepts the signature.
func TestCosignGeneratedKey(t *testing.T) {
	cosign, err := testtool.Path("cosign", "COSIGN")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	t.Setenv(PasswordEnv, "pw-for-test")
	cmd := exec.Command(cosign, "generate-key-pair")
	cmd.Dir = dir
	cmd.Env = testtool.CosignEnv(t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	s, err := LoadSigner(filepath.Join(dir, "cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(dir, "SHA256SUMS")
	os.WriteFile(blob, []byte("abcd  lb.raw\n"), 0o644)
	sig, _ := s.SignBlob([]byte("abcd  lb.raw\n"))
	os.WriteFile(blob+".sig", sig, 0o644)
	cmd = exec.Command(cosign, "verify-blob", "--key", filepath.Join(dir, "cosign.pub"), "--signature", blob+".sig", "--insecure-ignore-tlog=true", blob)
	cmd.Env = testtool.CosignEnv(t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("cosign verify-blob: %v\n%s", err, out)
	}
}
