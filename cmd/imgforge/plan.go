package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

func newPlanCmd(c *common) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan ROLE",
		Short: "Print the resolved build plan of a role (YAML, or JSON with --output json)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if c.output == "yaml" { // the text form of a plan is YAML
				c.output = "text"
			}
			plans, err := c.plans(args)
			if err != nil {
				return err
			}
			p := plans[0]
			out := cmd.OutOrStdout()
			if c.output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Digest string `json:"digest"`
					Plan   any    `json:"plan"`
				}{p.Digest(), p})
			}
			fmt.Fprintf(out, "# plan digest: %s\n", p.Digest())
			enc := yaml.NewEncoder(out)
			enc.SetIndent(2)
			if err := enc.Encode(p); err != nil {
				return err
			}
			return enc.Close()
		},
	}
	c.addDefinitionFlags(cmd)
	return cmd
}

func newRolesCmd(c *common) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "roles",
		Short: "List the roles imgforge knows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cat, err := c.catalog()
			if err != nil {
				return err
			}
			for _, r := range cat.RoleNames() {
				fmt.Fprintln(cmd.OutOrStdout(), r)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&c.rolesDir, "roles", "", "folder of role definitions overriding the embedded ones")
	return cmd
}
