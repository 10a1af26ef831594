// Command imgforge-agent configures an imgforge node at boot: it reads the
// imgforge: section of the node's cloud-init user-data, finds the
// cluster's other nodes, and renders the role's configuration whenever
// they change. See docs/agent.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	err := newRootCmd(os.Stdout, os.Stderr, hup).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "imgforge-agent: %v\n", err)
		var ce configError
		if errors.As(err, &ce) {
			os.Exit(exitConfig)
		}
		os.Exit(1)
	}
}
