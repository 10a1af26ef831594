package main

import (
	"encoding/json"
	"fmt"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/imgforge"
)

// versionInfo is what `imgforge version` prints: imgforge's version and
// what the Go toolchain recorded in the binary about the source it was
// built from.
type versionInfo struct {
	Version string `json:"version"`
	// Module is the main module's version: a tag or pseudo-version when
	// built with go install MODULE@VERSION, "(devel)" from a checkout.
	Module string `json:"module,omitempty"`
	// Commit is the VCS revision of the checkout, Modified whether it had
	// uncommitted changes.
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// Date is the commit's time (vcs.time). Go records no build time, so
	// that the same source gives the same binary; the commit's time is the
	// build date a reproducible build has.
	Date      string `json:"date,omitempty"`
	GoVersion string `json:"go,omitempty"`
	Platform  string `json:"platform,omitempty"`
}

// readVersion reads the version from build info, as debug.ReadBuildInfo
// returns it (ok false: a binary built without module support).
func readVersion(bi *debug.BuildInfo, ok bool) versionInfo {
	v := versionInfo{Version: imgforge.Version}
	if !ok || bi == nil {
		return v
	}
	v.Module, v.GoVersion = bi.Main.Version, bi.GoVersion
	var goos, goarch string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Date = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	if goos != "" && goarch != "" {
		v.Platform = goos + "/" + goarch
	}
	return v
}

func newVersionCmd(c *common, buildInfo func() (*debug.BuildInfo, bool)) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print imgforge's version, the commit it was built from and that commit's date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.checkOutput(); err != nil {
				return err
			}
			v := readVersion(buildInfo())
			out := cmd.OutOrStdout()
			if c.output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 1, ' ', 0)
			fmt.Fprintf(tw, "version:\t%s\n", v.Version)
			if v.Module != "" && v.Module != "(devel)" {
				fmt.Fprintf(tw, "module:\t%s\n", v.Module)
			}
			commit := v.Commit
			switch {
			case commit == "":
				commit = "unknown (built without VCS information)"
			case v.Modified:
				commit += " (with uncommitted changes)"
			}
			fmt.Fprintf(tw, "commit:\t%s\n", commit)
			date := v.Date
			if date == "" {
				date = "unknown"
			}
			fmt.Fprintf(tw, "date:\t%s\n", date)
			if v.GoVersion != "" {
				fmt.Fprintf(tw, "go:\t%s\n", strings.TrimSpace(v.GoVersion+" "+v.Platform))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&c.output, "output", "o", "text", "output format: text or json")
	return cmd
}
