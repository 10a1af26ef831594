package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/imgforge/imgforge/pkg/ctxio"
)

// Flatten writes to w one tar holding the root filesystem that the layer
// tars at paths (lowest first) make together, as a container runtime would
// unpack them: later layers replace earlier entries, and whiteouts
// (".wh.NAME", ".wh..wh..opq") remove what lower layers had. Extended
// attributes other than security.*, user.* and trusted.* are dropped. Entries keep
// the order of the lowest layer that has them; entries no lower layer has
// follow, in their layer's order. filter, when not nil, drops entries (and
// nothing else: a dropped directory's children are asked separately).
//
// It stops with ctx's error once ctx is done, within one buffer.
func Flatten(ctx context.Context, w io.Writer, paths []string, filter Filter) error {
	w = ctxio.Writer(ctx, w)
	if len(paths) == 0 {
		return errors.New("flatten: no layers")
	}
	files := make([]*os.File, len(paths))
	for i, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("flatten: %w", err)
		}
		defer f.Close()
		files[i] = f
	}

	type ref struct {
		layer  int
		h      *tar.Header
		offset int64
	}
	// upper holds the winning entry of every path some layer above the
	// lowest writes; deleted holds paths whiteouts removed from below.
	upper := map[string]ref{}
	var order []string // first appearance order of upper paths
	deleted := map[string]bool{}
	opaque := map[string]bool{}
	for i := 1; i < len(files); i++ {
		cr := &countingReader{r: ctxio.Reader(ctx, files[i])}
		tr := tar.NewReader(cr)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("flatten: reading %s: %w", paths[i], err)
			}
			name := Clean(h.Name)
			dir, base := path.Split(name)
			dir = strings.TrimSuffix(dir, "/")
			if dir == "" {
				dir = "."
			}
			switch {
			case base == WhiteoutPrefix+WhiteoutPrefix+".opq":
				// Opaque directory: nothing below it from lower layers.
				opaque[dir] = true
				for p := range upper {
					if under(p, dir) && upper[p].layer < i {
						delete(upper, p)
					}
				}
				continue
			case strings.HasPrefix(base, WhiteoutPrefix):
				gone := path.Join(dir, strings.TrimPrefix(base, WhiteoutPrefix))
				deleted[gone] = true
				for p := range upper {
					if p == gone || under(p, gone) {
						delete(upper, p)
					}
				}
				continue
			}
			if _, seen := upper[name]; !seen {
				order = append(order, name)
			}
			upper[name] = ref{layer: i, h: h, offset: cr.n}
		}
	}
	isDeleted := func(p string) bool {
		for q := p; ; q = path.Dir(q) {
			if deleted[q] || (q != p && opaque[q]) {
				return true
			}
			if q == "." || q == "/" {
				return false
			}
		}
	}

	tw := tar.NewWriter(w)
	emitted := map[string]bool{}
	write := func(name string, h *tar.Header, content io.Reader) error {
		if filter != nil && !filter(name, h) {
			return nil
		}
		hh := *h
		hh.Name = name
		// Squashfs stores only security., user. and trusted. attributes;
		// POSIX ACLs (systemd sets some on /var/log/journal, and
		// systemd-tmpfiles sets them again at boot) are dropped.
		hh.Xattrs = nil //nolint:staticcheck // the reader fills this deprecated copy of PAXRecords; the writer would use it
		if len(h.PAXRecords) > 0 {
			hh.PAXRecords = map[string]string{}
			for k, v := range h.PAXRecords {
				if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok &&
					!strings.HasPrefix(x, "security.") && !strings.HasPrefix(x, "user.") && !strings.HasPrefix(x, "trusted.") {
					continue
				}
				hh.PAXRecords[k] = v
			}
		}
		if h.Typeflag == tar.TypeDir {
			hh.Name += "/"
		}
		if err := tw.WriteHeader(&hh); err != nil {
			return fmt.Errorf("flatten: writing %s: %w", name, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			if _, err := io.CopyN(tw, content, h.Size); err != nil {
				return fmt.Errorf("flatten: writing %s: %w", name, err)
			}
		}
		return nil
	}
	section := func(r ref) io.Reader { return io.NewSectionReader(files[r.layer], r.offset, r.h.Size) }

	tr := tar.NewReader(files[0])
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("flatten: reading %s: %w", paths[0], err)
		}
		name := Clean(h.Name)
		if name == "." {
			continue
		}
		if r, ok := upper[name]; ok {
			emitted[name] = true
			if err := write(name, r.h, section(r)); err != nil {
				return err
			}
			continue
		}
		if isDeleted(name) {
			continue
		}
		if err := write(name, h, tr); err != nil {
			return err
		}
	}
	for _, name := range order {
		r, ok := upper[name]
		if !ok || emitted[name] {
			continue
		}
		emitted[name] = true
		if err := write(name, r.h, section(r)); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("flatten: %w", err)
	}
	return nil
}

// under reports whether p is below dir.
func under(p, dir string) bool {
	return dir == "." || strings.HasPrefix(p, dir+"/")
}
