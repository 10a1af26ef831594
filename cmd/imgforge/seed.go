package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/seed"
	"github.com/imgforge/imgforge/pkg/spec"
)

// defaultSeedEpoch stamps the seed ISOs when SOURCE_DATE_EPOCH is unset
// (2025-01-01, the default image's), so re-runs give the same bytes.
const defaultSeedEpoch = 1735689600

func newSeedCmd(c *common) *cobra.Command {
	var (
		out, clusterFile string
		one              seed.Single
		sshKeyFiles      []string
	)
	cmd := &cobra.Command{
		Use:   "seed (ROLE | --cluster FILE) --out DIR",
		Short: "Write NoCloud seeds (meta-data, user-data, network-config, seed.iso) with the cluster settings for imgforge-agent",
		Long: "seed writes, per node, DIR/NODE/{meta-data,user-data,network-config} and DIR/NODE/seed.iso (a cidata volume).\n" +
			"The cluster's secrets (gossip key, database passwords, the cluster CA) are made once into DIR/secrets.yaml (mode 0600)\n" +
			"and reused; each node gets a key and a certificate from the CA naming its cluster, name and role (imgforge.identity).\n" +
			"All or nothing: the files are made in a new folder and moved into DIR once every node's seed was written.\n" +
			"Each node's network-config matches its NIC by MAC: given in the cluster file, or derived from the cluster and\n" +
			"node names (printed, and listed in DIR/nodes.json).",
		Example: "  imgforge seed --cluster cluster.yaml --out seeds\n  imgforge seed web --name web-1 --address 10.10.0.21/24 --gateway 10.10.0.1 --out seeds",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usage(errors.New("--out DIR is required"))
			}
			if (clusterFile == "") == (len(args) == 0) {
				return usage(errors.New("give a ROLE for one node, or --cluster FILE for a topology"))
			}
			if err := c.checkOutput(); err != nil {
				return err
			}
			cat, err := c.catalog()
			if err != nil {
				return err
			}
			roles, err := seed.LoadRoles(cat)
			if err != nil {
				return err
			}
			var cl *seed.Cluster
			if clusterFile != "" {
				for _, name := range []string{"cluster-name", "name", "address", "gateway", "dns", "vip", "mac", "join", "discovery", "ssh-key"} {
					if cmd.Flags().Changed(name) {
						return usage(fmt.Errorf("--%s is for one node; with --cluster the nodes come from the file", name))
					}
				}
				cl, err = seed.LoadCluster(clusterFile, roles)
			} else {
				one.Role = args[0]
				for _, p := range sshKeyFiles {
					b, err := os.ReadFile(p)
					if err != nil {
						return fmt.Errorf("--ssh-key: %w", err)
					}
					one.SSHKeys = append(one.SSHKeys, string(trimNewline(b)))
				}
				for i, v := range one.VIPs {
					if slices.Contains(one.VIPs[:i], v) {
						return usage(fmt.Errorf("--vip %s is given twice", v))
					}
				}
				cl, err = seed.SingleCluster(one, roles)
				err = seedFlagError(err, one)
			}
			if err != nil {
				return err
			}
			epoch := int64(defaultSeedEpoch)
			if s := c.getenv("SOURCE_DATE_EPOCH"); s != "" {
				if epoch, err = strconv.ParseInt(s, 10, 64); err != nil || epoch <= 0 {
					return fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a positive Unix time", s)
				}
			}
			res, err := seed.Generate(cl, seed.Options{Out: out, Rand: rand.Reader, ModTime: time.Unix(epoch, 0), Now: time.Now})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if c.output == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tROLE\tADDRESS\tMAC\tSEED")
			for _, n := range res {
				addr := n.Address
				if addr == "" {
					addr = "dhcp"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.Role, addr, n.MAC, n.ISO)
			}
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "output folder")
	f.StringVar(&clusterFile, "cluster", "", "topology file (YAML; see docs/agent.md)")
	f.StringVar(&c.rolesDir, "roles", "", "folder of role definitions overriding the embedded ones (default ./roles when present): what each node's user-data holds comes from its role file")
	f.StringVar(&one.Cluster, "cluster-name", "imgforge", "one node: the cluster's name")
	f.StringVar(&one.Name, "name", "", "one node: its name (default ROLE-1)")
	f.StringVar(&one.Address, "address", "", "one node: its address with prefix, such as 10.10.0.21/24 (default DHCP)")
	f.StringVar(&one.Gateway, "gateway", "", "one node: the default gateway")
	f.StringArrayVar(&one.DNS, "dns", nil, "one node: a name server (repeatable)")
	f.StringArrayVar(&one.VIPs, "vip", nil, "one node: a VIP, address or address/prefix (repeatable; lb)")
	f.StringVar(&one.MAC, "mac", "", "one node: the NIC's MAC (default derived from the cluster and node names)")
	f.StringArrayVar(&one.Join, "join", nil, "one node: a gossip join address (repeatable)")
	f.StringVar(&one.Discovery, "discovery", "gossip", "one node: discovery method: static, dns or gossip")
	f.StringArrayVar(&sshKeyFiles, "ssh-key", nil, "one node: a public key file to authorize (repeatable)")
	f.StringVarP(&c.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// seedFlags names the flag that gave each field of a one-node seed's
// cluster (seed.SingleCluster validates it as a cluster file).
var seedFlags = map[string]string{
	"nodes[0].role": "ROLE", "nodes[0].name": "--name", "nodes[0].address": "--address", "nodes[0].mac": "--mac",
	"network.gateway": "--gateway", "network.dns": "--dns", "cluster": "--cluster-name", "discovery.method": "--discovery",
	"discovery.gossip.join": "--join", "ssh_authorized_keys": "--ssh-key", "vips": "--vip",
}

var seedVIPField = regexp.MustCompile(`^vips\[\d+\](\.(address|prefix))?$`)

var seedVIPPrefix = regexp.MustCompile(`^vips\[(\d+)\]\.prefix$`)

// seedFlagError names the flag behind a one-node seed's refused field.
func seedFlagError(err error, one seed.Single) error {
	var se *spec.Error
	if !errors.As(err, &se) || se.File != seed.CommandLine {
		return err
	}
	if m := seedVIPPrefix.FindStringSubmatch(se.Field); m != nil {
		// A VIP without its prefix takes the subnet's, which a node on
		// DHCP does not have.
		if i, _ := strconv.Atoi(m[1]); i < len(one.VIPs) && !strings.Contains(one.VIPs[i], "/") && one.Address == "" {
			return usage(fmt.Errorf("--vip %s: without --address the node's subnet is unknown; give the VIP with its prefix length, such as %s/24", one.VIPs[i], one.VIPs[i]))
		}
	}
	if se.Field == "vips" && len(one.VIPs) == 0 {
		return usage(fmt.Errorf("--vip: role %s holds the cluster's VIPs and needs at least one: give --vip ADDRESS[/PREFIX]", one.Role))
	}
	flag, ok := seedFlags[se.Field]
	switch {
	case ok:
	case seedVIPField.MatchString(se.Field):
		flag = "--vip"
	default:
		for f, fl := range seedFlags { // a field below a flag's, such as discovery.gossip.join[1]
			if strings.HasPrefix(se.Field, f+"[") || strings.HasPrefix(se.Field, f+".") {
				flag = fl
			}
		}
	}
	if flag == "" {
		return err
	}
	// A one-node seed's join list cannot name nodes: only addresses.
	msg := strings.TrimSuffix(se.Msg, "; accepted: a node's name or address")
	return usage(fmt.Errorf("%s: %s", flag, msg))
}
