package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// ErrUnknown is returned (wrapped) for a role or image no folder defines.
var ErrUnknown = errors.New("unknown definition")

// Folder is one place definitions are read from: a folder on disk or the
// defaults embedded in the binary.
type Folder struct {
	// FS is rooted at the folder. A folder on disk is an os.Root's FS
	// (see imgforge.Catalog), so nothing read through it leaves the
	// folder, through a symbolic link or otherwise.
	FS    fs.FS
	Label string // how messages name the folder: "roles" or "embedded:roles"
}

// Catalog finds role and image definitions. Folders earlier in a list
// override later ones by file name, so files on disk override the embedded
// defaults.
type Catalog struct {
	Roles  []Folder
	Images []Folder
}

// Source is a loaded definition and the folder its relative paths start in.
type Source struct {
	File   string // as messages name it, e.g. "roles/lb.yaml"
	Folder Folder
	Pos    map[string]Pos // field path -> where it was written
}

// At returns the position of a field, or the file alone when unknown.
func (s Source) At(field string) Pos {
	if p, ok := s.Pos[field]; ok {
		return p
	}
	return Pos{File: s.File, Field: field}
}

// Errorf makes an Error located at field.
func (s Source) Errorf(field, format string, args ...any) *Error {
	p := s.At(field)
	return &Error{File: p.File, Line: p.Line, Col: p.Col, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func folderNames(folders []Folder) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range folders {
		matches, _ := fs.Glob(f.FS, "*.yaml")
		for _, m := range matches {
			n := strings.TrimSuffix(m, ".yaml")
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out
}

// RoleNames lists every role the catalog defines.
func (c *Catalog) RoleNames() []string { return folderNames(c.Roles) }

// ImageNames lists every image the catalog defines.
func (c *Catalog) ImageNames() []string { return folderNames(c.Images) }

func find(folders []Folder, kind, name string, known []string) (Folder, []byte, string, error) {
	if !validName(name) {
		return Folder{}, nil, "", fmt.Errorf("%w: %s %q: known %ss: %s", ErrUnknown, kind, name, kind, strings.Join(known, ", "))
	}
	for _, f := range folders {
		file := path.Join(f.Label, name+".yaml")
		data, err := ReadFile(f.FS, name+".yaml", file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		var se *Error
		if errors.As(err, &se) {
			return Folder{}, nil, "", err
		}
		if err != nil {
			return Folder{}, nil, "", fmt.Errorf("reading %s: %w", file, err)
		}
		return f, data, file, nil
	}
	return Folder{}, nil, "", fmt.Errorf("%w: %s %q: known %ss: %s", ErrUnknown, kind, name, kind, strings.Join(known, ", "))
}

// Role loads and validates the role called name.
func (c *Catalog) Role(name string) (*Role, Source, error) {
	known := c.RoleNames()
	f, data, file, err := find(c.Roles, "role", name, known)
	if err != nil {
		return nil, Source{}, err
	}
	r, src, err := ParseRole(file, data)
	if err != nil {
		return nil, Source{}, err
	}
	src.Folder = f
	if r.Name != name {
		return nil, Source{}, src.Errorf("name", "is %q but the file is named %s.yaml; they must match", r.Name, name)
	}
	if err := r.Validate(src, known); err != nil {
		return nil, Source{}, err
	}
	return r, src, nil
}

// Image loads and validates the image called name.
func (c *Catalog) Image(name string) (*Image, Source, error) {
	f, data, file, err := find(c.Images, "image", name, c.ImageNames())
	if err != nil {
		return nil, Source{}, err
	}
	im, src, err := ParseImage(file, data)
	if err != nil {
		return nil, Source{}, err
	}
	src.Folder = f
	if im.Name != name {
		return nil, Source{}, src.Errorf("name", "is %q but the file is named %s.yaml; they must match", im.Name, name)
	}
	if err := im.Validate(src); err != nil {
		return nil, Source{}, err
	}
	return im, src, nil
}

// ParseRole decodes a role definition strictly; it does not validate values.
func ParseRole(file string, data []byte) (*Role, Source, error) {
	var r Role
	pos, err := decodeStrict(file, data, &r)
	if err != nil {
		return nil, Source{}, err
	}
	return &r, Source{File: file, Pos: pos}, nil
}

// ParseImage decodes an image definition strictly; it does not validate values.
func ParseImage(file string, data []byte) (*Image, Source, error) {
	var im Image
	pos, err := decodeStrict(file, data, &im)
	if err != nil {
		return nil, Source{}, err
	}
	return &im, Source{File: file, Pos: pos}, nil
}
