package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/agent/esp"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// newHealthCmd is imgforge-health.service's command: boot-complete.target
// needs it, so a boot is marked good (systemd-bless-boot) only once the
// role's service answers.
func newHealthCmd() *cobra.Command {
	var roleFile string
	var wait, interval time.Duration
	var reboot bool
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Wait until the role's health check (role.json) passes; exit 1 when it has not within --wait",
		Long: "Health probes the role's health check from role.json until it passes or --wait ends. With --reboot-if-counted,\n" +
			"a boot from a counted boot entry (one being tried after an update) that is not healthy in time reboots the\n" +
			"machine, so that systemd-boot tries it again or, its tries spent, falls back to the other slot.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ri, err := agent.ReadRoleInfo(roleFile)
			if err != nil {
				return err
			}
			ok := waitHealthy(cmd.Context(), agent.Probe(ri.Health, 5*time.Second), wait, interval)
			if ok {
				fmt.Fprintf(cmd.OutOrStdout(), "imgforge-agent: role %s is healthy (%s check)\n", ri.Role, ri.Health.Type)
				return nil
			}
			err = fmt.Errorf("role %s: its %s health check did not pass within %s", ri.Role, ri.Health.Type, wait)
			if reboot && esp.Counted(esp.EFIVars) {
				fmt.Fprintf(cmd.ErrOrStderr(), "imgforge-agent: %v; this boot entry is on trial: rebooting\n", err)
				if out, rerr := exec.Command("systemctl", "reboot").CombinedOutput(); rerr != nil {
					return fmt.Errorf("%w; systemctl reboot: %v: %s", err, rerr, out)
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&roleFile, "role-file", imagemeta.RolePath, "the image's role description")
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Minute, "how long to wait for the check to pass")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "time between probes")
	cmd.Flags().BoolVar(&reboot, "reboot-if-counted", false, "reboot when not healthy in time and this boot is counted")
	return cmd
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
