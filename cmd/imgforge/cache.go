package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/units"
)

func newCacheCmd(c *common, now func() time.Time) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "List, measure and prune the build cache",
		Long: `The cache ($XDG_CACHE_HOME/imgforge, or --cache-dir) keeps every stage a build made, the blobs they name,
the base's apt lists and the downloaded .deb files. Each finished build records which stage results it used;
cache prune keeps those of the builds it keeps and removes the rest.`,
		Args: cobra.NoArgs, // an unknown subcommand is a usage error
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&c.cacheDir, "cache-dir", "", "cache folder (default $XDG_CACHE_HOME/imgforge)")
	cmd.PersistentFlags().StringVarP(&c.output, "output", "o", "text", "output format: text or json")
	cmd.AddCommand(newCacheLsCmd(c), newCacheDuCmd(c), newCachePruneCmd(c, now))
	return cmd
}

func encodeJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newCacheLsCmd(c *common) *cobra.Command {
	return &cobra.Command{
		Use:   "ls [ROLE...]",
		Short: "List the builds the cache records, by role, newest first",
		Long:  "ls lists the builds the cache records: role, time, image digest, and the size of the blobs the build used (blobs shared with other builds, such as the base, count in each).",
		RunE: func(cmd *cobra.Command, args []string) error {
			cc, err := c.peekCache()
			if err != nil {
				return err
			}
			builds, err := cc.Builds()
			if err != nil {
				return err
			}
			if len(args) > 0 {
				builds = slices.DeleteFunc(builds, func(b cache.BuildRecord) bool { return !slices.Contains(args, b.Role) })
			}
			if c.output == "json" {
				if builds == nil {
					builds = []cache.BuildRecord{}
				}
				return encodeJSON(cmd, struct {
					Builds []cache.BuildRecord `json:"builds"`
				}{builds})
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tBUILT\tIMAGE\tSIZE")
			for _, b := range builds {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.Role, b.Time.UTC().Format(time.RFC3339), b.Image, units.Bytes(b.Size))
			}
			return tw.Flush()
		},
	}
}

func newCacheDuCmd(c *common) *cobra.Command {
	return &cobra.Command{
		Use:   "du",
		Short: "Print the space each part of the cache takes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc, err := c.peekCache()
			if err != nil {
				return err
			}
			u, err := cc.Usage(cmd.Context())
			if err != nil {
				return err
			}
			if c.output == "json" {
				return encodeJSON(cmd, u)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			for _, p := range []struct {
				name string
				n    int64
				what string
			}{
				{"blobs", u.Blobs, "layers, root images, boot files"},
				{"stages", u.Stages, "stage records"},
				{"builds", u.Builds, "build records"},
				{"lists", u.Lists, "apt lists of the bases"},
				{"debs", u.Debs, strconv.Itoa(u.DebFiles) + " downloaded .deb files"},
				{"tmp", u.Tmp, "work in progress"},
				{"total", u.Total, cc.Dir()},
			} {
				fmt.Fprintf(tw, "%s\t%10s\t%s\n", p.name, units.Bytes(p.n), p.what)
			}
			return tw.Flush()
		},
	}
}

// parseAge reads --older-than: a Go duration (36h, 90m) or whole days (30d).
func parseAge(s string) (time.Duration, error) {
	bad := fmt.Errorf("--older-than %q: expected a positive duration such as 30d, 36h or 90m", s)
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 100000 {
			return 0, bad
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, bad
	}
	return d, nil
}

func newCachePruneCmd(c *common, now func() time.Time) *cobra.Command {
	var (
		keep   int
		older  string
		debs   bool
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "prune (--keep N | --older-than AGE | --debs)",
		Short: "Remove what the builds to keep do not need",
		Long: `prune forgets the builds beyond the --keep newest of each role and those older than --older-than, then removes
the stage results no remaining build used (a result no build recorded, such as an interrupted build's, goes too,
unless it is younger than --older-than), the blobs and apt lists no remaining result names, and the .deb files older
than --older-than (all of them with --debs). It waits for a build that holds the cache. Interrupted, it leaves a
consistent cache: what names a file is removed before the file, so a later build or prune finds no dangling entry.`,
		Example: "  imgforge cache prune --keep 2\n  imgforge cache prune --older-than 30d --dry-run\n  imgforge cache prune --debs",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.checkOutput(); err != nil {
				return err
			}
			o := cache.PruneOptions{Keep: keep, Debs: debs, DryRun: dryRun, Now: now()}
			if keep < 0 {
				return usage(fmt.Errorf("--keep %d: expected a number of builds of 1 or more", keep))
			}
			if older != "" {
				d, err := parseAge(older)
				if err != nil {
					return usage(err)
				}
				o.OlderThan = d
			}
			if !cmd.Flags().Changed("keep") && older == "" && !debs {
				return usage(errors.New("say what to prune: --keep N (builds per role), --older-than AGE, or --debs"))
			}
			if cmd.Flags().Changed("keep") && keep == 0 {
				return usage(errors.New("--keep 0: expected a number of builds of 1 or more (to empty the cache, remove its folder)"))
			}
			dir, err := c.cachePath()
			if err != nil {
				return err
			}
			if _, err := cache.Peek(dir); err != nil {
				return err
			}
			cc, err := cache.Open(cmd.Context(), dir)
			if err != nil {
				return err
			}
			defer cc.Close()
			res, err := cc.Prune(cmd.Context(), o)
			if err != nil {
				return err
			}
			if c.output == "json" {
				if res.Builds == nil {
					res.Builds = []cache.BuildRecord{}
				}
				return encodeJSON(cmd, res)
			}
			verb := "removed"
			if dryRun {
				verb = "would remove"
			}
			out := cmd.OutOrStdout()
			for _, b := range res.Builds {
				fmt.Fprintf(out, "%s build %s %s %s\n", verb, b.Role, b.Time.UTC().Format(time.RFC3339), b.Image)
			}
			fmt.Fprintf(out, "%s %d builds, %d stage results, %d blobs, %d apt lists, %d .deb files: %s\n",
				verb, len(res.Builds), res.Records, res.Blobs, res.Lists, res.Debs, units.Bytes(res.Freed))
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&keep, "keep", 0, "keep the N newest builds of each role")
	f.StringVar(&older, "older-than", "", "forget builds, and remove .deb files, older than AGE (30d, 36h)")
	f.BoolVar(&debs, "debs", false, "remove every downloaded .deb file")
	f.BoolVar(&dryRun, "dry-run", false, "say what would be removed, remove nothing")
	return cmd
}

// peekCache checks --output and opens the cache to read it, without its
// lock (ls and du do not wait for a running build).
func (c *common) peekCache() (*cache.Cache, error) {
	if err := c.checkOutput(); err != nil {
		return nil, err
	}
	dir, err := c.cachePath()
	if err != nil {
		return nil, err
	}
	return cache.Peek(dir)
}
