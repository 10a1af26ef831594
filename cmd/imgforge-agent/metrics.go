package main

import (
	"log/slog"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/imgforge/imgforge/pkg/agent/metrics"
	"github.com/imgforge/imgforge/pkg/agent/render"
)

func newMetricsCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "metrics",
		Short: "Push this node's metrics and relay its traces to the monitoring endpoints (imgforge-metrics.service's command)",
		Long: "Metrics scrapes the node's exporters every 30 s and pushes the samples to the endpoint the agent rendered\n" +
			"into the configuration (Prometheus remote-write), keeping up to 20 scrapes while the endpoint is down.\n" +
			"With traces_url it also takes OTLP/HTTP trace exports on loopback (127.0.0.1:4318, POST /v1/traces)\n" +
			"and forwards them to that endpoint, keeping them up to 2 minutes while it is down.\n" +
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
			g, ctx := errgroup.WithContext(cmd.Context())
			g.Go(func() error { return s.Run(ctx) })
			if r := s.Relay(); r != nil {
				g.Go(func() error { return r.Serve(ctx, c.Listen()) })
			}
			return g.Wait()
		},
	}
	cmd.Flags().StringVar(&path, "config", render.MetricsConfigPath, "the configuration imgforge-agent rendered")
	return cmd
}
