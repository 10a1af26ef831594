package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// MaxFileSize is the most a definition file may hold: role and image
// definitions here, and the cluster and machines files other packages
// decode with Decode. A person writes far less; a larger file is a
// mistake, or an attempt to make imgforge spend memory and time.
const MaxFileSize = 1 << 20

// ReadFile reads the definition file name from fsys, refusing one larger
// than MaxFileSize without reading the rest; file is how messages name it.
func ReadFile(fsys fs.FS, name, file string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readCapped(f, file)
}

// ReadPath is ReadFile for a path on the host (a cluster or machines file).
func ReadPath(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := readCapped(f, path)
	var se *Error
	if err != nil && !errors.As(err, &se) {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return data, err
}

func readCapped(r io.Reader, file string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: file, Msg: fmt.Sprintf("the file is larger than %d KiB (1 MiB), the most a definition file may be", MaxFileSize>>10)}
	}
	return data, nil
}
