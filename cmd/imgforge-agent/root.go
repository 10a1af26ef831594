package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/version"
)

// exitConfig is the exit status for invalid settings; the systemd unit
// does not restart on it (RestartPreventExitStatus=2).
const exitConfig = 2

// configError marks errors in the node's settings.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

func newRootCmd(stdout, stderr io.Writer, hup <-chan os.Signal) *cobra.Command {
	root := &cobra.Command{
		Use:           "imgforge-agent",
		Short:         "Configure an imgforge node from cloud-init and its discovered peers",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRunCmd(hup), newStatusCmd(), newCheckCmd(), newHealthCmd(), newMountESPCmd(), newUpdateCmd(), newMetricsCmd(), newMariaDBCmd())
	return root
}

type runFlags struct {
	paths     config.Paths
	listen    string
	roleFile  string
	snapshot  string
	root      string
	templates string
	control   string
}

func (f *runFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.paths.UserData, "user-data", config.UserDataPath, "cloud-init's stored user-data")
	fl.StringVar(&f.paths.InstanceData, "instance-data", config.InstanceDataPath, "cloud-init's instance data")
	fl.StringVar(&f.roleFile, "role-file", imagemeta.RolePath, "the image's role description (empty: do not check)")
}

// load reads and validates the settings, and checks them against the image.
func (f *runFlags) load() (*config.Config, error) {
	c, err := config.Load(f.paths, config.Host{ReadFile: os.ReadFile, Addresses: config.HostAddresses})
	if err != nil {
		return nil, configError{err}
	}
	if f.roleFile != "" {
		ri, err := agent.ReadRoleInfo(f.roleFile)
		if err != nil {
			return nil, err
		}
		if err := agent.CheckRole(c, ri); err != nil {
			return nil, configError{fmt.Errorf("%s: %w", f.paths.UserData, err)}
		}
		agent.CompleteFromRole(c, ri)
	}
	return c, nil
}

func newRunCmd(hup <-chan os.Signal) *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the agent (the systemd unit's command): read the settings, discover peers, render on every change",
		Long: "Run reads the imgforge: section of the user-data cloud-init stored, starts discovery and renders the role's\n" +
			"configuration on every change. SIGHUP re-reads the settings; invalid ones are logged and the running ones kept.\n" +
			"Invalid settings at start end it with exit status 2 before anything is written.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			logger := log.New(cmd.ErrOrStderr(), "", 0)
			var health func(context.Context) bool
			var role *imagemeta.RoleInfo
			var reports *agent.ExporterReports
			if f.roleFile != "" {
				ri, err := agent.ReadRoleInfo(f.roleFile)
				if err != nil {
					return err
				}
				health = agent.Probe(ri.Health, 2*time.Second)
				role = &ri
			}
			var a *agent.Agent
			if role != nil && len(role.Reports) > 0 {
				reports = &agent.ExporterReports{Role: role, Options: func() map[string]string {
					if c := a.Config(); c != nil {
						return c.Options
					}
					return nil
				}}
			}
			a = agent.New(agent.Options{
				Load:     f.load,
				Renderer: agent.Renderers{&agent.SnapshotFile{Path: f.snapshot}, agent.NewRoleRenderer(f.root, f.templates, role)},
				Health:   health,
				Logf:     logger.Printf,
				Version:  version.Version,
				Reports:  reports,
			})
			l, err := agent.Listen(f.listen)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			served := make(chan error, 1)
			go func() { served <- agent.Serve(ctx, l, a) }()
			go runControl(ctx, a, f.control, role, logger.Printf)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						a.Reload()
					}
				}
			}()
			err = a.Run(ctx)
			if errors.Is(err, config.ErrNoSection) {
				// A node booted without cluster settings (such as imgforge
				// run's default seed) is a standalone machine: nothing to do.
				logger.Printf("%v; nothing to configure", err)
				err = nil
			}
			cancel()
			if serr := <-served; err == nil {
				err = serr
			}
			return err
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&f.listen, "listen", agent.DefaultListen, "address of the status endpoint (GET /status, /metrics)")
	cmd.Flags().StringVar(&f.control, "control", strconv.Itoa(agent.DefaultControlPort), "the control endpoint (imgforge rollout; mutual TLS, operator certificates of the cluster CA only): a port on the node's address, HOST:PORT, or off")
	cmd.Flags().StringVar(&f.snapshot, "snapshot", agent.DefaultSnapshotPath, "where to write the current snapshot as JSON")
	cmd.Flags().StringVar(&f.root, "root", "/", "the node's root file system, where the role's configuration is written")
	cmd.Flags().StringVar(&f.templates, "templates", agent.TemplatesDir, "the image's templates (ROLE/ and common/)")
	return cmd
}

func newStatusCmd() *cobra.Command {
	var addr, output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the running agent's members, rendered files, last reload and last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output %q: accepted: text, json", output)
			}
			st, raw, err := agent.FetchStatus(cmd.Context(), addr)
			if err != nil {
				return err
			}
			if output == "json" {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			agent.WriteStatusText(cmd.OutOrStdout(), st)
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", agent.DefaultListen, "the agent's status endpoint")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newCheckCmd() *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the settings cloud-init stored and print them (secrets left out) as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.load()
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(c)
		},
	}
	f.add(cmd)
	return cmd
}
