package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// A build whose inputs did not change keeps the output folder in place
// when its files still match the manifest's digests (the no-op build).
//
// The inputs are what decides every byte of the outputs: the plan digest,
// the stage keys of the layers, the OCI image digest, the formats asked
// for, imgforge's version and the digest of the builder's own code
// (Options.ToolDigest; by default the running executable), since a new
// imgforge may write the same inputs differently. The manifest carries the
// first ones; the state file below carries the digest of them all.
//
// "The files match" means: the folder holds exactly the files SHA256SUMS
// lists, plus SHA256SUMS and the state file; each has the digest SHA256SUMS
// gives it; manifest.json's outputs agree with SHA256SUMS. Hashing a 2 GiB
// raw disk takes seconds, so the state file (stateName, in the folder, not
// listed in SHA256SUMS) records each file's digest together with its
// device, inode, size, mtime and ctime when it was written or last hashed.
// A file whose stat still equals the record is trusted to hold the
// recorded bytes; any other file is hashed again. What is trusted, then,
// is the kernel's ctime: every write, truncate, rename over or chmod
// through the file system changes it, and only a clock set back, a write
// beneath the file system, or an edit of the state file itself can change
// a file's bytes and keep the record. A missing or unreadable state file
// means a full build.

// stateName is the state file's name in an output folder.
const stateName = imagemeta.StateName

// outputState is the state file.
type outputState struct {
	// Inputs is the digest of the build's inputs (inputsDigest).
	Inputs string `json:"inputs"`
	// Files maps each file's slash-separated path in the folder to what
	// it was when last hashed.
	Files map[string]fileState `json:"files"`
}

// fileState is one file's digest and the stat that vouches for it.
type fileState struct {
	Digest string `json:"digest"` // sha256, hex
	Size   int64  `json:"size"`
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Mtime  int64  `json:"mtime_ns"`
	Ctime  int64  `json:"ctime_ns"`
}

func statOf(fi fs.FileInfo, digest string) (fileState, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileState{}, false
	}
	return fileState{
		Digest: digest, Size: fi.Size(), Dev: uint64(st.Dev), Ino: st.Ino, //nolint:unconvert // Dev is not uint64 everywhere
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(),
	}, true
}

// sameFile tells whether the file described by now is the one recorded.
func (f fileState) sameFile(now fileState) bool {
	now.Digest = f.Digest
	return now == f
}

// toolDigest identifies imgforge's code: Options.ToolDigest, or the
// sha256 of the running executable, hashed once per Builder.
func (b *Builder) toolDigest(ctx context.Context) (string, error) {
	if b.o.ToolDigest != "" {
		return b.o.ToolDigest, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding imgforge's executable: %w", err)
	}
	d, err := fileDigest(ctx, exe)
	if err != nil {
		return "", fmt.Errorf("hashing imgforge's executable: %w", err)
	}
	b.o.ToolDigest = d
	return d, nil
}

// inputsDigest is the digest of everything that decides the outputs of im.
func (b *Builder) inputsDigest(ctx context.Context, im *Image, imageDigest string, formats []string) (string, error) {
	tool, err := b.toolDigest(ctx)
	if err != nil {
		return "", err
	}
	in, err := json.Marshal(struct {
		Tool, ToolDigest, Plan, Image string
		Stages                        map[string]string
		Formats                       []string
		Signer                        string `json:",omitempty"`
		SecureBoot                    string `json:",omitempty"`
	}{b.o.ToolVersion, tool, im.Plan.Digest(), imageDigest, im.Keys, formats, b.signerID(), b.secureBootID(im.Plan)})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(in)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// writeState records the files of the output folder dir, just written
// with SHA256SUMS, for the next build; extra are the files SHA256SUMS
// cannot list (itself, its signature), with their digests.
func writeState(dir, inputs string, extra map[string]string) error {
	sums, err := imagemeta.ReadSums(dir)
	if err != nil {
		return err
	}
	for name, d := range extra {
		sums[name] = strings.TrimPrefix(d, "sha256:")
	}
	s := outputState{Inputs: inputs, Files: map[string]fileState{}}
	for rel, sum := range sums {
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(rel)))
		if err != nil {
			return err
		}
		if f, ok := statOf(fi, sum); ok {
			s.Files[rel] = f
		}
	}
	return s.write(dir)
}

func (s *outputState) write(dir string) error {
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateName+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("writing the output state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, stateName)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing the output state: %w", err)
	}
	return nil
}

// errChanged says why an output folder cannot be kept; the build then
// writes it again.
var errChanged = errors.New("outputs changed")

func changed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errChanged, fmt.Sprintf(format, a...))
}

// unchanged checks the output folder dir of a build whose inputs digest
// is inputs and whose image is imageDigest. It returns the folder's
// outputs, as writeOutputs would, when the folder can be kept; an error
// wrapping errChanged (or any other) when it must be written again.
func (b *Builder) unchanged(ctx context.Context, dir, inputs string, im *Image, imageDigest string) ([]imagemeta.Output, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateName))
	if err != nil {
		return nil, changed("no state: %v", err)
	}
	var s outputState
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, changed("state: %v", err)
	}
	if s.Inputs != inputs {
		return nil, changed("inputs")
	}
	sums, err := imagemeta.ReadSums(dir)
	if err != nil {
		return nil, changed("%v", err)
	}
	// The folder holds exactly the files SHA256SUMS lists, SHA256SUMS and
	// the state file.
	want := maps.Clone(sums)
	if _, listed := want[imagemeta.SumsName]; listed {
		return nil, changed("%s lists itself", imagemeta.SumsName)
	}
	rec, ok := s.Files[imagemeta.SumsName]
	if !ok {
		return nil, changed("state has no %s", imagemeta.SumsName)
	}
	want[imagemeta.SumsName] = rec.Digest
	if b.o.Signer != nil {
		// Its signature; the inputs digest names the key.
		rec, ok := s.Files[SigName]
		if !ok {
			return nil, changed("state has no %s", SigName)
		}
		want[SigName] = rec.Digest
	}
	rehashed := false
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() || rel == stateName {
			return nil
		}
		sum, ok := want[rel]
		if !ok {
			return changed("%s is not in %s", rel, imagemeta.SumsName)
		}
		delete(want, rel)
		if !d.Type().IsRegular() {
			return changed("%s is not a regular file", rel)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		now, ok := statOf(fi, "")
		if !ok {
			return changed("%s: no stat", rel)
		}
		if r, ok := s.Files[rel]; ok && r.sameFile(now) {
			if r.Digest != sum {
				return changed("%s: recorded %s, listed %s", rel, r.Digest, sum)
			}
			return nil
		}
		got, err := fileDigest(ctx, p)
		if err != nil {
			return err
		}
		if got = strings.TrimPrefix(got, "sha256:"); got != sum {
			return changed("%s: sha256 %s, listed %s", rel, got, sum)
		}
		now.Digest, rehashed = got, true
		s.Files[rel] = now
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(want) > 0 {
		return nil, changed("missing %s", strings.Join(slices.Sorted(maps.Keys(want)), ", "))
	}
	m, err := imagemeta.ReadManifest(filepath.Join(dir, imagemeta.ManifestName))
	if err != nil {
		return nil, changed("%v", err)
	}
	p := im.Plan
	if m.PlanDigest != p.Digest() || m.ImageDigest != imageDigest || m.Tool != b.o.ToolVersion || !maps.Equal(m.Inputs.StageKeys, im.Keys) {
		return nil, changed("the manifest is of another build")
	}
	arts := slices.Clone(m.Outputs)
	for _, a := range arts {
		if a.Format == "oci" {
			continue // its digest is the image manifest's, checked above
		}
		if sums[a.Path] != strings.TrimPrefix(a.Digest, "sha256:") {
			return nil, changed("the manifest's %s is not the one in %s", a.Path, imagemeta.SumsName)
		}
	}
	extra := []string{imagemeta.ManifestName, imagemeta.SumsName}
	if b.o.Signer != nil {
		extra = append(extra, SigName)
	}
	for _, name := range extra {
		f := s.Files[name]
		format := map[string]string{imagemeta.ManifestName: "manifest", imagemeta.SumsName: "sha256sums", SigName: "signature"}[name]
		arts = append(arts, imagemeta.Output{Path: name, Format: format, Size: f.Size, Digest: "sha256:" + f.Digest})
	}
	if rehashed {
		// Best effort: the next build hashes these files again without it.
		_ = s.write(dir)
	}
	return arts, nil
}

// signerID names the signing key, "" when the build signs nothing.
func (b *Builder) signerID() string {
	if b.o.Signer == nil {
		return ""
	}
	return b.o.Signer.ID
}
