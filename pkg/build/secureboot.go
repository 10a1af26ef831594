package build

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/plan"
)

// SecureBoot is the key a build signs its boot chain with, for UEFI
// Secure Boot: the boot loader (systemd-boot) and each slot's unified
// kernel image, whose signature covers the kernel command line and so the
// root hash. The firmware must trust Cert (in its db); docs/secure-boot.md
// says how to enrol it.
//
// Signing runs sbsign (Debian's sbsigntool): no Go module of the field
// signs Authenticode. sbsign stamps the signing time into the signature;
// libfaketime freezes it at SOURCE_DATE_EPOCH so that the same inputs give
// the same signed bytes (RSA PKCS#1 v1.5 signatures are deterministic).
type SecureBoot struct {
	Key, Cert string // PEM files: an unencrypted RSA private key, its X.509 certificate
	// ID is the sha256 of the certificate's DER: it names the key in the
	// manifest and in the inputs of an output folder.
	ID string
}

// LoadSecureBoot checks a Secure Boot key pair before any work: both
// files readable PEM, an unencrypted RSA key (what UEFI firmware
// verifies) and the certificate of that key.
func LoadSecureBoot(key, cert string) (*SecureBoot, error) {
	if key == "" || cert == "" {
		return nil, errors.New("a Secure Boot key needs both the private key and its certificate")
	}
	cb, err := os.ReadFile(cert)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	cblk, _ := pem.Decode(cb)
	if cblk == nil || cblk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certificate %s: not a PEM CERTIFICATE; accepted: an X.509 certificate in PEM, such as openssl req -x509 writes", cert)
	}
	c, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", cert, err)
	}
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("certificate %s: a %T key; accepted: RSA (2048 bits is what every UEFI firmware verifies)", cert, c.PublicKey)
	}
	kb, err := os.ReadFile(key)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	kblk, _ := pem.Decode(kb)
	if kblk == nil {
		return nil, fmt.Errorf("private key %s: not PEM; accepted: an unencrypted RSA private key in PEM (PKCS#1 or PKCS#8)", key)
	}
	if kblk.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(kblk.Headers["Proc-Type"], "ENCRYPTED") {
		return nil, fmt.Errorf("private key %s: encrypted; accepted: an unencrypted RSA private key (openssl pkey -in KEY -out PLAIN.key decrypts it)", key)
	}
	var priv crypto.PrivateKey
	switch kblk.Type {
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(kblk.Bytes)
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(kblk.Bytes)
	default:
		err = fmt.Errorf("a PEM %s", kblk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w; accepted: an unencrypted RSA private key in PEM (PKCS#1 or PKCS#8)", key, err)
	}
	rk, ok := priv.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key %s: a %T key; accepted: RSA", key, priv)
	}
	if !rk.PublicKey.Equal(pub) {
		return nil, fmt.Errorf("private key %s is not the key of certificate %s", key, cert)
	}
	// The tools, before any work too.
	if _, err := signingTools(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(c.Raw)
	return &SecureBoot{Key: key, Cert: cert, ID: "sha256:" + hex.EncodeToString(sum[:])}, nil
}

// faketimeLib is libfaketime (Debian's libfaketime package).
var faketimeLib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

// signingTools finds sbsign, and checks that libfaketime is there.
func signingTools() (sbsign string, err error) {
	if sbsign, err = exec.LookPath("sbsign"); err != nil {
		return "", errors.New("signing for Secure Boot needs sbsign (apt-get install sbsigntool)")
	}
	if _, err := os.Stat(faketimeLib); err != nil {
		return "", errors.New("signing for Secure Boot needs libfaketime, to stamp SOURCE_DATE_EPOCH as the signing time (apt-get install faketime)")
	}
	return sbsign, nil
}

// sign returns data (a PE image) signed by sbsign with the signing time
// frozen at epoch; tmp is a folder for the files sbsign reads and writes.
func (s *SecureBoot) sign(ctx context.Context, tmp, name string, data []byte, epoch int64) ([]byte, error) {
	sbsign, err := signingTools()
	if err != nil {
		return nil, err
	}
	in := filepath.Join(tmp, name+".unsigned")
	out := filepath.Join(tmp, name+".signed")
	defer os.Remove(in)
	defer os.Remove(out)
	if err := os.WriteFile(in, data, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, sbsign, "--key", s.Key, "--cert", s.Cert, "--output", out, in)
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "TZ=UTC", "LD_PRELOAD=" + faketimeLib,
		"FAKETIME=" + time.Unix(epoch, 0).UTC().Format("2006-01-02 15:04:05"),
		"FAKETIME_DONT_FAKE_MONOTONIC=1",
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("sbsign %s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return os.ReadFile(out)
}

// loadSecureBoot loads the Secure Boot keys the image definitions of
// plans name, before any work; --secure-boot-key overrides them.
func (b *Builder) loadSecureBoot(plans []*plan.Plan) error {
	if b.o.SecureBoot != nil {
		return nil
	}
	for _, p := range plans {
		sb := p.SecureBoot
		if sb.Key == "" {
			continue
		}
		k := sb.Key + "\x00" + sb.Cert
		if _, ok := b.secureBoot[k]; ok {
			continue
		}
		s, err := LoadSecureBoot(sb.Key, sb.Cert)
		if err != nil {
			where := p.SecureBootPos.File
			if l := p.SecureBootPos.Line; l > 0 {
				where = fmt.Sprintf("%s:%d:%d", where, l, p.SecureBootPos.Col)
			}
			return fmt.Errorf("%s: field %q: %w", where, "secure_boot", err)
		}
		if b.secureBoot == nil {
			b.secureBoot = map[string]*SecureBoot{}
		}
		b.secureBoot[k] = s
	}
	return nil
}

// secureBootFor is the Secure Boot key of p's bootable outputs:
// --secure-boot-key, else the image definition's secure_boot (loaded by
// Build), else nil: unsigned.
func (b *Builder) secureBootFor(p *plan.Plan) *SecureBoot {
	if b.o.SecureBoot != nil {
		return b.o.SecureBoot
	}
	if p.SecureBoot.Key == "" {
		return nil
	}
	return b.secureBoot[p.SecureBoot.Key+"\x00"+p.SecureBoot.Cert]
}

// secureBootID names p's Secure Boot key, "" for none.
func (b *Builder) secureBootID(p *plan.Plan) string {
	if s := b.secureBootFor(p); s != nil {
		return s.ID
	}
	return ""
}

// signedBoot signs the boot chain of a bootable output for Secure Boot,
// when p has a key: it returns systemd-boot signed, and sets each slot's
// UKI (the kernel, the initramfs and the overlay cpio, the slot's command
// line and the image's os-release), signed. Without a key it returns
// loader and leaves the slots as they are; a nil loader signs the UKIs
// alone.
func (b *Builder) signedBoot(ctx context.Context, im *Image, bt *Bootable, loader []byte, slots []*boot.Slot) ([]byte, error) {
	p := im.Plan
	sb := b.secureBootFor(p)
	if sb == nil {
		return loader, nil
	}
	if bt.Stub == "" {
		return nil, fmt.Errorf("role %s: Secure Boot needs systemd's EFI stub (/%s) in image %s: add systemd-boot-efi to its packages", p.Role, stubPath, p.Image)
	}
	stub, err := os.ReadFile(bt.Stub)
	if err != nil {
		return nil, err
	}
	tmp, err := b.o.Cache.TempDir("sbsign-")
	if err != nil {
		return nil, err
	}
	defer removeAllQuiet(tmp)
	osRelease := []byte(im.Docs["usr/lib/os-release"])
	for _, s := range slots {
		uki, err := boot.UKI(stub, s.Kernel, [][]byte{s.Initrd, s.Overlay}, s.Cmdline, osRelease)
		if err != nil {
			return nil, fmt.Errorf("role %s: the unified kernel image of slot %s: %w", p.Role, s.Name, err)
		}
		if s.UKI, err = sb.sign(ctx, tmp, "uki-"+s.Name, uki, p.SourceDateEpoch); err != nil {
			return nil, fmt.Errorf("role %s: %w", p.Role, err)
		}
	}
	if loader == nil {
		return nil, nil
	}
	signed, err := sb.sign(ctx, tmp, "systemd-boot", loader, p.SourceDateEpoch)
	if err != nil {
		return nil, fmt.Errorf("role %s: %w", p.Role, err)
	}
	return signed, nil
}
