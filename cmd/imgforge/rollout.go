package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/rollout"
	"github.com/imgforge/imgforge/pkg/seed"
)

func newRolloutCmd(c *common) *cobra.Command {
	var (
		clusterFile, secretsFile string
		images                   []string
		o                        rollout.Options
		port                     int
	)
	cmd := &cobra.Command{
		Use:   "rollout --cluster FILE --image ROLE=SOURCE...",
		Short: "Update a running cluster to new images, a few nodes of a role at a time, each drained first",
		Long: "Rollout updates the nodes of each role given by --image: it drains a node (it leaves its peers' configuration, an\n" +
			"lb gives up its VIPs), has its agent write SOURCE into the inactive A/B slot and reboot, and waits until the node\n" +
			"answers on the new version, healthy, and is back in its peers' configuration, before the next. At most\n" +
			"--max-unavailable nodes of a role are out at once. It stops at the first node that does not come back, or comes\n" +
			"back on its old version (it rolled back by itself); that image is not offered again unless --force. The db role is\n" +
			"updated only with --include db, and last. It talks to each node's agent on --port over mutual TLS, with an\n" +
			"operator certificate it makes in memory from the cluster CA in --secrets. Its progress is kept in\n" +
			rollout.StateFile + " beside the cluster file: a killed rollout resumes when run again. See docs/agent.md.",
		Example: "  imgforge rollout --cluster cluster.yaml --secrets seeds/secrets.yaml \\\n" +
			"      --image lb=https://10.10.0.1:8443/sets/lb/ --image web=https://10.10.0.1:8443/sets/web/",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if clusterFile == "" {
				return usage(errors.New("--cluster FILE is required"))
			}
			if len(images) == 0 {
				return usage(errors.New("--image ROLE=SOURCE is required (repeatable)"))
			}
			if err := c.checkOutput(); err != nil {
				return err
			}
			switch {
			case o.StageAhead < 0:
				return usage(fmt.Errorf("--stage-ahead %d: accepted: 0 or more", o.StageAhead))
			case o.StageAhead == 0:
				o.StageAhead = -1 // rollout.Options: none ahead
			}
			for _, s := range images {
				im, err := rollout.ParseImage(s)
				if err != nil {
					return err
				}
				o.Images = append(o.Images, im)
			}
			if secretsFile == "" {
				secretsFile = filepath.Join(filepath.Dir(clusterFile), seed.SecretsFile)
			}
			cat, err := c.catalog()
			if err != nil {
				return err
			}
			roles, err := seed.LoadRoles(cat)
			if err != nil {
				return err
			}
			cl, err := rollout.ForCluster(clusterFile, secretsFile, roles, port, rand.Reader, time.Now(), 0)
			if err != nil {
				return err
			}
			o.Nodes, o.Dial, o.StatePath = cl.Nodes, cl.Dial, rollout.StatePath(clusterFile)
			o.Logf = func(f string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), "rollout: "+f+"\n", a...) }
			res, err := rollout.Run(cmd.Context(), o)
			if res != nil && c.output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(res); jerr != nil && err == nil {
					err = jerr
				}
			} else if res != nil {
				for _, n := range res.Updated {
					fmt.Fprintf(cmd.OutOrStdout(), "updated %s\n", n)
				}
				for _, n := range res.Skipped {
					fmt.Fprintf(cmd.OutOrStdout(), "skipped %s (runs its image already)\n", n)
				}
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&clusterFile, "cluster", "", "the cluster file imgforge seed read")
	fl.StringVar(&secretsFile, "secrets", "", "imgforge seed's secrets.yaml, holding the cluster CA (default: secrets.yaml beside the cluster file)")
	fl.StringArrayVar(&images, "image", nil, "ROLE=SOURCE: the new image of a role, a set served by imgforge serve or an OCI reference (repeatable; roles in this order, db last)")
	fl.IntVar(&o.MaxUnavailable, "max-unavailable", 1, "nodes of a role out of service at once, at most")
	fl.IntVar(&o.StageAhead, "stage-ahead", 1, "nodes beyond those in their turn whose inactive slot is written already, while the earlier ones reboot (0: each node's when its turn comes)")
	fl.StringSliceVar(&o.Include, "include", nil, "roles updated only when named: db")
	fl.BoolVar(&o.Force, "force", false, "offer again an image that rolled back on a node")
	fl.IntVar(&o.Tries, "tries", 0, "boot tries of each node's new slot, 1 to 9 (default: the agent's, 3)")
	fl.DurationVar(&o.Trial, "trial", 0, "how long each boot of a new slot may take to get healthy before the node reboots (default: the agent's, 10m)")
	fl.IntVar(&port, "port", agent.DefaultControlPort, "the agents' control endpoint port")
	fl.DurationVar(&o.Timeout, "timeout", 20*time.Minute, "how long a node may take to come back after its update (its boot tries included)")
	fl.DurationVar(&o.DrainTimeout, "drain-timeout", time.Minute, "how long to wait for peers to drop a draining node")
	fl.DurationVar(&o.DrainGrace, "drain-grace", 5*time.Second, "time given to a drained node's requests in flight before its update")
	fl.StringVar(&c.rolesDir, "roles", "", "folder of role definitions overriding the embedded ones (default ./roles when present): the cluster file is checked against them")
	fl.StringVarP(&c.output, "output", "o", "text", "output format: text or json")
	return cmd
}
