package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/imgforge"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/spec"
)

// common holds the flags every command that reads definitions shares.
type common struct {
	getenv    func(string) string
	rolesDir  string
	imagesDir string
	set       []string
	mirror    string
	epoch     int64
	cacheDir  string
	output    string
}

func newRootCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	root := &cobra.Command{
		Use:           "imgforge",
		Short:         "Build immutable, per-role machine images",
		Long:          "imgforge builds a machine image per role of a web stack (lb, web, app, db) from Debian packages and its own files:\nOCI images, UEFI disks (raw, qcow2), a hybrid ISO and PXE sets; its agent configures the machines at boot.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       imgforge.Version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	c := &common{getenv: getenv}
	root.AddCommand(newBuildCmd(c), newPlanCmd(c), newPushCmd(c), newRolesCmd(c), newRunCmd(c), newSeedCmd(c), newServeCmd(), newVerifyCmd(c))
	return root
}

func (c *common) addDefinitionFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&c.rolesDir, "roles", "", "folder of role definitions overriding the embedded ones (default ./roles when present)")
	f.StringVar(&c.imagesDir, "images", "", "folder of image definitions overriding the embedded ones (default ./images when present)")
	f.StringArrayVar(&c.set, "set", nil, "choose a role option, e.g. --set runtime=uwsgi (repeatable)")
	f.StringVar(&c.mirror, "mirror", "", "Debian mirror URL (default: the image's, else the host's configured mirror)")
	f.Int64Var(&c.epoch, "source-date-epoch", 0, "SOURCE_DATE_EPOCH for the outputs (default: $SOURCE_DATE_EPOCH, else the image's)")
	f.StringVarP(&c.output, "output", "o", "text", "output format: text or json")
}

func (c *common) addCacheFlag(cmd *cobra.Command) {
	cmd.Flags().StringVar(&c.cacheDir, "cache-dir", "", "cache folder (default $XDG_CACHE_HOME/imgforge)")
}

func dirIfPresent(flag, def string) string {
	if flag != "" {
		return flag
	}
	if fi, err := os.Stat(def); err == nil && fi.IsDir() {
		// A folder named like the embedded ones, in the working directory.
		if matches, _ := fileGlob(def); matches {
			return def
		}
	}
	return ""
}

func fileGlob(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") {
			return true, nil
		}
	}
	return false, nil
}

func (c *common) catalog() (*spec.Catalog, error) {
	return imgforge.Catalog(dirIfPresent(c.rolesDir, "roles"), dirIfPresent(c.imagesDir, "images"))
}

func (c *common) planOptions() (plan.Options, error) {
	o := plan.Options{Mirror: c.mirror, SourceDateEpoch: c.epoch, HostMirrors: plan.DetectMirrors(os.DirFS("/"))}
	if c.mirror != "" {
		if err := spec.CheckMirror(c.mirror); err != nil {
			return o, fmt.Errorf("--mirror: %w", err)
		}
	}
	if o.SourceDateEpoch == 0 {
		if s := c.getenv("SOURCE_DATE_EPOCH"); s != "" {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil || v <= 0 {
				return o, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a positive Unix time", s)
			}
			o.SourceDateEpoch = v
		}
	}
	for _, kv := range c.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return o, fmt.Errorf("--set %q: expected OPTION=VALUE, such as runtime=uwsgi", kv)
		}
		if o.Set == nil {
			o.Set = map[string]string{}
		}
		o.Set[k] = v
	}
	if c.output != "text" && c.output != "json" {
		return o, fmt.Errorf("--output %q: accepted: text, json", c.output)
	}
	return o, nil
}

func (c *common) cachePath() (string, error) {
	if c.cacheDir != "" {
		return c.cacheDir, nil
	}
	d, err := cache.DefaultDir(c.getenv)
	if err != nil {
		return "", fmt.Errorf("%w: pass --cache-dir", err)
	}
	return d, nil
}

// plans resolves roles with the definition flags.
func (c *common) plans(roles []string) ([]*plan.Plan, error) {
	opts, err := c.planOptions()
	if err != nil {
		return nil, err
	}
	cat, err := c.catalog()
	if err != nil {
		return nil, err
	}
	if opts.AgentSource, opts.Agent, err = imgforge.FindAgent(c.getenv); err != nil {
		return nil, err
	}
	return imgforge.Plans(cat, roles, opts)
}
