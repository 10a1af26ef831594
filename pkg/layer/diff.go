package layer

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/imgforge/imgforge/pkg/ctxio"
)

// WhiteoutPrefix marks a deleted path in an OCI layer.
const WhiteoutPrefix = ".wh."

// Diff writes to w the layer that turns the root filesystem described by
// lower into the one in the tar file upperPath: every entry of upper that
// lower lacks or has differently, and a whiteout for every path of lower
// that upper lacks. The upper tar is read twice: once to find hard links
// whose target must travel with them, once to write.
//
// The entries diff writes are normalized and filtered as Normalize does,
// and its Result indexes the whole upper root filesystem, so that it can
// be the lower of a further Diff.
//
// It stops with ctx's error once ctx is done, within one buffer.
func Diff(ctx context.Context, w io.Writer, lower Index, upperPath string, n Normalizer, filter Filter, keep []string) (*Result, error) {
	w = ctxio.Writer(ctx, w)
	f, err := os.Open(upperPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res := &Result{Index: Index{}, Files: map[string][]byte{}}
	keeps := keeper(keep)

	// Pass 1: index upper, remembering where each file's content starts.
	type item struct {
		name   string
		h      *tar.Header
		offset int64
	}
	var items []item
	cr := &countingReader{r: ctxio.Reader(ctx, f)}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", upperPath, err)
		}
		name := Clean(h.Name)
		if name == "." || (filter != nil && !filter(name, h)) {
			continue
		}
		if h.Typeflag == tar.TypeGNUSparse {
			return nil, fmt.Errorf("reading %s: %s is a sparse file, which layers do not carry", upperPath, name)
		}
		nh := n.header(name, h)
		if nh.Typeflag == tar.TypeLink {
			if _, ok := res.Index[nh.Linkname]; !ok {
				return nil, fmt.Errorf("reading %s: %s is a hard link to %s, which the layer leaves out", upperPath, name, nh.Linkname)
			}
		}
		it := item{name: name, h: nh, offset: cr.n}
		digest := ""
		if nh.Typeflag == tar.TypeReg {
			hs := sha256.New()
			var kept strings.Builder
			var dst io.Writer = hs
			if keeps(name) {
				dst = io.MultiWriter(hs, &kept)
				defer func(name string) { res.Files[name] = []byte(kept.String()) }(name)
			}
			if _, err := io.CopyN(dst, tr, h.Size); err != nil {
				return nil, fmt.Errorf("reading %s: %w", name, err)
			}
			digest = hex.EncodeToString(hs.Sum(nil))
		}
		res.Index[name] = entryOf(nh, digest)
		items = append(items, it)
	}

	// Which entries this layer carries: new or different ones, and the
	// targets of hard links it carries (links resolve within a layer).
	changed := map[string]bool{}
	for _, it := range items {
		if old, ok := lower[it.name]; !ok || old != res.Index[it.name] {
			changed[it.name] = true
		}
	}
	for again := true; again; {
		again = false
		for _, it := range items {
			if it.h.Typeflag != tar.TypeLink {
				continue
			}
			t := it.h.Linkname
			if changed[it.name] && !changed[t] {
				changed[t], again = true, true
			}
			if changed[t] && !changed[it.name] {
				changed[it.name], again = true, true
			}
		}
	}

	tw := tar.NewWriter(w)
	// Whiteouts first, sorted; a removed directory needs one whiteout, not
	// one per child.
	var gone []string
	for p := range lower {
		if _, ok := res.Index[p]; p != "." && !ok {
			gone = append(gone, p)
		}
	}
	sort.Strings(gone)
	goneSet := map[string]bool{}
	for _, p := range gone {
		if parentGone(p, goneSet) {
			continue
		}
		goneSet[p] = true
		dir, base := path.Split(p)
		h := &tar.Header{Typeflag: tar.TypeReg, Name: dir + WhiteoutPrefix + base, Mode: 0o644, ModTime: n.Epoch.UTC(), Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("writing whiteout for %s: %w", p, err)
		}
		res.Entries++
	}
	for _, it := range items {
		if !changed[it.name] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(it.h); err != nil {
			return nil, fmt.Errorf("writing %s: %w", it.name, err)
		}
		if it.h.Typeflag == tar.TypeReg {
			if _, err := io.Copy(tw, io.NewSectionReader(f, it.offset, it.h.Size)); err != nil {
				return nil, fmt.Errorf("writing %s: %w", it.name, err)
			}
		}
		res.Entries++
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing layer: %w", err)
	}
	return res, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func parentGone(p string, gone map[string]bool) bool {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if gone[d] {
			return true
		}
	}
	return false
}
