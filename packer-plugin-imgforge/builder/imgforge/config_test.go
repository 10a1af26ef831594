package imgforge

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/build"
	"github.com/imgforge/imgforge/pkg/format"
	"github.com/imgforge/imgforge/pkg/sign"
)

// env is a fake environment.
func env(kv ...string) func(string) string {
	m := map[string]string{"IMGFORGE_AGENT": os.Getenv("IMGFORGE_AGENT")}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestPrepare(t *testing.T) {
	tmp := t.TempDir()
	file := filepath.Join(tmp, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	badRoles := filepath.Join(tmp, "roles")
	os.Mkdir(badRoles, 0o755)
	os.WriteFile(filepath.Join(badRoles, "lb.yaml"), []byte("name: lb\npakages: [haproxy]\n"), 0o644)
	out := filepath.Join(tmp, "out")

	for _, tc := range []struct {
		name   string
		config map[string]interface{}
		env    []string
		want   string // a part of the error; "" for none
	}{
		{name: "lb", config: map[string]interface{}{"role": "lb"}},
		{name: "every field", config: map[string]interface{}{
			"role": "app", "options": map[string]string{"runtime": "uwsgi"}, "formats": []string{"oci", "qcow2"},
			"source_date_epoch": 1700000000, "mirror": "http://deb.example.org/debian", "cache_dir": tmp,
		}},
		{name: "no role", config: map[string]interface{}{}, want: `role: required`},
		{name: "sign key missing", config: map[string]interface{}{"role": "lb", "sign_key": filepath.Join(tmp, "nokey.pem")},
			want: "sign_key: signing key: open " + filepath.Join(tmp, "nokey.pem")},
		{name: "sign key not a key", config: map[string]interface{}{"role": "lb", "sign_key": file},
			want: "sign_key: signing key " + file + ": no PEM block; accepted: an ECDSA P-256 or Ed25519 private key"},
		{name: "unknown role", config: map[string]interface{}{"role": "nope"}, want: `role "nope": known roles: app, db, lb, web`},
		{name: "bad format", config: map[string]interface{}{"role": "lb", "formats": []string{"oci", "vdi"}},
			want: `formats: unknown output format "vdi"; known: oci, docker-archive, raw, qcow2, vmdk, vhd, gce, iso`},
		{name: "output dir under a file", config: map[string]interface{}{"role": "lb", "output_dir": filepath.Join(file, "out")},
			want: "output_dir: " + filepath.Join(file, "out") + " cannot be created: " + file + " is not a folder"},
		{name: "output dir is a file", config: map[string]interface{}{"role": "lb", "output_dir": file},
			want: "output_dir: " + file + " cannot be created: " + file + " is not a folder"},
		{name: "unknown option", config: map[string]interface{}{"role": "lb", "options": map[string]string{"runtime": "uwsgi"}},
			want: `role lb has no option "runtime"; its options: none`},
		{name: "bad option choice", config: map[string]interface{}{"role": "app", "options": map[string]string{"runtime": "cgi"}},
			want: `role app option runtime: "cgi" is not a choice; accepted: php-fpm, uwsgi`},
		{name: "missing roles folder", config: map[string]interface{}{"role": "lb", "roles_dir": filepath.Join(tmp, "none")},
			want: "roles folder: "},
		{name: "bad role file", config: map[string]interface{}{"role": "lb", "roles_dir": badRoles},
			want: filepath.Join(badRoles, "lb.yaml") + `:2:1: field "pakages": unknown field here`},
		{name: "negative epoch", config: map[string]interface{}{"role": "lb", "source_date_epoch": -1},
			want: "source_date_epoch: -1 is not a positive Unix time"},
		{name: "bad epoch in the environment", config: map[string]interface{}{"role": "lb"}, env: []string{"SOURCE_DATE_EPOCH", "yesterday"},
			want: `SOURCE_DATE_EPOCH="yesterday" in the environment is not a positive Unix time`},
		{name: "no cache folder", config: map[string]interface{}{"role": "lb"}, env: []string{"HOME", ""},
			want: "cache_dir: not set, and neither XDG_CACHE_HOME nor HOME is set"},
		// Issue 11, finding 3: the same check as the image definition's and --mirror's.
		{name: "mirror newline", config: map[string]interface{}{"role": "lb", "mirror": "http://m.test/debian\ndeb [trusted=yes] http://evil.test/ bookworm main"},
			want: "mirror: the mirror URL holds whitespace or a control character; accepted: an http:// or https:// URL"},
		{name: "mirror file", config: map[string]interface{}{"role": "lb", "mirror": "file:///srv/debian"},
			want: "mirror: the mirror URL is not an http:// or https:// URL"},
		{name: "unknown field", config: map[string]interface{}{"role": "lb", "output_directory": "x"},
			want: "output_directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := tc.config["output_dir"]; !ok {
				tc.config["output_dir"] = out
			}
			b := &Builder{getenv: env(append([]string{"HOME", tmp}, tc.env...)...)}
			_, warns, err := b.Prepare(tc.config)
			if len(warns) > 0 {
				t.Errorf("warnings: %v", warns)
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Prepare: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("Prepare gave no error, want one with %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("Prepare error:\n%v\nwant it to contain:\n%s", err, tc.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("Prepare made %s; it must write nothing", out)
			}
		})
	}
}

// TestPrepareReadOnlyOutputDir needs a user that file modes apply to.
func TestPrepareReadOnlyOutputDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes into read-only folders; see the 'output dir under a file' case")
	}
	ro := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(ro, 0o555)
	for _, dir := range []string{ro, filepath.Join(ro, "out")} {
		_, _, err := (&Builder{getenv: env("HOME", "/home/u")}).Prepare(map[string]interface{}{"role": "lb", "output_dir": dir})
		if err == nil || !strings.Contains(err.Error(), "not writable") {
			t.Errorf("output_dir %s: error %v, want 'not writable'", dir, err)
		}
	}
}

// TestPrepareInputs checks the inputs that make the bytes: the same
// choices as the command line's, environment included.
func TestPrepareInputs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		config    map[string]interface{}
		env       []string
		wantEpoch int64
		wantCache string
	}{
		{"image's epoch", map[string]interface{}{}, nil, 1735689600, "/home/u/.cache/imgforge"},
		{"environment's epoch", map[string]interface{}{}, []string{"SOURCE_DATE_EPOCH", "1700000000"}, 1700000000, "/home/u/.cache/imgforge"},
		{"template's epoch wins", map[string]interface{}{"source_date_epoch": 1600000000}, []string{"SOURCE_DATE_EPOCH", "1700000000"}, 1600000000, "/home/u/.cache/imgforge"},
		{"XDG cache", map[string]interface{}{}, []string{"XDG_CACHE_HOME", "/xdg"}, 1735689600, "/xdg/imgforge"},
		{"cache_dir", map[string]interface{}{"cache_dir": "/c"}, nil, 1735689600, "/c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.config["role"] = "lb"
			tc.config["output_dir"] = t.TempDir()
			b := &Builder{getenv: env(append([]string{"HOME", "/home/u"}, tc.env...)...)}
			if _, _, err := b.Prepare(tc.config); err != nil {
				t.Fatal(err)
			}
			if b.plan.Role != "lb" || b.plan.SourceDateEpoch != tc.wantEpoch {
				t.Errorf("plan role %s epoch %d, want lb %d", b.plan.Role, b.plan.SourceDateEpoch, tc.wantEpoch)
			}
			if b.cacheDir != tc.wantCache {
				t.Errorf("cache dir %s, want %s", b.cacheDir, tc.wantCache)
			}
		})
	}
}

func TestPrepareMirror(t *testing.T) {
	b := &Builder{getenv: env("HOME", "/home/u")}
	_, _, err := b.Prepare(map[string]interface{}{"role": "lb", "output_dir": t.TempDir(), "mirror": "http://deb.example.org/debian"})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.plan.Distribution.Mirror; got != "http://deb.example.org/debian" {
		t.Errorf("mirror %s", got)
	}
}

// TestFormatsDocumented checks that the docs of the formats field (made
// from config.go's comment by packer-sdc) name every format imgforge
// writes, so that a format added to pkg/format shows up here.
func TestFormatsDocumented(t *testing.T) {
	for _, doc := range []string{"config.go", "../../docs-partials/builder/imgforge/Config-not-required.mdx", "../../.web-docs/components/builder/imgforge/README.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		i := strings.Index(text, "The outputs to write:")
		if i < 0 {
			t.Fatalf("%s: no docs of the formats field", doc)
		}
		para := text[i:]
		if j := strings.Index(para, "outputs when empty."); j >= 0 {
			para = para[:j]
		}
		for _, f := range format.Names() {
			if !strings.Contains(para, "`"+f+"`") {
				t.Errorf("%s: the docs of formats do not name `%s`", doc, f)
			}
		}
	}
}

// TestPrepareSignKey: sign_key loads the key that the build then signs
// with, as imgforge build --sign-key does.
func TestPrepareSignKey(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	path := filepath.Join(t.TempDir(), "key.pem")
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	b := &Builder{getenv: env("HOME", t.TempDir())}
	if _, _, err := b.Prepare(map[string]interface{}{"role": "lb", "output_dir": t.TempDir(), "sign_key": path}); err != nil {
		t.Fatal(err)
	}
	want, _ := sign.LoadSigner(path)
	if b.config.signer == nil || b.config.signer.ID != want.ID {
		t.Errorf("signer %+v, want the key of %s", b.config.signer, path)
	}
}

// TestPrepareSecureBoot: secure_boot_key and secure_boot_cert load the
// key pair the build signs the boot chain with, as imgforge build
// --secure-boot-key does; one without the other, or a key that is not
// the certificate's, fails at packer validate.
func TestPrepareSecureBoot(t *testing.T) {
	dir := t.TempDir()
	writePair := func(name string) (string, string) {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Unix(0, 0), NotAfter: time.Unix(4e9, 0)}
		cder, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		kp, cp := filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pem")
		os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
		os.WriteFile(cp, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cder}), 0o644)
		return kp, cp
	}
	key, cert := writePair("db")
	otherKey, _ := writePair("other")
	b := &Builder{getenv: env("HOME", t.TempDir())}
	if _, _, err := b.Prepare(map[string]interface{}{"role": "lb", "output_dir": t.TempDir(), "secure_boot_key": key, "secure_boot_cert": cert}); err != nil {
		t.Fatal(err)
	}
	want, _ := build.LoadSecureBoot(key, cert)
	if b.config.secureBoot == nil || b.config.secureBoot.ID != want.ID {
		t.Errorf("secure boot %+v, want the key pair of %s", b.config.secureBoot, cert)
	}
	for _, tt := range []struct {
		name string
		cfg  map[string]interface{}
		want string
	}{
		{"key alone", map[string]interface{}{"secure_boot_key": key}, "secure_boot_key and secure_boot_cert go together"},
		{"other key", map[string]interface{}{"secure_boot_key": otherKey, "secure_boot_cert": cert}, "secure_boot_key: private key " + otherKey + " is not the key of certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg["role"], tt.cfg["output_dir"] = "lb", t.TempDir()
			b := &Builder{getenv: env("HOME", t.TempDir())}
			if _, _, err := b.Prepare(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want %q", err, tt.want)
			}
		})
	}
}
