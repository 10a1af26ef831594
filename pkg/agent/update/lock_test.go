package update

import (
	"crypto/sha256"
	"hash"
	"os"

	"golang.org/x/sys/unix"
)

func flock(f *os.File) error { return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) }

func newSHA() hash.Hash { return sha256.New() }
