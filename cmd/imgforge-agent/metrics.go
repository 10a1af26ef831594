package main

import (
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/agent/metrics"
	"github.com/imgforge/imgforge/pkg/agent/render"
)

func newMetricsCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "metrics",
		Short: "Push this node's metrics to the monitoring endpoint (imgforge-metrics.service's command)",
		Long: "Metrics scrapes the node's exporters every 30 s and pushes the samples to the endpoint the agent rendered\n" +
			"into the configuration (Prometheus remote-write), keeping up to 20 scrapes while the endpoint is down.\n" +
			"An invalid configuration ends it with exit status 2.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := metrics.Load(path)
			if err != nil {
				return configError{err}
			}
			s, err := metrics.New(c, slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)))
			if err != nil {
				return err
			}
			return s.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&path, "config", render.MetricsConfigPath, "the configuration imgforge-agent rendered")
	return cmd
}
