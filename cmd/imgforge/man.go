package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// newManCmd writes the man pages of the command tree (make man). It is
// hidden: the pages are for packagers.
func newManCmd(root *cobra.Command, getenv func(string) string) *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "man --dir DIR",
		Short:  "Write man pages of every command into DIR (section 1)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return usage(fmt.Errorf("--dir DIR is required"))
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("writing the man pages: %w", err)
			}
			hdr := &doc.GenManHeader{Title: "IMGFORGE", Section: "1", Source: "imgforge " + root.Version, Manual: "imgforge manual"}
			// The pages' date is SOURCE_DATE_EPOCH's, so that they are
			// reproducible.
			date, err := manDate(getenv("SOURCE_DATE_EPOCH"))
			if err != nil {
				return err
			}
			hdr.Date = &date
			root.DisableAutoGenTag = true
			if err := doc.GenManTree(root, hdr, dir); err != nil {
				return fmt.Errorf("writing the man pages: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "man pages written to %s\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "folder to write imgforge.1, imgforge-build.1, ... into")
	return cmd
}

// manDate is the date of SOURCE_DATE_EPOCH, or 1 January 1970 without one.
func manDate(epoch string) (time.Time, error) {
	if epoch == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	var sec int64
	if _, err := fmt.Sscan(epoch, &sec); err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q in the environment is not a Unix time", epoch)
	}
	return time.Unix(sec, 0).UTC(), nil
}
