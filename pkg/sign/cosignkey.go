package sign

import (
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/scrypt"
)

// cosign generate-key-pair writes its private key as a PEM block of type
// "ENCRYPTED SIGSTORE PRIVATE KEY" whose bytes are JSON: the PKCS #8 key
// sealed with NaCl secretbox under a key derived from the password with
// scrypt (go-securesystemslib's "encrypted" format).
type cosignSealed struct {
	KDF struct {
		Name   string `json:"name"`
		Params struct {
			N int `json:"N"`
			R int `json:"r"`
			P int `json:"p"`
		} `json:"params"`
		Salt []byte `json:"salt"`
	} `json:"kdf"`
	Cipher struct {
		Name  string `json:"name"`
		Nonce []byte `json:"nonce"`
	} `json:"cipher"`
	Ciphertext []byte `json:"ciphertext"`
}

// decryptCosignKey opens a cosign-encrypted private key with password.
func decryptCosignKey(data []byte, password string) ([]byte, error) {
	var s cosignSealed
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("reading the encrypted cosign key: %w", err)
	}
	if s.KDF.Name != "scrypt" || s.Cipher.Name != "nacl/secretbox" {
		return nil, fmt.Errorf("encrypted cosign key with %s and %s; accepted: scrypt and nacl/secretbox", s.KDF.Name, s.Cipher.Name)
	}
	// cosign's own parameters are N=32768, r=8, p=1; refuse what would
	// take more memory or time than 16 times that.
	if p := s.KDF.Params; p.N < 2 || p.N > 1<<19 || p.R < 1 || p.R > 8 || p.P < 1 || p.P > 4 {
		return nil, fmt.Errorf("encrypted cosign key: scrypt parameters N=%d r=%d p=%d are out of range", p.N, p.R, p.P)
	}
	if len(s.Cipher.Nonce) != 24 {
		return nil, errors.New("encrypted cosign key: the nonce is not 24 bytes")
	}
	k, err := scrypt.Key([]byte(password), s.KDF.Salt, s.KDF.Params.N, s.KDF.Params.R, s.KDF.Params.P, 32)
	if err != nil {
		return nil, fmt.Errorf("encrypted cosign key: %w", err)
	}
	var key [32]byte
	var nonce [24]byte
	copy(key[:], k)
	copy(nonce[:], s.Cipher.Nonce)
	der, ok := secretbox.Open(nil, s.Ciphertext, &nonce, &key)
	if !ok {
		if password == "" {
			return nil, fmt.Errorf("the cosign key is encrypted: give its password in %s", PasswordEnv)
		}
		return nil, fmt.Errorf("the cosign key does not open with the password in %s", PasswordEnv)
	}
	return der, nil
}
