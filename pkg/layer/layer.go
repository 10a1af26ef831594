// Package layer writes the tar streams that become OCI image layers:
// normalized copies of root filesystem tars, the difference between two
// root filesystems (with OCI whiteouts), and overlay layers built from
// files in memory. Every stream it writes is deterministic: entries in a
// fixed order, times clamped to SOURCE_DATE_EPOCH, no user or host names.
package layer

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/imgforge/imgforge/pkg/ctxio"
)

// Entry is what a layer knows about one path of a root filesystem.
type Entry struct {
	Type     byte   `json:"t"`
	Mode     int64  `json:"m"`
	UID      int    `json:"u"`
	GID      int    `json:"g"`
	Size     int64  `json:"s,omitempty"`
	Linkname string `json:"l,omitempty"`
	Major    int64  `json:"ma,omitempty"`
	Minor    int64  `json:"mi,omitempty"`
	ModTime  int64  `json:"mt"`
	Digest   string `json:"d,omitempty"` // sha256 of a regular file's content
	Xattrs   string `json:"x,omitempty"` // canonical text of PAX xattr records
}

// Index maps a clean path ("etc/passwd", no leading "./" or "/") to its entry.
type Index map[string]Entry

// Clean turns a tar name such as "./etc/" into "etc"; the root is ".".
func Clean(name string) string {
	n := path.Clean("/" + name)
	if n == "/" {
		return "."
	}
	return n[1:]
}

func xattrText(h *tar.Header) string {
	var keys []string
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%x;", k, h.PAXRecords[k])
	}
	return b.String()
}

// Filter decides which entries of a root filesystem tar a layer keeps.
type Filter func(name string, h *tar.Header) bool

// DropDeviceNodes drops everything below /dev (a booted system mounts
// devtmpfs there; container runtimes make their own) and every device node.
func DropDeviceNodes(name string, h *tar.Header) bool {
	if strings.HasPrefix(name, "dev/") {
		return false
	}
	return h.Typeflag != tar.TypeChar && h.Typeflag != tar.TypeBlock && h.Typeflag != tar.TypeFifo
}

// Normalizer rewrites tar headers into the canonical form every imgforge
// layer uses.
type Normalizer struct {
	Epoch time.Time // times later than this are clamped to it
	// RootOwned are clean paths whose owner and group become root's
	// (0:0), whoever the tar says owns them.
	RootOwned []string
}

func (n Normalizer) header(name string, h *tar.Header) *tar.Header {
	mt := h.ModTime
	if mt.After(n.Epoch) || mt.IsZero() {
		mt = n.Epoch
	}
	out := &tar.Header{
		Typeflag: h.Typeflag,
		Name:     name,
		Linkname: h.Linkname,
		Size:     h.Size,
		Mode:     h.Mode & 0o7777,
		Uid:      h.Uid,
		Gid:      h.Gid,
		ModTime:  mt.Truncate(time.Second).UTC(),
		Devmajor: h.Devmajor,
		Devminor: h.Devminor,
		Format:   tar.FormatPAX,
	}
	if slices.Contains(n.RootOwned, name) {
		out.Uid, out.Gid = 0, 0
	}
	if h.Typeflag == tar.TypeDir && !strings.HasSuffix(out.Name, "/") {
		out.Name += "/"
	}
	if h.Typeflag == tar.TypeLink {
		out.Linkname = Clean(h.Linkname)
	}
	if h.Typeflag == tar.TypeReg {
		out.Typeflag = tar.TypeReg
	}
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			if out.PAXRecords == nil {
				out.PAXRecords = map[string]string{}
			}
			out.PAXRecords[k] = v
		}
	}
	return out
}

// entryOf describes a normalized header; digest is the content's sha256.
func entryOf(h *tar.Header, digest string) Entry {
	return Entry{
		Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid, Size: h.Size,
		Linkname: h.Linkname, Major: h.Devmajor, Minor: h.Devminor,
		ModTime: h.ModTime.Unix(), Digest: digest, Xattrs: xattrText(h),
	}
}

// Result describes a tar stream a function here wrote.
type Result struct {
	Index   Index
	Entries int
	// Files holds the content of the paths asked for with Keep, such as
	// etc/passwd and var/lib/dpkg/status.
	Files map[string][]byte
}

// Normalize copies the root filesystem tar r to w in canonical form,
// dropping entries filter rejects, and indexes what it wrote. The content
// of the regular files keep names is returned in Result.Files; a name in
// keep may be a path.Match pattern, such as usr/share/doc/*/copyright.
//
// It stops with ctx's error once ctx is done, within one buffer.
func Normalize(ctx context.Context, w io.Writer, r io.Reader, n Normalizer, filter Filter, keep []string) (*Result, error) {
	tr := tar.NewReader(ctxio.Reader(ctx, r))
	tw := tar.NewWriter(ctxio.Writer(ctx, w))
	res := &Result{Index: Index{}, Files: map[string][]byte{}}
	keeps := keeper(keep)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading root filesystem tar: %w", err)
		}
		name := Clean(h.Name)
		if name == "." {
			continue
		}
		if filter != nil && !filter(name, h) {
			continue
		}
		if err := copyEntry(tw, tr, n.header(name, h), name, res, keeps(name)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	return res, nil
}

// keeper returns whether a clean path is one of keep: a path, or a
// path.Match pattern. A malformed pattern matches nothing.
func keeper(keep []string) func(name string) bool {
	exact := map[string]bool{}
	var globs []string
	for _, k := range keep {
		if strings.ContainsAny(k, "*?[\\") {
			globs = append(globs, k)
		} else {
			exact[k] = true
		}
	}
	return func(name string) bool {
		if exact[name] {
			return true
		}
		for _, g := range globs {
			if ok, _ := path.Match(g, name); ok {
				return true
			}
		}
		return false
	}
}

func copyEntry(tw *tar.Writer, r io.Reader, h *tar.Header, name string, res *Result, keep bool) error {
	if err := tw.WriteHeader(h); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	digest := ""
	if h.Typeflag == tar.TypeReg {
		hs := sha256.New()
		dst := io.MultiWriter(tw, hs)
		var kept strings.Builder
		if keep {
			dst = io.MultiWriter(dst, &kept)
		}
		if _, err := io.CopyN(dst, r, h.Size); err != nil {
			return fmt.Errorf("copying %s: %w", name, err)
		}
		digest = hex.EncodeToString(hs.Sum(nil))
		if keep {
			res.Files[name] = []byte(kept.String())
		}
	}
	res.Index[name] = entryOf(h, digest)
	res.Entries++
	return nil
}
