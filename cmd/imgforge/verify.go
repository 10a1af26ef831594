package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/imgforge"
	"github.com/imgforge/imgforge/pkg/sign"
	"github.com/imgforge/imgforge/pkg/verify"
)

func newVerifyCmd(c *common) *cobra.Command {
	var manifest, format, outDir, output, key string
	cmd := &cobra.Command{
		Use:   "verify ROLE|IMAGE",
		Short: "Check a built bootable image against its manifest",
		Long: `Check a role's built image (OUTPUT_DIR/ROLE/ROLE.raw, or ROLE.iso with --format iso) or an image file
against its manifest.json: its sha256, the partition table and partition UUIDs, the ESP (fsck.vfat, the
boot files' sha256 against the manifest's, the loader entry's kernel command line), the squashfs root and its dm-verity hash tree.
With --key PUB (a PEM public key, such as cosign.pub) it also checks the signatures of a build made with
imgforge build --sign-key: SHA256SUMS.sig, that SHA256SUMS lists the manifest and the image, the key the
manifest names, the signed provenance (provenance.intoto.json) and, with an OCI layout beside the image,
its cosign signature and attestations.
Each check is printed as ok or FAILED with its reason; a failed check makes the command fail.
It needs fsck.vfat (dosfstools), sqfs2tar (squashfs-tools-ng), veritysetup (cryptsetup-bin) and, for an ISO, xorriso.`,
		Example: `  imgforge verify lb
  imgforge verify out/lb/lb.iso
  imgforge verify /srv/images/db.raw --manifest /srv/images/db.manifest.json -o json
  imgforge verify lb --key cosign.pub`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return usage(fmt.Errorf("--output %q: accepted: text, json", output))
			}
			img, err := findImage(args[0], format, outDir)
			if err != nil {
				return err
			}
			var v *sign.Verifier
			if key != "" {
				if v, err = sign.LoadVerifier(key); err != nil {
					return fmt.Errorf("--key: %w", err)
				}
			}
			report, err := imgforge.Verify(cmd.Context(), img, manifest)
			if err != nil && !errors.Is(err, verify.ErrFailed) {
				return fmt.Errorf("verifying %s: %w", img.Path, err)
			}
			if v != nil {
				report.Checks = append(report.Checks, imgforge.VerifySignatures(img, manifest, v)...)
				if err == nil && !report.OK() {
					err = verify.ErrFailed
				}
			}
			if perr := printReport(cmd, report, output); perr != nil {
				return perr
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&manifest, "manifest", "", "the image's manifest.json (default: manifest.json beside the image)")
	fl.StringVar(&format, "format", "", "image to verify for a ROLE: raw or iso (default raw; for an IMAGE, its extension)")
	fl.StringVar(&outDir, "output-dir", "out", "folder the images were built into, one sub-folder per role")
	fl.StringVarP(&output, "output", "o", "text", "output format: text or json")
	fl.StringVar(&key, "key", "", "also check the build's signatures with this public key (PEM, as cosign.pub)")
	return cmd
}

func printReport(cmd *cobra.Command, r verify.Report, output string) error {
	out := cmd.OutOrStdout()
	if output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			verify.Report
			OK bool `json:"ok"`
		}{r, r.OK()})
	}
	fmt.Fprintf(out, "%s (manifest %s)\n", r.Image, r.Manifest)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, c := range r.Checks {
		status := "ok"
		if !c.OK {
			status = "FAILED"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", status, c.Name, c.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if failed := len(r.Failed()); failed > 0 {
		fmt.Fprintf(out, "%d of %d checks failed\n", failed, len(r.Checks))
	} else {
		fmt.Fprintf(out, "all %d checks passed\n", len(r.Checks))
	}
	return nil
}
