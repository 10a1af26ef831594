package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/imgforge"
)

func newPushCmd(c *common) *cobra.Command {
	var bootFrom string
	cmd := &cobra.Command{
		Use:   "push ROLE REF",
		Short: "Build (or take from the cache) the image of a role and push it to a registry",
		Long: "Push builds (or takes from the cache) the image of a role and pushes it to REF. With --boot-from OUTPUT it also\n" +
			"pushes the bootable artefacts of the role's build in OUTPUT (manifest.json, kernel, initramfs, overlay.cpio and the\n" +
			"verity root image of its PXE set) as an OCI artifact tagged TAG-boot, which imgforge-agent update REF installs.",
		Example: "  imgforge push lb registry.example.com/stack/lb:2025-01\n" +
			"  imgforge build lb -o out --format raw,pxe && imgforge push lb registry.example.com/stack/lb:2025-01 --boot-from out",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			plans, err := c.plans(args[:1])
			if err != nil {
				return err
			}
			cacheDir, err := c.cachePath()
			if err != nil {
				return err
			}
			ref, err := imgforge.Push(cmd.Context(), imgforge.BuildRequest{
				CacheDir: cacheDir, OutputDir: bootFrom, Progress: progress(cmd), Rootless: os.Geteuid() != 0,
			}, plans[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), ref)
			return nil
		},
	}
	cmd.Flags().StringVar(&bootFrom, "boot-from", "", "an output folder of imgforge build holding this role's build with the pxe format: push its bootable artefacts as REF's boot artifact (TAG-boot)")
	c.addDefinitionFlags(cmd)
	c.addCacheFlag(cmd)
	return cmd
}
