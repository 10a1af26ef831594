package debian

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// Chroot runs commands in a root filesystem unpacked from a tar, through
// mmdebstrap (so it works as root and rootless alike), and copies files
// in before and out after. Nothing it does changes the tar.
type Chroot struct {
	On       string            // root filesystem tar
	Upload   map[string]string // host path -> path inside
	Commands []string          // shell commands run inside, in order
	Download map[string]string // path inside -> host path
	Suite    string
	Sources  []string
	Epoch    int64
	TempDir  string
	Rootless bool
	Log      io.Writer
	Command  string // the mmdebstrap binary; "mmdebstrap" when empty
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Args is the mmdebstrap command line.
func (c *Chroot) Args() []string {
	mode := "root"
	if c.Rootless {
		mode = "unshare"
	}
	args := []string{"--mode=" + mode, "--variant=custom", "--skip=update", "--verbose", "--setup-hook=tar-in " + c.On + " /"}
	for _, host := range sortedKeys(c.Upload) {
		args = append(args, fmt.Sprintf("--customize-hook=upload %s %s", host, c.Upload[host]))
	}
	for _, cmd := range c.Commands {
		args = append(args, `--customize-hook=chroot "$1" /bin/sh -euc `+shellQuote(cmd))
	}
	for _, inside := range sortedKeys(c.Download) {
		args = append(args, fmt.Sprintf("--customize-hook=download %s %s", inside, c.Download[inside]))
	}
	args = append(args, c.Suite, "/dev/null")
	return append(args, c.Sources...)
}

// Run runs the commands; see Bootstrap.Run for how ctx is honoured.
func (c *Chroot) Run(ctx context.Context) error {
	b := &Bootstrap{Epoch: c.Epoch, TempDir: c.TempDir, Log: c.Log, Command: c.Command}
	return b.run(ctx, c.Args())
}
