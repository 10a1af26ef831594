package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/imgforge"
)

func newPushCmd(c *common) *cobra.Command {
	var (
		req   imgforge.PushRequest
		build bool
	)
	cmd := &cobra.Command{
		Use:   "push ROLE REF [REF...]",
		Short: "Push the image of a role, as built into --output-dir, to a registry under one or more tags",
		Long: "Push sends the image of ROLE that imgforge build wrote to OUTPUT/ROLE/oci (--output-dir, default out; the image\n" +
			"its manifest.json names and imgforge verify checks) to every REF, each REGISTRY/REPO[:TAG] (TAG defaults to\n" +
			"latest): give several REFs for several tags, in one repository or several. Every REF is checked before\n" +
			"anything else. With --build it builds the image (or takes it from the cache) instead of reading OUTPUT.\n" +
			"With --boot-from OUTPUT it also pushes the bootable artefacts of the role's build in OUTPUT (manifest.json,\n" +
			"kernel, initramfs, overlay.cpio and the verity root image of its PXE set) as an OCI artifact tagged\n" +
			"TAG-boot for each REF, which imgforge-agent update REF installs. Registries on localhost and 127.0.0.1 are\n" +
			"reached over plain HTTP; --insecure allows plain HTTP for the others. It prints each pushed reference with\n" +
			"its digest, one a line, or with -o json one object: role, digest, source, refs, tags, boot.",
		Example: "  imgforge build lb --output-dir out --format oci,raw,pxe\n" +
			"  imgforge verify lb --output-dir out\n" +
			"  imgforge push lb registry.example.com/stack/lb:2025-01 registry.example.com/stack/lb:latest --boot-from out\n" +
			"  imgforge push lb 192.0.2.10:5000/stack/lb:2025-01 --insecure -o json\n" +
			"  imgforge push lb registry.example.com/stack/lb:2025-01 --build",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Refs = args[1:]
			if _, err := imgforge.ParseRefs(req.Refs, req.Insecure); err != nil {
				return err
			}
			if cmd.Flags().Changed("output-dir") && build {
				return fmt.Errorf("--output-dir and --build: give one; accepted: --output-dir OUTPUT (push the image built there) or --build (build it from the cache)")
			}
			plans, err := c.plans(args[:1])
			if err != nil {
				return err
			}
			if build {
				cacheDir, err := c.cachePath()
				if err != nil {
					return err
				}
				req.Build = &imgforge.BuildRequest{CacheDir: cacheDir, Progress: progress(cmd), Rootless: os.Geteuid() != 0}
			}
			res, err := imgforge.Push(cmd.Context(), req, plans[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if c.output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			for _, r := range slices.Concat(res.Refs, res.Boot, res.Signatures) {
				fmt.Fprintln(out, r)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.OutputDir, "output-dir", "out", "folder imgforge build wrote the images to, one sub-folder per role: the image pushed is OUTPUT/ROLE/oci")
	f.BoolVar(&build, "build", false, "build the image (or take it from the cache) instead of pushing the one in --output-dir")
	f.BoolVar(&req.Insecure, "insecure", false, "allow plain HTTP to the registries (localhost and 127.0.0.1 always may)")
	f.StringVar(&req.BootFrom, "boot-from", "", "an output folder of imgforge build holding this role's build with the pxe format: push its bootable artefacts as each REF's boot artifact (TAG-boot)")
	c.addDefinitionFlags(cmd)
	c.addCacheFlag(cmd)
	return cmd
}
