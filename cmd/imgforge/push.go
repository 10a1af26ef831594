package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/imgforge/imgforge/pkg/build"
	"github.com/imgforge/imgforge/pkg/imgforge"
)

func newPushCmd(c *common) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "push ROLE REF",
		Short:   "Build (or take from the cache) the image of a role and push it to a registry",
		Example: "  imgforge push lb registry.example.com/stack/lb:2025-01",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := c.planOptions()
			if err != nil {
				return err
			}
			cat, err := c.catalog()
			if err != nil {
				return err
			}
			plans, err := imgforge.Plans(cat, args[:1], opts)
			if err != nil {
				return err
			}
			cacheDir, err := c.cachePath()
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			tty := false
			if f, ok := stderr.(*os.File); ok {
				tty = term.IsTerminal(int(f.Fd()))
			}
			ref, err := imgforge.Push(cmd.Context(), imgforge.BuildRequest{
				CacheDir: cacheDir, Progress: build.NewProgress(stderr, tty, nil), Rootless: os.Geteuid() != 0,
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
