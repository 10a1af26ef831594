package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/imgforge"
)

func newPushCmd(c *common) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "push ROLE REF",
		Short:   "Build (or take from the cache) the image of a role and push it to a registry",
		Example: "  imgforge push lb registry.example.com/stack/lb:2025-01",
		Args:    cobra.ExactArgs(2),
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
				CacheDir: cacheDir, Progress: progress(cmd), Rootless: os.Geteuid() != 0,
			}, plans[0], args[1])
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), ref)
			return nil
		},
	}
	c.addDefinitionFlags(cmd)
	c.addCacheFlag(cmd)
	return cmd
}
