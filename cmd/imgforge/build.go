package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/imgforge/imgforge/pkg/format"
	"github.com/imgforge/imgforge/pkg/sign"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/units"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/build"
	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/imgforge"
)

func newBuildCmd(c *common) *cobra.Command {
	var (
		outDir   string
		formats  []string
		verbose  bool
		noCache  bool
		signKey  string
		sbKey    string
		sbCert   string
		progMode string
	)
	cmd := &cobra.Command{
		Use:   "build ROLE...",
		Short: "Build the images of one or more roles",
		Example: `  imgforge build lb
  imgforge build lb web app db --output-dir out --format oci
  imgforge build app --set runtime=uwsgi --output json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, f := range formats {
				if err := format.Check(f); err != nil {
					return usage(fmt.Errorf("--format: %w", err))
				}
			}
			if err := checkProgress(progMode); err != nil {
				return err
			}
			var signer *sign.Signer
			if signKey != "" {
				// Before any work: a bad key costs no build.
				var err error
				if signer, err = sign.LoadSigner(signKey); err != nil {
					return fmt.Errorf("--sign-key: %w", err)
				}
			}
			var secureBoot *build.SecureBoot
			if sbKey != "" || sbCert != "" {
				if sbKey == "" || sbCert == "" {
					return usage(errors.New("--secure-boot-key and --secure-boot-cert go together: give both"))
				}
				var err error
				if secureBoot, err = build.LoadSecureBoot(sbKey, sbCert); err != nil {
					return fmt.Errorf("--secure-boot-key: %w", err)
				}
			}
			plans, err := c.plans(args)
			if err != nil {
				return err
			}
			cacheDir, err := c.cachePath()
			if err != nil {
				return err
			}
			var stages []roleStages
			for _, p := range plans {
				fs := formats
				if len(fs) == 0 {
					fs = p.Outputs
				}
				if n, err := build.StagesOf(fs); err == nil {
					stages = append(stages, roleStages{Role: p.Role, Stages: n})
				}
			}
			var estimates map[string]map[string]float64
			if cc, err := cache.Peek(cacheDir); err == nil {
				estimates = cc.StageEstimates()
			}
			prog, stop := newProgress(cmd.ErrOrStderr(), progMode, stages, estimates)
			defer stop()
			req := imgforge.BuildRequest{
				Plans: plans, CacheDir: cacheDir, OutputDir: outDir, Formats: formats,
				Progress: prog, Rootless: os.Geteuid() != 0, NoCache: noCache, Signer: signer,
				SecureBoot: secureBoot,
			}
			if verbose {
				req.Log = cmd.ErrOrStderr()
			}
			results, err := imgforge.Build(cmd.Context(), req)
			if err != nil {
				return err
			}
			if c.output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Results []*imagemeta.Result `json:"results"`
					Stages  []build.StageTime   `json:"stages"`
				}{results, prog.Timings()})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			for _, r := range results {
				fmt.Fprintf(tw, "%s\t%s\t%.1fs\n", r.Role, r.ImageDigest, r.Seconds)
				for _, a := range r.Artifacts {
					fmt.Fprintf(tw, "  %s\t%s\t%s\n", a.Path, units.Bytes(a.Size), a.Digest)
				}
			}
			return tw.Flush()
		},
	}
	c.addDefinitionFlags(cmd)
	c.addCacheFlag(cmd)
	cmd.Flags().StringVar(&outDir, "output-dir", "out", "folder the images are written to, one sub-folder per role")
	cmd.Flags().StringSliceVar(&formats, "format", nil, "output formats: "+format.List()+" (default: the image definition's outputs)")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show the output of mmdebstrap and apt")
	cmd.Flags().StringVar(&progMode, "progress", progressAuto, "progress display: auto (a redrawn line on a terminal, else plain), plain (log lines, and a heartbeat every 30 s), quiet")
	cmd.Flags().StringVar(&signKey, "sign-key", "", "sign the outputs with this private key (PEM: ECDSA P-256 or Ed25519; unencrypted, or cosign generate-key-pair's cosign.key with its password in COSIGN_PASSWORD): SHA256SUMS.sig, provenance.intoto.json, and the OCI image's cosign signature and attestations (SLSA provenance, SPDX, CycloneDX); imgforge verify --key and cosign verify them")
	cmd.Flags().StringVar(&sbKey, "secure-boot-key", "", "sign the boot chain of the bootable outputs (raw, qcow2, vmdk, vhd, gce, iso) for UEFI Secure Boot with this unencrypted RSA private key (PEM): systemd-boot and a unified kernel image per slot, whose signature covers the kernel command line and the root hash; needs --secure-boot-cert; overrides the image definition's secure_boot (see docs/secure-boot.md)")
	cmd.Flags().StringVar(&sbCert, "secure-boot-cert", "", "the X.509 certificate (PEM) of --secure-boot-key, which the firmware's db must hold")
	cmd.Flags().BoolVar(&noCache, "no-cache", false, "run every stage again instead of using its cached result (downloaded .deb files are still reused; what it makes is cached)")
	return cmd
}
