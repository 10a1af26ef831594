package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/esp"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// newHealthCmd is imgforge-health.service's command: boot-complete.target
// needs it, so a boot is marked good (systemd-bless-boot) only once the
// role's service answers.
func newHealthCmd() *cobra.Command {
	var roleFile, cmdlineFile, userData, addr string
	var wait, interval time.Duration
	var reboot bool
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Wait until the role's health check (role.json) passes; exit 1 when it has not within --wait",
		Long: "Health probes the role's health check from role.json until it passes or --wait ends; on a node whose user-data\n" +
			"has an imgforge: section, only after the agent has rendered the node's configuration. With --reboot-if-counted,\n" +
			"a boot from a counted boot entry (one being tried after an update) that is not healthy in time reboots the\n" +
			"machine, so that systemd-boot tries it again or, its tries spent, falls back to the other slot.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ri, err := agent.ReadRoleInfo(roleFile)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("wait") {
				// The entry under trial says how long it waits
				// (imgforge-agent update --trial).
				if d, ok := trialOf(cmdlineFile); ok {
					wait = d
				}
			}
			probe := agent.Probe(ri.Health, 5*time.Second)
			if agentConfigured(userData) {
				// The role's service answers with the image's
				// first-boot configuration before the agent has
				// rendered the node's: an image whose rendered
				// configuration breaks the service would be marked
				// good. So the agent must have rendered first.
				probe = afterRender(probe, func(ctx context.Context) (uint64, error) {
					st, _, err := agent.FetchStatus(ctx, addr)
					return st.Renders, err
				})
			}
			ok := waitHealthy(cmd.Context(), probe, wait, interval)
			if ok {
				fmt.Fprintf(cmd.OutOrStdout(), "imgforge-agent: role %s is healthy (%s check)\n", ri.Role, ri.Health.Type)
				return nil
			}
			err = fmt.Errorf("role %s: its %s health check did not pass within %s", ri.Role, ri.Health.Type, wait)
			if reboot && esp.Counted(esp.EFIVars) {
				fmt.Fprintf(cmd.ErrOrStderr(), "imgforge-agent: %v; this boot entry is on trial: rebooting\n", err)
				if out, rerr := exec.Command("systemctl", "reboot").CombinedOutput(); rerr != nil {
					return fmt.Errorf("%w; systemctl reboot: %w: %s", err, rerr, out)
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&roleFile, "role-file", imagemeta.RolePath, "the image's role description")
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Minute, "how long to wait for the check to pass")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "time between probes")
	cmd.Flags().BoolVar(&reboot, "reboot-if-counted", false, "reboot when not healthy in time and this boot is counted")
	cmd.Flags().StringVar(&cmdlineFile, "cmdline", "/proc/cmdline", "the kernel command line: imgforge.trial=SECONDS sets --wait when it is not given")
	cmd.Flags().StringVar(&userData, "user-data", config.UserDataPath, "cloud-init's stored user-data: with an imgforge: section, the agent must have rendered the node's configuration before the check counts")
	cmd.Flags().StringVar(&addr, "addr", agent.DefaultListen, "the agent's status endpoint")
	return cmd
}

// agentConfigured says whether the node's user-data has an imgforge:
// section, so that the agent renders the role's configuration on this
// boot. Unreadable user-data counts as configured: the gate then waits
// for the agent, the safe side.
func agentConfigured(userData string) bool {
	raw, err := os.ReadFile(userData)
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	parts, err := config.CloudConfigs(raw)
	if err != nil {
		return true
	}
	for _, p := range parts {
		if _, _, err := config.Parse(userData, p.Data); !errors.Is(err, config.ErrNoSection) {
			return true
		}
	}
	return false
}

// afterRender passes only once renders says the agent has rendered the
// node's configuration at least once, and then probe passes.
func afterRender(probe func(context.Context) bool, renders func(context.Context) (uint64, error)) func(context.Context) bool {
	return func(ctx context.Context) bool {
		n, err := renders(ctx)
		if err != nil || n == 0 {
			return false
		}
		return probe(ctx)
	}
}

func waitHealthy(ctx context.Context, probe func(context.Context) bool, wait, interval time.Duration) bool {
	if probe == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if probe(ctx) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// newMountESPCmd mounts the ESP systemd-boot started from, for
// systemd-bless-boot (imgforge-esp.service).
func newMountESPCmd() *cobra.Command {
	var efivars string
	cmd := &cobra.Command{
		Use:   "mount-esp DIR",
		Short: "Mount the EFI system partition this machine booted from on DIR (nothing to do when not booted by systemd-boot)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := esp.Mount(efivars, args[0])
			if errors.Is(err, esp.ErrNoLoader) {
				fmt.Fprintf(cmd.OutOrStdout(), "imgforge-agent: %v: no ESP to mount\n", err)
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringVar(&efivars, "efivars", esp.EFIVars, "where efivarfs is mounted")
	return cmd
}

// trialOf reads imgforge.trial=SECONDS (1 to 86400) from the kernel
// command line in file.
func trialOf(file string) (time.Duration, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "imgforge.trial="); ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 86400 {
				return 0, false
			}
			return time.Duration(n) * time.Second, true
		}
	}
	return 0, false
}
