package layer

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"sort"
)

// File is one entry of a layer built from memory.
type File struct {
	Path     string // clean, without a leading slash: "etc/imgforge/role.json"
	Type     byte   // tar.TypeReg, tar.TypeDir or tar.TypeSymlink
	Mode     int64
	UID, GID int
	Data     []byte // content of a regular file
	Linkname string // target of a symlink
}

// WriteFiles writes files as a layer on top of lower, in path order. Parent
// directories that neither lower nor files have are added (root, 0755);
// parents lower has are left to it.
func WriteFiles(w io.Writer, files []File, lower Index, n Normalizer) (*Result, error) {
	byPath := map[string]File{}
	for _, f := range files {
		p := Clean(f.Path)
		if p == "." {
			return nil, fmt.Errorf("layer file with an empty path")
		}
		if _, dup := byPath[p]; dup {
			return nil, fmt.Errorf("layer file %s is given twice", p)
		}
		f.Path = p
		byPath[p] = f
	}
	for p := range byPath {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if pf, ok := byPath[d]; ok {
				if pf.Type != tar.TypeDir {
					return nil, fmt.Errorf("cannot write %s: /%s is not a directory in the layer", p, d)
				}
				continue
			}
			if e, ok := lower[d]; ok {
				if e.Type != tar.TypeDir {
					return nil, fmt.Errorf("cannot write %s: /%s is not a directory in the image", p, d)
				}
				continue
			}
			byPath[d] = File{Path: d, Type: tar.TypeDir, Mode: 0o755}
		}
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	tw := tar.NewWriter(w)
	res := &Result{Index: Index{}, Files: map[string][]byte{}}
	for _, p := range paths {
		f := byPath[p]
		h := &tar.Header{Typeflag: f.Type, Name: p, Mode: f.Mode, Uid: f.UID, Gid: f.GID, Linkname: f.Linkname, ModTime: n.Epoch}
		switch f.Type {
		case tar.TypeReg:
			h.Size = int64(len(f.Data))
		case tar.TypeDir, tar.TypeSymlink:
		default:
			return nil, fmt.Errorf("layer file %s: unsupported type %q", p, f.Type)
		}
		nh := n.header(p, h)
		if err := tw.WriteHeader(nh); err != nil {
			return nil, fmt.Errorf("writing %s: %w", p, err)
		}
		digest := ""
		if f.Type == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, fmt.Errorf("writing %s: %w", p, err)
			}
			sum := sha256.Sum256(f.Data)
			digest = hex.EncodeToString(sum[:])
		}
		res.Index[p] = entryOf(nh, digest)
		res.Entries++
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	return res, nil
}
