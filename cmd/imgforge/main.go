// Command imgforge builds immutable, per-role machine images.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes, as the README documents them.
const (
	exitOK        = 0
	exitFailure   = 1   // the command ran and failed
	exitUsage     = 2   // imgforge was called wrongly: an unknown command or flag, a bad flag value, missing arguments
	exitInterrupt = 130 // SIGINT or SIGTERM stopped it (128 + SIGINT, as shells report)
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run runs imgforge with args and returns its exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	root := newRootCmd(stdout, stderr, getenv)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	code := exitCode(ctx, cmd, err)
	switch code {
	case exitInterrupt:
		fmt.Fprintln(stderr, "imgforge: interrupted; nothing was written")
	case exitUsage:
		fmt.Fprintf(stderr, "imgforge: %v\n", err)
		if cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	default:
		fmt.Fprintf(stderr, "imgforge: %v\n", err)
	}
	return code
}

// exitCode is the exit code of err, which cmd returned.
func exitCode(ctx context.Context, cmd *cobra.Command, err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		return exitInterrupt
	case errors.As(err, &ue):
		return exitUsage
	case cmd != nil && !cmd.Runnable():
		// Only cobra itself fails a command that does not run: an unknown
		// (sub)command.
		return exitUsage
	}
	return exitFailure
}

// usageError is an error in how imgforge was called rather than in what
// it did: a flag or argument it refuses (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usage marks err, when not nil, as a usage error.
func usage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

// markUsageErrors makes cobra's own refusals of flags and arguments, in
// root and every command below it, usage errors.
func markUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage(err) })
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if args := c.Args; args != nil {
			c.Args = func(cmd *cobra.Command, a []string) error { return usage(args(cmd, a)) }
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
