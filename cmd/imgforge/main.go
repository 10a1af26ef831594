// Command imgforge builds immutable, per-role machine images.
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
	err := newRootCmd(os.Stdout, os.Stderr, os.Getenv).ExecuteContext(ctx)
	stop()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "imgforge: interrupted; nothing was written")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "imgforge: %v\n", err)
		os.Exit(1)
	}
}
