package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/agent/update"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// rebootNode asks systemd for a clean reboot. A variable so that tests
// do not reboot.
var rebootNode = func() error {
	out, err := exec.Command("systemctl", "reboot").CombinedOutput()
	if err != nil {
		return fmt.Errorf("systemctl reboot: %w: %s", err, out)
	}
	return nil
}

func newUpdateCmd() *cobra.Command {
	var (
		o        update.NodeOptions
		roleFile string
		caFile   string
		reboot   bool
		output   string
	)
	cmd := &cobra.Command{
		Use:   "update SOURCE",
		Short: "Write a new image into the inactive A/B slot and boot it next (with 3 tries, then the current slot again)",
		Long: "Update writes the image of SOURCE into the slot this node is not running, checks it against the root hash\n" +
			"of the image's manifest, installs its kernel set and a loader entry with boot counting on the ESP, and, with\n" +
			"--reboot, reboots into it (--stage writes the slot only: the same update run later just adds the entry). The running slot is never written; an interrupted or refused update leaves the node\n" +
			"booting its current slot. SOURCE is the URL of a set served by imgforge serve (https://HOST/sets/ROLE/) or an\n" +
			"OCI reference REGISTRY/REPO:TAG pushed by imgforge push (its boot artifact is TAG-boot). See docs/agent.md.",
		Example: "  imgforge-agent update https://192.0.2.1:8443/sets/lb/ --ca /etc/imgforge/cluster-ca.pem --reboot\n" +
			"  imgforge-agent update registry.example.com/stack/lb:2025-02",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: accepted: text, json", output)
			}
			o.Source = args[0]
			if o.Tries < 1 || o.Tries > 9 {
				return fmt.Errorf("--tries %d: accepted: 1 to 9", o.Tries)
			}
			if o.Trial < 0 {
				return fmt.Errorf("--trial %s: accepted: a positive duration such as 3m", o.Trial)
			}
			if o.Stage && reboot {
				return fmt.Errorf("--stage and --reboot: a staged slot is not booted; accepted: one of the two")
			}
			if roleFile != "" {
				ri, err := agent.ReadRoleInfo(roleFile)
				if err != nil {
					return err
				}
				o.Role = ri.Role
			}
			client, err := httpClient(caFile)
			if err != nil {
				return err
			}
			o.Client = client
			o.Logf = func(f string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), f+"\n", a...) }
			res, err := update.OnNode(cmd.Context(), o)
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return err
				}
			} else if res.Staged {
				fmt.Fprintf(cmd.OutOrStdout(), "slot %s: %s %s (root hash %s), staged: update from the same source to boot it next\n", res.Slot, res.Role, res.Version, res.RootHash)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "slot %s: %s %s (root hash %s), boots next with %s\n", res.Slot, res.Role, res.Version, res.RootHash, res.Entry)
			}
			if !reboot {
				return nil
			}
			fmt.Fprintln(cmd.ErrOrStderr(), "rebooting")
			return rebootNode()
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&reboot, "reboot", false, "reboot into the new slot once it is written")
	fl.BoolVar(&o.Stage, "stage", false, "write the slot but make it no boot entry: a later update from the same source finds it written and only adds the entry")
	fl.IntVar(&o.Tries, "tries", update.Tries, "boots the new slot gets to become healthy before systemd-boot falls back to the current one (1 to 9)")
	fl.DurationVar(&o.Trial, "trial", 0, "how long a boot of the new slot waits for the role's health check before it reboots (0: 10m)")
	fl.StringVar(&caFile, "ca", "", "PEM file of the CA that signs the source's TLS certificate (such as the cluster CA); empty: the system's")
	fl.StringVar(&roleFile, "role-file", imagemeta.RolePath, "the image's role description: an image of another role is refused (empty: not checked)")
	fl.StringVar(&o.ESP, "esp", "", "the folder where the ESP is mounted already (empty: mount it privately for the update)")
	fl.StringVar(&o.Cmdline, "cmdline", update.DefaultCmdline, "the kernel command line (imgforge.slot and imgforge.root)")
	fl.StringVar(&o.SysBlock, "sys-block", update.DefaultSysBlock, "sysfs's block devices")
	fl.StringVar(&o.DevDir, "dev", update.DefaultDevDir, "the device folder")
	fl.StringVar(&o.RunDir, "run-dir", update.DefaultRunDir, "where the update's lock and the ESP's mount point live")
	fl.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// httpClient trusts the CAs of caFile (PEM) for https sources, or the
// system's when caFile is empty.
func httpClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = time.Minute
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("--ca: no PEM certificate in " + caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr}, nil
}
