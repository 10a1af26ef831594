//go:generate packer-sdc mapstructure-to-hcl2 -type Config
//go:generate packer-sdc struct-markdown

package imgforge

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/imgforge/imgforge/pkg/format"

	"github.com/hashicorp/packer-plugin-sdk/common"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"
	"github.com/hashicorp/packer-plugin-sdk/template/config"
	"github.com/hashicorp/packer-plugin-sdk/template/interpolate"
	"golang.org/x/sys/unix"

	"github.com/imgforge/imgforge/pkg/build"
	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/imgforge"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/sign"
	"github.com/imgforge/imgforge/pkg/spec"
)

// Config is the configuration of the imgforge builder. Every field has
// the meaning of the `imgforge build` flag of the same name, so a template
// and a command line with the same inputs give the same bytes.
type Config struct {
	common.PackerConfig `mapstructure:",squash"`

	// The role to build, such as `lb`, `web`, `app` or `db`.
	Role string `mapstructure:"role" required:"true"`
	// A folder of role definitions (`NAME.yaml`) that override the
	// embedded ones by name, like `imgforge build --roles`. Unlike the
	// command line, the builder does not look for `./roles` by itself.
	RolesDir string `mapstructure:"roles_dir"`
	// A folder of image definitions that override the embedded ones by
	// name, like `imgforge build --images`.
	ImagesDir string `mapstructure:"images_dir"`
	// Role options, like `imgforge build --set NAME=CHOICE`: for example
	// `{ runtime = "uwsgi" }` for the app role.
	Options map[string]string `mapstructure:"options"`
	// The outputs to write: any of `oci`, `docker-archive`, `raw`, `qcow2`, `vmdk`,
	// `vhd`, `gce`, `iso` and `pxe`. The image definition's outputs when empty.
	Formats []string `mapstructure:"formats"`
	// The folder the images are written to, one sub-folder per role;
	// `out` when empty. A role's sub-folder is replaced atomically.
	OutputDir string `mapstructure:"output_dir"`
	// SOURCE_DATE_EPOCH of the outputs. When zero, the environment's
	// `SOURCE_DATE_EPOCH`, else the image definition's.
	SourceDateEpoch int64 `mapstructure:"source_date_epoch"`
	// The Debian mirror URL. When empty, the image definition's, else the
	// host's configured Debian mirror.
	Mirror string `mapstructure:"mirror"`
	// imgforge's cache folder; `$XDG_CACHE_HOME/imgforge` when empty.
	CacheDir string `mapstructure:"cache_dir"`
	// The imgforge-agent binary every image carries. When empty, the
	// environment's `IMGFORGE_AGENT`, else `imgforge-agent` on `PATH`, as
	// for `imgforge build`.
	AgentPath string `mapstructure:"agent_path"`
	// A private key to sign the outputs with, like `imgforge build
	// --sign-key`: PEM, ECDSA P-256 or Ed25519; unencrypted, or the
	// `cosign.key` of `cosign generate-key-pair` with its password in
	// `COSIGN_PASSWORD`. It signs `SHA256SUMS` (`SHA256SUMS.sig`), the
	// provenance (`provenance.intoto.json`), and the OCI image (cosign's
	// signature and attestations). Unsigned when empty.
	SignKey string `mapstructure:"sign_key"`
	// An RSA private key (PEM, unencrypted) to sign the boot chain of the
	// bootable outputs with for UEFI Secure Boot, like `imgforge build
	// --secure-boot-key`: systemd-boot and a unified kernel image per
	// disk, whose signature covers the kernel command line and so the
	// root hash. Needs `secure_boot_cert`; overrides the image
	// definition's `secure_boot`. Unsigned when both are empty.
	SecureBootKey string `mapstructure:"secure_boot_key"`
	// The X.509 certificate (PEM) of `secure_boot_key`, which the
	// firmware's db must hold.
	SecureBootCert string `mapstructure:"secure_boot_cert"`

	ctx        interpolate.Context
	signer     *sign.Signer
	secureBoot *build.SecureBoot
}

// prepare decodes raws into c and checks it, using getenv for the
// environment. It resolves the role's plan, so that any mistake in the
// definitions shows at `packer validate` with its file, line and field.
// It writes nothing.
func (c *Config) prepare(getenv func(string) string, raws ...interface{}) (*plan.Plan, string, error) {
	err := config.Decode(c, &config.DecodeOpts{
		PluginType:         BuilderID,
		Interpolate:        true,
		InterpolateContext: &c.ctx,
	}, raws...)
	if err != nil {
		return nil, "", err
	}
	if c.OutputDir == "" {
		c.OutputDir = "out"
	}
	var errs *packersdk.MultiError
	if c.Role == "" {
		errs = packersdk.MultiErrorAppend(errs, errors.New("role: required, such as \"lb\""))
	}
	for _, f := range c.Formats {
		if err := format.Check(f); err != nil {
			errs = packersdk.MultiErrorAppend(errs, fmt.Errorf("formats: %w", err))
		}
	}
	if c.SourceDateEpoch < 0 {
		errs = packersdk.MultiErrorAppend(errs, fmt.Errorf("source_date_epoch: %d is not a positive Unix time", c.SourceDateEpoch))
	}
	if err := checkWritable(c.OutputDir); err != nil {
		errs = packersdk.MultiErrorAppend(errs, fmt.Errorf("output_dir: %w", err))
	}
	cacheDir := c.CacheDir
	if cacheDir == "" {
		if cacheDir, err = cache.DefaultDir(getenv); err != nil {
			errs = packersdk.MultiErrorAppend(errs, errors.New("cache_dir: not set, and neither XDG_CACHE_HOME nor HOME is set in the environment"))
		}
	}
	if c.SignKey != "" {
		if c.signer, err = sign.LoadSigner(c.SignKey); err != nil {
			errs = packersdk.MultiErrorAppend(errs, fmt.Errorf("sign_key: %w", err))
		}
	}
	if c.SecureBootKey != "" || c.SecureBootCert != "" {
		if c.SecureBootKey == "" || c.SecureBootCert == "" {
			errs = packersdk.MultiErrorAppend(errs, errors.New("secure_boot_key and secure_boot_cert go together: set both"))
		} else if c.secureBoot, err = build.LoadSecureBoot(c.SecureBootKey, c.SecureBootCert); err != nil {
			errs = packersdk.MultiErrorAppend(errs, fmt.Errorf("secure_boot_key: %w", err))
		}
	}
	mirrorOK := true
	if c.Mirror != "" {
		if err := spec.CheckMirror(c.Mirror); err != nil {
			errs = packersdk.MultiErrorAppend(errs, fmt.Errorf("mirror: %w", err))
			mirrorOK = false
		}
	}
	var p *plan.Plan
	if c.Role != "" && mirrorOK {
		p, err = c.resolve(getenv)
		if err != nil {
			errs = packersdk.MultiErrorAppend(errs, err)
		}
	}
	if errs != nil && len(errs.Errors) > 0 {
		return nil, "", errs
	}
	return p, cacheDir, nil
}

// resolve loads the definitions and resolves the role, filling the plan
// options exactly as `imgforge build` does.
func (c *Config) resolve(getenv func(string) string) (*plan.Plan, error) {
	opts, err := imgforge.ResolveOptions(imgforge.Settings{
		Set: c.Options, SourceDateEpoch: c.SourceDateEpoch, Mirror: c.Mirror, AgentPath: c.AgentPath,
	}, getenv, os.DirFS("/"))
	if se, ok := imgforge.AsSettingError(err); ok {
		field := map[string]string{imgforge.SettingAgent: "agent_path"}[se.Setting]
		if field == "" {
			field = se.Setting // mirror, source_date_epoch: the template's names
		}
		return nil, fmt.Errorf("%s: %w", field, se.Err)
	} else if err != nil {
		return nil, err
	}
	cat, err := imgforge.Catalog(c.RolesDir, c.ImagesDir)
	if err != nil {
		return nil, err
	}
	plans, err := imgforge.Plans(cat, []string{c.Role}, opts)
	if err != nil {
		return nil, err
	}
	return plans[0], nil
}

// checkWritable tells whether dir could be made and written to, without
// making it: its nearest existing ancestor must be a folder the process
// may write to (access(2), which also sees read-only file systems).
func checkWritable(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := abs; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if (errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR)) && p != filepath.Dir(p) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s cannot be created: %w", dir, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s cannot be created: %s is not a folder", dir, p)
		}
		if err := unix.Access(p, unix.W_OK|unix.X_OK); err != nil {
			if p == abs {
				return fmt.Errorf("%s is not writable: %w", dir, err)
			}
			return fmt.Errorf("%s cannot be created: %s is not writable: %w", dir, p, err)
		}
		return nil
	}
}
