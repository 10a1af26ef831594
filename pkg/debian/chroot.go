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
	Commands [][]string        // commands run inside, in order, each as its words (no shell)
	Download map[string]string // path inside -> host path
	Suite    string
	Sources  []string
	Epoch    int64
	TempDir  string
	Rootless bool
	Log      io.Writer
	Command  string // the mmdebstrap binary; "mmdebstrap" when empty
}

// commandEnv is the environment variable that holds the words of
// Commands[i], one a line.
func commandEnv(i int) string { return fmt.Sprintf("IMGFORGE_ARGV_%d", i) }

// Args is the mmdebstrap command line; its hooks read Env.
func (c *Chroot) Args() []string {
	mode := "root"
	if c.Rootless {
		mode = "unshare"
	}
	args := []string{"--mode=" + mode, "--variant=custom", "--skip=update", "--verbose", "--setup-hook=tar-in " + hookWord(c.On) + " /"}
	for _, host := range sortedKeys(c.Upload) {
		args = append(args, fmt.Sprintf("--customize-hook=upload %s %s", hookWord(host), hookWord(c.Upload[host])))
	}
	for i := range c.Commands {
		args = append(args, argvHook("customize", commandEnv(i)))
	}
	for _, inside := range sortedKeys(c.Download) {
		args = append(args, fmt.Sprintf("--customize-hook=download %s %s", hookWord(inside), hookWord(c.Download[inside])))
	}
	args = append(args, c.Suite, "/dev/null")
	return append(args, c.Sources...)
}

// Env is what Args' hooks read from the environment: the words of every
// command.
func (c *Chroot) Env() []string {
	var env []string
	for i, argv := range c.Commands {
		env = append(env, commandEnv(i)+"="+strings.Join(argv, "\n"))
	}
	return env
}

func (c *Chroot) check() error {
	for _, argv := range c.Commands {
		if len(argv) == 0 {
			return fmt.Errorf("an empty command")
		}
		for _, w := range argv {
			if w == "" {
				return fmt.Errorf("command %q has an empty word", argv)
			}
			if err := checkValue("command word", w); err != nil {
				return err
			}
		}
	}
	for k, v := range c.Upload {
		if err := checkValue("upload", k+v); err != nil {
			return err
		}
	}
	for k, v := range c.Download {
		if err := checkValue("download", k+v); err != nil {
			return err
		}
	}
	for _, s := range c.Sources {
		if err := checkValue("apt source", s); err != nil {
			return err
		}
	}
	if err := checkValue("base tar", c.On); err != nil {
		return err
	}
	return checkValue("temporary folder", c.TempDir)
}

// Run runs the commands; see Bootstrap.Run for how ctx is honoured.
func (c *Chroot) Run(ctx context.Context) error {
	if err := c.check(); err != nil {
		return fmt.Errorf("mmdebstrap: %w", err)
	}
	b := &Bootstrap{Epoch: c.Epoch, TempDir: c.TempDir, Rootless: c.Rootless, Log: c.Log, Command: c.Command}
	return b.run(ctx, c.Args(), c.Env())
}
