package seed

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// MaxFileSize caps each file ReadDir reads. A seed's files are a few
// kilobytes; the cap stops a wrong folder from filling memory.
const MaxFileSize = 16 << 20

// ReadDir reads the NoCloud seed in the folder dir: meta-data and
// user-data, which it must hold, and vendor-data and network-config,
// which it may. A file the folder does not hold is nil in the Seed; one it
// holds empty is empty and not nil. The folder is read through os.Root:
// a file that is a symbolic link out of the folder is refused.
func ReadDir(dir string) (Seed, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return Seed{}, fmt.Errorf("reading the seed folder: %w", err)
	}
	defer root.Close()
	var s Seed
	for _, f := range []struct {
		name     string
		dst      *[]byte
		required bool
	}{
		{MetaDataFile, &s.MetaData, true},
		{UserDataFile, &s.UserData, true},
		{VendorDataFile, &s.VendorData, false},
		{NetworkConfigFile, &s.NetworkConfig, false},
	} {
		b, err := readFile(root, f.name)
		if errors.Is(err, fs.ErrNotExist) && !f.required {
			continue
		}
		if err != nil {
			return Seed{}, fmt.Errorf("seed folder %s: %w (a NoCloud seed folder holds meta-data and user-data, and optionally vendor-data and network-config)", dir, err)
		}
		*f.dst = b
	}
	return s, nil
}

func readFile(root *os.Root, name string) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a file", name)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d MiB", name, MaxFileSize>>20)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}
