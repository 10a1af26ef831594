package build

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/imgforge/imgforge/pkg/ctxio"
	"github.com/imgforge/imgforge/pkg/dpkg"
	"github.com/imgforge/imgforge/pkg/format"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/layer"
	"github.com/imgforge/imgforge/pkg/oci"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/sbom"
)

func (b *Builder) formats(p *plan.Plan) []string {
	if len(b.o.Formats) > 0 {
		return b.o.Formats
	}
	return p.Outputs
}

// OCIImage assembles the v1.Image of a built Image.
func (b *Builder) OCIImage(im *Image) (v1.Image, []oci.Layer, error) {
	p := im.Plan
	var layers []oci.Layer
	for _, l := range im.Layers {
		layers = append(layers, oci.Layer{
			Path: b.o.Cache.BlobPath(l.Record.Blob), Digest: l.Record.Blob, DiffID: l.Record.DiffID,
			Size: l.Record.Size, Comment: layerComment(p, l.Kind),
		})
	}
	var ports []string
	for _, pt := range p.Ports {
		ports = append(ports, fmt.Sprintf("%d/%s", pt.Port, pt.Protocol))
	}
	img, err := oci.Image(oci.Spec{
		Layers: layers, Architecture: p.Architecture, Created: epoch(p), Labels: labels(p, b.o.ToolVersion),
		ExposedPorts: ports, Entrypoint: []string{"/sbin/init"}, StopSignal: "SIGRTMIN+3",
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=oci"},
	})
	return img, layers, err
}

func layerComment(p *plan.Plan, kind string) string {
	switch kind {
	case "base":
		return fmt.Sprintf("base: %s %s: %s", p.Distribution.Name, p.Distribution.Suite, strings.Join(p.BasePackages, " "))
	case "role":
		return fmt.Sprintf("role %s: %s", p.Role, strings.Join(p.Packages, " "))
	}
	return fmt.Sprintf("imgforge overlay: %d files", len(p.Files))
}

func labels(p *plan.Plan, tool string) map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "imgforge " + p.Role,
		"org.opencontainers.image.description": p.Description,
		"org.opencontainers.image.created":     epoch(p).Format(time.RFC3339),
		"org.opencontainers.image.version":     short(p.Digest()),
		"org.opencontainers.image.vendor":      "imgforge",
		"org.opencontainers.image.base.name":   "debian:" + p.Distribution.Suite,
		"org.opencontainers.image.ref.name":    p.Role,
		"dev.imgforge.role":                    p.Role,
		"dev.imgforge.image":                   p.Image,
		"dev.imgforge.plan.digest":             p.Digest(),
		"dev.imgforge.tool":                    tool,
	}
	for k, v := range p.Options {
		l["dev.imgforge.option."+k] = v
	}
	return l
}

// writeOutputs writes every output of im into a temporary folder and swaps
// it into place as OutputDir/ROLE.
func (b *Builder) writeOutputs(ctx context.Context, im *Image) (*imagemeta.Result, error) {
	p := im.Plan
	st := b.o.Progress.Start(p.Role, "outputs")
	img, layers, err := b.OCIImage(im)
	if err != nil {
		st.Fail()
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	final := filepath.Join(b.o.OutputDir, p.Role)
	formats := b.formats(p)
	inputs, err := b.inputsDigest(ctx, im, digest.String(), formats)
	if err != nil {
		st.Fail()
		return nil, err
	}
	// A no-op build keeps the folder in place (output_state.go); any
	// doubt about it means writing it again.
	arts, err := b.unchanged(ctx, final, inputs, im, digest.String())
	if err == nil {
		for i := range arts {
			arts[i].Path = filepath.Join(final, arts[i].Path)
		}
		st.Done(fmt.Sprintf("%s %s unchanged", final, digest))
		return &imagemeta.Result{Role: p.Role, PlanDigest: p.Digest(), ImageDigest: digest.String(), Dir: final, Artifacts: arts}, nil
	}
	if ctx.Err() != nil {
		st.Fail()
		return nil, ctx.Err()
	}
	tmp, err := os.MkdirTemp(b.o.OutputDir, "."+p.Role+".tmp-")
	if err != nil {
		st.Fail()
		return nil, fmt.Errorf("output directory %s is not writable: %w", b.o.OutputDir, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(tmp)
		}
	}()
	outs, needs, err := planOutputs(formats)
	if err != nil {
		st.Fail()
		return nil, err
	}
	j := &outputJob{b: b, im: im, img: img, layers: layers, digest: digest.String(), dir: tmp, formats: formats}
	if needs&needBootable != 0 {
		if j.bootable, err = b.Bootable(ctx, im); err != nil {
			return nil, err
		}
	}
	for _, o := range outs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		st.Update("writing " + outputFile(o.format, p.Role))
		if err := o.write(ctx, j); err != nil {
			st.Fail()
			return nil, err
		}
	}
	j.finish()
	arts, diskInfo := j.arts, j.disk

	pkgs, err := dpkg.ParseStatus(bytes.NewReader(im.Packages))
	if err != nil {
		return nil, fmt.Errorf("reading the image's package list: %w", err)
	}
	st.Update("writing sbom.spdx.json, sbom.cdx.json, " + imagemeta.ManifestName + ", " + imagemeta.SumsName)
	in, err := b.sbomInput(ctx, im, digest.String(), pkgs)
	if err != nil {
		return nil, err
	}
	sboms := map[string][]byte{}
	for _, f := range []struct {
		path, format string
		write        func(io.Writer) error
	}{
		{"sbom.spdx.json", "spdx-json", func(w io.Writer) error { return sbom.New(in).WriteJSON(w) }},
		{"sbom.cdx.json", "cyclonedx-json", func(w io.Writer) error { return sbom.WriteCycloneDX(w, sbom.NewCycloneDX(in)) }},
	} {
		var buf bytes.Buffer
		if err := f.write(&buf); err != nil {
			return nil, err
		}
		sboms[f.format] = buf.Bytes()
		a, err := writeHashed(ctx, filepath.Join(tmp, f.path), func(w io.Writer) error { _, err := w.Write(buf.Bytes()); return err })
		if err != nil {
			return nil, err
		}
		a.Path, a.Format = f.path, f.format
		arts = append(arts, a)
	}

	planJSON, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	m := imagemeta.Manifest{
		Role: p.Role, Image: p.Image, PlanDigest: p.Digest(), ImageDigest: digest.String(), Tool: b.o.ToolVersion,
		Inputs: imagemeta.ManifestInputs{Plan: planJSON, Mmdebstrap: b.mmdVersion, Releases: map[string]string{}, SourceDateEpoch: p.SourceDateEpoch, StageKeys: im.Keys},
		Disk:   diskInfo,
	}
	for _, s := range p.Distribution.Sources {
		m.Inputs.Releases[s] = b.releases[s]
	}
	for _, l := range im.Layers {
		m.Layers = append(m.Layers, imagemeta.ManifestLayer{Kind: l.Kind, Digest: l.Record.Blob, DiffID: l.Record.DiffID, Size: l.Record.Size})
	}
	for _, pk := range pkgs {
		m.Packages = append(m.Packages, imagemeta.ManifestPackage{Name: pk.Name, Version: pk.Version, Architecture: pk.Architecture, Source: pk.Source})
	}
	// The disk's and the ISO's ESPs boot signed UKIs, and the PXE set
	// carries each disk slot's for updates (iPXE itself boots unsigned).
	if sb := b.secureBootFor(p); sb != nil && diskInfo != nil {
		m.Signing.SecureBoot, m.Signing.SecureBootCert = true, sb.ID
	}
	if b.o.Signer != nil {
		m.Signing.Signed, m.Signing.Key = true, b.o.Signer.ID
		a, err := b.signOutputs(ctx, im, j, signedOutput{dir: tmp, arts: arts, spdx: sboms["spdx-json"], cdx: sboms["cyclonedx-json"], manifestRaw: m})
		if err != nil {
			return nil, err
		}
		for i := range arts {
			if arts[i].Format == "oci" {
				arts[i].Size = dirSize(filepath.Join(tmp, "oci"))
			}
		}
		arts = append(arts, a)
	}
	m.Outputs = arts
	mj, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	a, err := writeHashed(ctx, filepath.Join(tmp, imagemeta.ManifestName), func(w io.Writer) error { _, err := w.Write(mj); return err })
	if err != nil {
		return nil, err
	}
	a.Path, a.Format = imagemeta.ManifestName, "manifest"
	arts = append(arts, a)

	known := map[string]string{}
	for _, a := range arts {
		if a.Format != "oci" {
			known[a.Path] = strings.TrimPrefix(a.Digest, "sha256:")
		}
	}
	if err := writeSums(ctx, tmp, known); err != nil {
		return nil, err
	}
	sums := imagemeta.Output{Path: imagemeta.SumsName, Format: "sha256sums"}
	if sums.Digest, err = fileDigest(ctx, filepath.Join(tmp, sums.Path)); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(filepath.Join(tmp, sums.Path)); err != nil {
		return nil, err
	} else {
		sums.Size = fi.Size()
	}
	arts = append(arts, sums)
	extra := map[string]string{imagemeta.SumsName: sums.Digest}
	if b.o.Signer != nil {
		sig, err := b.signSums(tmp)
		if err != nil {
			return nil, err
		}
		arts = append(arts, sig)
		extra[SigName] = sig.Digest
	}
	if err := writeState(tmp, inputs, extra); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := swapDir(tmp, final); err != nil {
		st.Fail()
		return nil, err
	}
	committed = true
	// Reported paths and sizes are of the final location.
	for i := range arts {
		arts[i].Path = filepath.Join(final, arts[i].Path)
	}
	st.Done(fmt.Sprintf("%s %s", filepath.Join(b.o.OutputDir, p.Role), digest))
	return &imagemeta.Result{Role: p.Role, PlanDigest: p.Digest(), ImageDigest: digest.String(), Dir: final, Artifacts: arts}, nil
}

// sbomInput is what the SBOMs of im say: its packages, the licences
// in their copyright files, the release from its os-release, and the
// .deb files' SHA-256 from the apt lists the base was built with.
func (b *Builder) sbomInput(ctx context.Context, im *Image, digest string, pkgs []dpkg.Package) (sbom.Input, error) {
	p := im.Plan
	in := sbom.Input{
		Name: p.Role, ImageDigest: digest, Created: epoch(p), Tool: b.o.ToolVersion, Packages: pkgs,
		Distro: sbom.ParseOSRelease([]byte(im.Docs["usr/lib/os-release"])), Copyright: map[string][]byte{},
	}
	if in.Distro.ID == "" {
		in.Distro.ID = p.Distribution.Name
	}
	for path, text := range im.Docs {
		if name, ok := strings.CutPrefix(path, "usr/share/doc/"); ok {
			if name, ok := strings.CutSuffix(name, "/copyright"); ok {
				in.Copyright[name] = []byte(text)
			}
		}
	}
	// Many packages' doc folder is a link to another package's of the
	// same source (libstdc++6 -> gcc-12-base): its copyright is theirs.
	if im.rootIndex != "" {
		idx, err := b.readIndex(im.rootIndex)
		if err != nil {
			return in, err
		}
		for _, pk := range pkgs {
			if _, ok := in.Copyright[pk.Name]; !ok {
				if text, ok := im.Docs[linkedDoc(idx, pk.Name)]; ok {
					in.Copyright[pk.Name] = []byte(text)
				}
			}
		}
	}
	if im.base.Lists == "" {
		return in, nil
	}
	want := map[string]bool{}
	for _, pk := range pkgs {
		want[sbom.DebKey(pk)] = true
	}
	indexes, err := filepath.Glob(filepath.Join(b.o.Cache.Dir(), "lists", im.base.Lists, "*_Packages"))
	if err != nil {
		return in, err
	}
	in.Checksums = map[string]string{}
	for _, ix := range indexes {
		if err := ctx.Err(); err != nil {
			return in, err
		}
		f, err := os.Open(ix)
		if err != nil {
			return in, err
		}
		sums, err := dpkg.IndexDigests(f, want)
		f.Close()
		if err != nil {
			return in, fmt.Errorf("%s: %w", ix, err)
		}
		maps.Copy(in.Checksums, sums)
	}
	return in, nil
}

// linkedDoc is the path of the copyright file of the package name
// whose /usr/share/doc/NAME is a symbolic link (to a few levels), or "".
func linkedDoc(idx layer.Index, name string) string {
	dir := "usr/share/doc/" + name
	for range 4 {
		e, ok := idx[dir]
		if !ok || e.Type != tar.TypeSymlink {
			break
		}
		if strings.HasPrefix(e.Linkname, "/") {
			dir = layer.Clean(e.Linkname)
		} else {
			dir = layer.Clean(path.Join(path.Dir(dir), e.Linkname))
		}
		if e, ok := idx[dir]; ok && e.Type == tar.TypeDir {
			return dir + "/copyright"
		}
	}
	return ""
}

// swapDir puts the folder tmp at final atomically: it exchanges the two
// when final exists (the old one is then removed), or renames tmp.
func swapDir(tmp, final string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_EXCHANGE)
	if err == nil {
		return os.RemoveAll(tmp) // now holds the previous outputs
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("moving outputs into %s: %w", final, err)
	}
	return nil
}

func writeHashed(ctx context.Context, path string, write func(io.Writer) error) (imagemeta.Output, error) {
	f, err := os.Create(path)
	if err != nil {
		return imagemeta.Output{}, err
	}
	h := sha256.New()
	cw := &countWriter{w: ctxio.Writer(ctx, io.MultiWriter(f, h))}
	if err := write(cw); err != nil {
		f.Close()
		return imagemeta.Output{}, err
	}
	if err := f.Close(); err != nil {
		return imagemeta.Output{}, err
	}
	return imagemeta.Output{Size: cw.n, Digest: "sha256:" + hex.EncodeToString(h.Sum(nil))}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func fileDigest(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := ctxio.CopyFile(ctx, h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// writeSums writes SHA256SUMS for every file below dir. Files in known
// (relative path -> hex sha256) and blobs of an OCI layout, which are named
// by their digest, are not hashed again.
func writeSums(ctx context.Context, dir string, known map[string]string) error {
	sums := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		sum, ok := known[filepath.ToSlash(rel)]
		if ok {
			// Hashed as it was written.
		} else if b := filepath.Base(filepath.Dir(p)); b == "sha256" && strings.Contains(rel, "blobs/sha256/") && len(d.Name()) == 64 {
			sum = d.Name()
		} else {
			s, err := fileDigest(ctx, p)
			if err != nil {
				return err
			}
			sum = strings.TrimPrefix(s, "sha256:")
		}
		sums[filepath.ToSlash(rel)] = sum
		return nil
	})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, imagemeta.SumsName), imagemeta.MarshalSums(sums), 0o644)
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// outputFile names what the writer of format writes for role, as
// pkg/format's description of it does ("lb.raw", "lb/oci", "pxe/"), or
// the format's name.
func outputFile(name, role string) string {
	for _, f := range format.All {
		if f.Name != name {
			continue
		}
		lp, rp := strings.LastIndexByte(f.Description, '('), strings.LastIndexByte(f.Description, ')')
		if lp < 0 || rp < lp {
			break
		}
		file := f.Description[lp+1 : rp]
		file = strings.ReplaceAll(file, "ROLE/", "")
		return strings.ReplaceAll(file, "ROLE", role)
	}
	return name
}
