package main

import (
	"context"
	"fmt"
	"io"
	"log"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/mariadb"
)

// newMariaDBCmd groups the MariaDB tools that a role file's render steps
// call; the agent itself decides nothing by them.
func newMariaDBCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mariadb",
		Short: "MariaDB tools for role files' render steps (seed a replica from its primary)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newMariaDBSeedCmd())
	return cmd
}

func newMariaDBSeedCmd() *cobra.Command {
	f := &runFlags{}
	var seedFile, datadir, replicaSQL string
	cmd := &cobra.Command{
		Use:   "seed --config FILE",
		Short: "Seed this replica's datadir from its primary's snapshot, once (as root)",
		Long: "Seed does nothing when the datadir carries " + mariadb.Marker + ". Otherwise it fetches the primary's snapshot from\n" +
			"its agent's control endpoint (GET /v1/snapshot, mutual TLS with this node's identity from the user-data), extracts\n" +
			"and prepares it beside the datadir, stops MariaDB, moves the datadir aside and the snapshot in its place, starts\n" +
			"MariaDB, sets gtid_slave_pos to the snapshot's position and runs the replica's SQL. See docs/agent.md, \"Replicas\".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			logger := log.New(cmd.ErrOrStderr(), "mariadb seed: ", 0)
			sf, err := mariadb.ReadSeedFile(seedFile)
			if err != nil {
				return err
			}
			c, err := f.load()
			if err != nil {
				return err
			}
			id, err := c.ParseIdentity()
			if err != nil {
				return configError{fmt.Errorf("%s.identity: %w", config.Section, err)}
			}
			if id == nil {
				return configError{fmt.Errorf("the settings have no %s.identity: the primary gives its snapshot only to a node that proves its role", config.Section)}
			}
			p := sf.Primary
			res, err := mariadb.Seed(cmd.Context(), mariadb.Options{
				Datadir: datadir, ReplicaSQL: replicaSQL, Logf: logger.Printf,
				Fetch: func(ctx context.Context) (io.ReadCloser, error) {
					logger.Printf("asking %s (%s) for its snapshot", p.Name, p.Addr())
					return agent.FetchSnapshot(ctx, p.Addr(), p.Name, id.Role, id.CA, id.TLSCertificate())
				},
			})
			if err != nil {
				return fmt.Errorf("seeding from %s: %w", p.Name, err)
			}
			if res.Seeded {
				fmt.Fprintf(cmd.OutOrStdout(), "imgforge-agent: seeded from %s at GTID %q\n", p.Name, res.GTID)
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&seedFile, "config", "", "the seed file the agent renders (the primary's name, address and control port)")
	cmd.Flags().StringVar(&datadir, "datadir", mariadb.DefaultDatadir, "MariaDB's datadir")
	cmd.Flags().StringVar(&replicaSQL, "replica-sql", mariadb.DefaultReplicaSQL, "the replica's SQL, run once the position is set (when it exists)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
