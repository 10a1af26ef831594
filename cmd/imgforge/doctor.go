package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/build"
	"github.com/imgforge/imgforge/pkg/format"
	"github.com/imgforge/imgforge/pkg/imgforge"
	"github.com/imgforge/imgforge/pkg/qemu"
)

// runTools are the programs imgforge run needs, which no build does.
var runTools = []build.Tool{{Name: qemu.Binary, Package: "qemu-system-x86", For: "imgforge run"}}

// doctorReport is what imgforge doctor prints with -o json.
type doctorReport struct {
	Formats  []string     `json:"formats"`
	Rootless bool         `json:"rootless"`
	Build    []build.Tool `json:"build"`
	Run      []build.Tool `json:"run"`
	// Install is the Debian packages of the missing build tools.
	Install []string `json:"install,omitempty"`
}

func newDoctorCmd(c *common, lookPath func(string) (string, error), geteuid func() int) *cobra.Command {
	var formats []string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check that the programs a build needs are installed, and name the Debian packages of those that are not",
		Long: `doctor looks up the programs of the host that a build of the given formats runs (mmdebstrap, and
newuidmap/newgidmap when not run as root; tar2sqfs and veritysetup for bootable formats; mke2fs for the disks;
qemu-img for qcow2 and vmdk; xorriso for the ISO), and the QEMU that imgforge run boots with. It fails when
a build would: imgforge build makes the same check before it starts.`,
		Example: "  imgforge doctor\n  imgforge doctor --format oci,raw -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.checkOutput(); err != nil {
				return err
			}
			if len(formats) == 0 {
				formats = format.Names()
			}
			for _, f := range formats {
				if err := format.Check(f); err != nil {
					return usage(fmt.Errorf("--format: %w", err))
				}
			}
			req := imgforge.BuildRequest{Formats: formats, Rootless: geteuid() != 0, LookPath: lookPath}
			tools, err := imgforge.Tools(req)
			if err != nil {
				return err
			}
			r := doctorReport{Formats: formats, Rootless: req.Rootless, Build: tools, Run: slices.Clone(runTools)}
			build.FindTools(r.Run, lookPath)
			var missing []build.Tool
			for _, t := range tools {
				if t.Path == "" {
					missing = append(missing, t)
					if !slices.Contains(r.Install, t.Package) {
						r.Install = append(r.Install, t.Package)
					}
				}
			}
			if err := printDoctor(cmd, c.output, r); err != nil {
				return err
			}
			if len(missing) > 0 {
				return &build.MissingToolsError{Missing: missing}
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&formats, "format", nil, "output formats to check for: "+format.List()+" (default: all)")
	cmd.Flags().StringVarP(&c.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printDoctor(cmd *cobra.Command, output string, r doctorReport) error {
	out := cmd.OutOrStdout()
	if output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	mode := "as root"
	if r.Rootless {
		mode = "without root: mmdebstrap's unshare mode"
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "build of %s (%s):\n", strings.Join(r.Formats, ", "), mode)
	printTools(tw, r.Build)
	fmt.Fprintln(tw, "imgforge run:")
	printTools(tw, r.Run)
	if len(r.Install) > 0 {
		fmt.Fprintf(tw, "install what a build needs with: apt-get install %s\n", strings.Join(r.Install, " "))
	} else {
		fmt.Fprintln(tw, "everything a build needs is installed")
	}
	return tw.Flush()
}

func printTools(tw *tabwriter.Writer, tools []build.Tool) {
	for _, t := range tools {
		status, where := "ok", t.Path
		if t.Path == "" {
			status, where = "MISSING", "(Debian package "+t.Package+")"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", status, t.Name, where, t.For)
	}
}
