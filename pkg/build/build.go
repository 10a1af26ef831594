// Package build runs the stages that turn a Plan into images: the Debian
// base layer, the role layer on top of it, the overlay of imgforge's own
// files, the initramfs and the verified root, and then the outputs.
//
// A stage (stage.go) has a name, a version, a typed key struct and a run
// function; runStage looks its key up in the cache, re-hashes the blobs
// the record names, and runs the stage only on a miss, so a rebuild redoes
// only what its inputs changed. The programs of the host the stages need
// are reached through Tools, which tests fake.
//
// An output (output.go, one output_FORMAT.go per format of pkg/format)
// declares what it needs (the layers, the bootable root, the raw disk)
// and writes its files; writeOutputs adds the manifest, the SBOM and
// SHA256SUMS. Outputs appear atomically: a role's output folder is either
// the previous complete one or the new complete one.
package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/imgforge/imgforge/pkg/format"
	"github.com/imgforge/imgforge/pkg/sign"

	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/debian"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/spec"
)

// LogSink receives the output of the tools a build runs.
type LogSink = io.Writer

// Options configure a Builder.
type Options struct {
	Cache     *cache.Cache
	OutputDir string
	// Formats overrides each plan's outputs when not empty.
	Formats []string
	// Progress receives one line per stage event; nil discards them.
	Progress *Progress
	// Log receives the output of the tools the build runs; nil discards it.
	Log io.Writer
	// HTTPClient fetches mirror release files; http.DefaultClient when nil.
	HTTPClient *http.Client
	// Rootless runs mmdebstrap in unshare mode.
	Rootless bool
	// Mmdebstrap is the mmdebstrap command; "mmdebstrap" when empty.
	Mmdebstrap string
	// Tools runs mmdebstrap and the other programs of the host;
	// HostTools(Mmdebstrap) when nil.
	Tools Tools
	// ToolVersion is imgforge's version, written into manifests and SBOMs.
	ToolVersion string
	// ToolDigest identifies imgforge's code beyond ToolVersion: outputs
	// written by other code are written again, not kept. The sha256 of
	// the running executable when empty.
	ToolDigest string
	// Now tells the time, for stage timings and build records; time.Now
	// when nil.
	Now func() time.Time
	// NoCache runs every stage again instead of using its cached result
	// (what it makes is still stored; downloaded .deb files are reused).
	NoCache bool
	// Signer signs the outputs (output_sign.go); nil signs nothing.
	Signer *sign.Signer
	// SecureBoot signs the boot chain of every plan's bootable outputs
	// (secureboot.go); nil leaves it to each image definition's
	// secure_boot, and unsigned without one.
	SecureBoot *SecureBoot
}

// Builder builds plans. It is not safe for concurrent use.
type Builder struct {
	o          Options
	mmdVersion string
	releases   map[string]string // apt source -> InRelease digest, fetched once per Builder
	verified   map[string]bool   // blobs already re-hashed by this Builder

	// secureBoot holds the Secure Boot keys of the image definitions,
	// loaded by Build before any work, by "KEY\x00CERT".
	secureBoot map[string]*SecureBoot

	usedMu sync.Mutex
	used   map[string][]cache.StageRef // role -> the stage records its build used
}

// New checks the options and returns a Builder.
func New(ctx context.Context, o Options) (*Builder, error) {
	if o.Cache == nil {
		return nil, errors.New("build: no cache")
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Progress == nil {
		o.Progress = NewProgress(nil, o.Now)
	}
	for _, f := range o.Formats {
		if err := format.Check(f); err != nil {
			return nil, err
		}
	}
	if o.Tools == nil {
		o.Tools = HostTools(o.Mmdebstrap)
	}
	v, err := o.Tools.MmdebstrapVersion(ctx)
	if err != nil {
		return nil, err
	}
	return &Builder{o: o, mmdVersion: v, releases: map[string]string{}, verified: map[string]bool{}}, nil
}

// CheckOutputDir makes sure dir exists and is writable, before any work.
func CheckOutputDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output directory %s cannot be created: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".imgforge-write-test-*")
	if err != nil {
		return fmt.Errorf("output directory %s is not writable: %w", dir, errors.Unwrap(err))
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// Build builds every plan in turn (they share the base when they can) and
// writes each one's outputs.
func (b *Builder) Build(ctx context.Context, plans []*plan.Plan) ([]*imagemeta.Result, error) {
	if err := CheckOutputDir(b.o.OutputDir); err != nil {
		return nil, err
	}
	if err := b.loadSecureBoot(plans); err != nil {
		return nil, err
	}
	var out []*imagemeta.Result
	for _, p := range plans {
		r, err := b.BuildOne(ctx, p)
		if err != nil {
			return out, cancelled(ctx, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// cancelled makes err say that ctx ended, when it did: a tool killed by
// exec.CommandContext fails with "signal: killed", which does not wrap
// context.Canceled, and callers (the CLI, the Packer plugin) tell an
// interrupt from a failure with errors.Is.
func cancelled(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	if cause == nil || errors.Is(err, cause) || errors.Is(err, ctx.Err()) {
		return err
	}
	return fmt.Errorf("%w: %w", cause, err)
}

// Image is a built image: its layers in the cache and what it is.
type Image struct {
	Plan     *plan.Plan
	Layers   []builtLayer
	Packages []byte // dpkg status of the image
	// Docs are the image's copyright files and os-release, path to
	// content (see docFiles).
	Docs map[string]string
	Keys map[string]string
	// base is the base's record, whose uncompressed tar the boot stages
	// start from, and baseKey its key.
	base    layerRecord
	baseKey string
	// rootIndex is the blob of the layer.Index of the role's whole root
	// filesystem.
	rootIndex string
}

// BuildOne builds one plan and writes its outputs.
func (b *Builder) BuildOne(ctx context.Context, p *plan.Plan) (*imagemeta.Result, error) {
	start := b.o.Now()
	im, err := b.Layers(ctx, p)
	if err != nil {
		return nil, err
	}
	res, err := b.writeOutputs(ctx, im)
	if err != nil {
		return nil, err
	}
	res.Seconds = b.o.Now().Sub(start).Seconds()
	// The build record lets imgforge cache prune keep what this build
	// used; without it the build's stages are still cached.
	if err := b.o.Cache.RecordBuild(cache.BuildRecord{
		Role: p.Role, Time: b.o.Now().UTC(), Image: res.ImageDigest, Plan: p.Digest(), Stages: b.takeUsed(p.Role),
		Seconds: ranSeconds(b.o.Progress.Timings(), p.Role),
	}); err != nil {
		b.o.Progress.Note(fmt.Sprintf("cache: %v", err))
	}
	return res, nil
}

// Layers builds (or finds in the cache) the layers of plan p.
func (b *Builder) Layers(ctx context.Context, p *plan.Plan) (*Image, error) {
	bk, err := b.baseKey(ctx, p)
	if err != nil {
		return nil, err
	}
	base, baseKey, err := runStage(ctx, b, p.Role, b.baseStage(), bk)
	if err != nil {
		return nil, err
	}
	role, roleKey, err := b.role(ctx, p, base, baseKey)
	if err != nil {
		return nil, err
	}
	ov, ovKey, err := b.overlay(ctx, p, role, roleKey)
	if err != nil {
		return nil, err
	}
	im := &Image{Plan: p, Keys: map[string]string{"base": baseKey, "role": roleKey, "overlay": ovKey}, base: base, baseKey: baseKey, rootIndex: role.Index}
	im.Layers = append(im.Layers, builtLayer{Kind: "base", Record: base})
	if role.Blob != "" {
		im.Layers = append(im.Layers, builtLayer{Kind: "role", Record: role})
	}
	im.Layers = append(im.Layers, builtLayer{Kind: "overlay", Record: ov})
	status, err := b.o.Cache.ReadBlob(role.Status)
	if err != nil {
		return nil, err
	}
	im.Packages = status
	docs, err := b.o.Cache.ReadBlob(role.Docs)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(docs, &im.Docs); err != nil {
		return nil, fmt.Errorf("%w: docs %s: %w", cache.ErrCorrupt, role.Docs, err)
	}
	return im, nil
}

// packageError turns a missing package into an error at the line of the
// definition that asked for it.
func packageError(p *plan.Plan, err error) error {
	var mp *debian.MissingPackageError
	if !errors.As(err, &mp) {
		return err
	}
	name := mp.Package
	pos, ok := p.PackagePos[name]
	if !ok {
		for k, v := range p.PackagePos {
			if strings.SplitN(k, "=", 2)[0] == name {
				pos, ok = v, true
			}
		}
	}
	msg := fmt.Sprintf("package %q is not available from %s (%s); apt said: %s", name, p.Distribution.Mirror, p.Distribution.Suite, mp.Detail)
	if !ok {
		return fmt.Errorf("%s", msg)
	}
	return &spec.Error{File: pos.File, Line: pos.Line, Col: pos.Col, Field: pos.Field, Msg: msg}
}

func (b *Builder) releaseDigests(ctx context.Context, sources []string) ([]string, error) {
	var missing []string
	for _, s := range sources {
		if _, ok := b.releases[s]; !ok {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		ds, err := debian.ReleaseDigests(ctx, b.o.HTTPClient, missing)
		if err != nil {
			return nil, err
		}
		for i, s := range missing {
			b.releases[s] = ds[i]
		}
	}
	out := make([]string, len(sources))
	for i, s := range sources {
		out[i] = b.releases[s]
	}
	return out, nil
}

// verify re-hashes a cached blob, once per Builder: a build of several
// roles reads the same base blobs for each of them.
func (b *Builder) verify(ctx context.Context, digest string) error {
	if b.verified[digest] {
		return nil
	}
	if err := b.o.Cache.Verify(ctx, digest); err != nil {
		return err
	}
	b.verified[digest] = true
	return nil
}

func epoch(p *plan.Plan) time.Time { return time.Unix(p.SourceDateEpoch, 0).UTC() }

func removeAllQuiet(p string) {
	if p != "" {
		os.RemoveAll(p)
	}
}

// noteUsed records that role's build used the stage record ref.
func (b *Builder) noteUsed(role string, ref cache.StageRef) {
	b.usedMu.Lock()
	defer b.usedMu.Unlock()
	if b.used == nil {
		b.used = map[string][]cache.StageRef{}
	}
	if !slices.Contains(b.used[role], ref) {
		b.used[role] = append(b.used[role], ref)
	}
}

// takeUsed returns and forgets the stage records role's build used.
func (b *Builder) takeUsed(role string) []cache.StageRef {
	b.usedMu.Lock()
	defer b.usedMu.Unlock()
	refs := b.used[role]
	delete(b.used, role)
	return refs
}

// ranSeconds are the times of role's stages that ran rather than being
// found in the cache, by stage name.
func ranSeconds(timings []StageTime, role string) map[string]float64 {
	out := map[string]float64{}
	for _, t := range timings {
		if t.Role != role || t.Result == "failed" || strings.HasPrefix(t.Result, "cached") || t.Stage == "outputs" && strings.HasSuffix(t.Result, " unchanged") {
			continue
		}
		out[t.Stage] = t.Seconds
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
