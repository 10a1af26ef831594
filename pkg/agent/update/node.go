package update

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of a node's paths.
const (
	DefaultCmdline  = "/proc/cmdline"
	DefaultSysBlock = "/sys/block"
	DefaultDevDir   = "/dev"
	DefaultRunDir   = "/run/imgforge"
)

// NodeOptions say how to update the running node.
type NodeOptions struct {
	Source string // URL of a served set, or an OCI reference
	Client *http.Client
	Role   string // the node's role: an image of another is refused; empty: not checked

	Cmdline, SysBlock, DevDir string // DefaultCmdline, DefaultSysBlock, DefaultDevDir
	// RunDir holds the update's lock file and the ESP's private mount
	// point; DefaultRunDir.
	RunDir string
	// ESP is the folder where the ESP is mounted already; empty: it is
	// mounted (vfat, mount(2)) at a private folder in RunDir for the
	// update and unmounted after.
	ESP  string
	Logf func(format string, args ...any)
	// Tries and Trial are the new entry's boot counting and health wait
	// (see Options).
	Tries int
	Trial time.Duration
	// Stage writes the slot without an entry (Options.Stage).
	Stage bool
}

// ErrBusy is returned when another update runs on the node.
var ErrBusy = errors.New("another update is running on this node")

// OnNode finds the running slot and its disk, takes the node's update
// lock, mounts the ESP, and updates the other slot from o.Source.
func OnNode(ctx context.Context, o NodeOptions) (*Result, error) {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&o.Cmdline, DefaultCmdline)
	def(&o.SysBlock, DefaultSysBlock)
	def(&o.DevDir, DefaultDevDir)
	def(&o.RunDir, DefaultRunDir)
	src, err := NewSource(o.Source, o.Client)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.RunDir, 0o700); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(o.RunDir, "update.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the update lock: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, fmt.Errorf("%w (%s is locked)", ErrBusy, lock.Name())
	}
	node, _, err := FindNode(o.Cmdline, o.SysBlock, o.DevDir)
	if err != nil {
		return nil, err
	}
	esp := o.ESP
	if esp == "" {
		dir, unmount, err := MountESP(node.ESP, o.RunDir)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err := unmount(); err != nil && o.Logf != nil {
				o.Logf("unmounting the ESP: %v", err)
			}
		}()
		esp = dir
	}
	return Update(ctx, Options{Source: src, Disk: node.Disk, Active: node.Slot, ESP: esp, Role: o.Role, Logf: o.Logf, Tries: o.Tries, Trial: o.Trial, Stage: o.Stage})
}

// MountESP mounts the vfat file system of dev at a new folder in dir
// that only root can enter, without devices, set-uid or executables.
// unmount unmounts it and removes the folder.
func MountESP(dev, dir string) (mnt string, unmount func() error, err error) {
	mnt, err = os.MkdirTemp(dir, "esp-")
	if err != nil {
		return "", nil, fmt.Errorf("making the ESP's mount point: %w", err)
	}
	if err := unix.Mount(dev, mnt, "vfat", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "umask=0077"); err != nil {
		os.Remove(mnt)
		return "", nil, fmt.Errorf("mounting the ESP %s (vfat): %w", dev, err)
	}
	return mnt, func() error {
		if err := unix.Unmount(mnt, 0); err != nil {
			return err
		}
		return os.Remove(mnt)
	}, nil
}
