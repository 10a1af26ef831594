package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"time"

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
	root.AddCommand(newBuildCmd(c), newCacheCmd(c, time.Now), newDoctorCmd(c, exec.LookPath, os.Geteuid), newPlanCmd(c), newPushCmd(c), newRolesCmd(c), newRolloutCmd(c), newRunCmd(c), newSeedCmd(c), newServeCmd(), newVerifyCmd(c), newVersionCmd(c, debug.ReadBuildInfo))
	root.AddCommand(newManCmd(root, getenv))
	registerCompletions(root, c)
	markUsageErrors(root)
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

// planOptions resolves the flags into plan options with the library's
// ResolveOptions, as the Packer plugin does with its settings; a refused
// setting is named by its flag when one gave it.
func (c *common) planOptions() (plan.Options, error) {
	s := imgforge.Settings{Mirror: c.mirror, SourceDateEpoch: c.epoch}
	for _, kv := range c.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return plan.Options{}, usage(fmt.Errorf("--set %q: expected OPTION=VALUE, such as runtime=uwsgi", kv))
		}
		if s.Set == nil {
			s.Set = map[string]string{}
		}
		s.Set[k] = v
	}
	if err := c.checkOutput(); err != nil {
		return plan.Options{}, err
	}
	o, err := imgforge.ResolveOptions(s, c.getenv, os.DirFS("/"))
	if se, ok := imgforge.AsSettingError(err); ok {
		switch {
		case se.Setting == imgforge.SettingMirror:
			return o, usage(fmt.Errorf("--mirror: %w", se.Err))
		case se.Setting == imgforge.SettingSourceDateEpoch && c.epoch != 0:
			return o, usage(fmt.Errorf("--source-date-epoch: %w", se.Err))
		}
		return o, se.Err // from the environment: the message names it
	}
	return o, err
}

// checkOutput checks the --output flag.
func (c *common) checkOutput() error {
	if c.output != "text" && c.output != "json" {
		return usage(fmt.Errorf("--output %q: accepted: text, json", c.output))
	}
	return nil
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
	return imgforge.Plans(cat, roles, opts)
}
