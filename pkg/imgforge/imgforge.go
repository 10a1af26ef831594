// Package imgforge is the library face of imgforge: it finds the role and
// image definitions (files on disk over the embedded defaults), resolves
// plans, and builds them. The command line and the Packer plugin are thin
// callers of this package.
package imgforge

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/imgforge/imgforge/images"
	"github.com/imgforge/imgforge/pkg/build"
	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/format"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/sign"
	"github.com/imgforge/imgforge/pkg/spec"
	"github.com/imgforge/imgforge/pkg/version"
	"github.com/imgforge/imgforge/roles"
)

// Version is imgforge's version (package version holds it, so that the
// agent can print it without linking the builder).
const Version = version.Version

// Catalog returns the definitions: those in rolesDir and imagesDir (when
// not empty) override the embedded defaults by name.
func Catalog(rolesDir, imagesDir string) (*spec.Catalog, error) {
	cat := &spec.Catalog{}
	for _, d := range []struct {
		dir  string
		list *[]spec.Folder
		emb  fs.FS
		name string
	}{{rolesDir, &cat.Roles, roles.FS, "roles"}, {imagesDir, &cat.Images, images.FS, "images"}} {
		if d.dir != "" {
			fi, err := os.Stat(d.dir)
			if err != nil {
				return nil, fmt.Errorf("%s folder: %w", d.name, err)
			}
			if !fi.IsDir() {
				return nil, fmt.Errorf("%s folder %s is not a folder", d.name, d.dir)
			}
			// Everything under a folder on disk is read through an os.Root:
			// a symbolic link that leads outside it is refused, not followed.
			root, err := os.OpenRoot(d.dir)
			if err != nil {
				return nil, fmt.Errorf("%s folder: %w", d.name, err)
			}
			*d.list = append(*d.list, spec.Folder{FS: root.FS(), Label: filepath.Clean(d.dir)})
		}
		*d.list = append(*d.list, spec.Folder{FS: d.emb, Label: "embedded:" + d.name})
	}
	return cat, nil
}

// Plans resolves each role into a plan.
func Plans(cat *spec.Catalog, roleNames []string, opts plan.Options) ([]*plan.Plan, error) {
	var out []*plan.Plan
	seen := map[string]bool{}
	for _, r := range roleNames {
		if seen[r] {
			continue
		}
		seen[r] = true
		p, err := plan.Resolve(cat, r, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// BuildRequest is one call to Build.
type BuildRequest struct {
	Plans     []*plan.Plan
	CacheDir  string
	OutputDir string
	Formats   []string
	Progress  *build.Progress
	Log       build.LogSink
	Rootless  bool
	// NoCache runs every stage again instead of using its cached result.
	NoCache bool
	// Signer signs the outputs; nil signs nothing.
	Signer *sign.Signer
	// SecureBoot signs the boot chain for Secure Boot; nil leaves it to
	// the image definitions.
	SecureBoot *build.SecureBoot
	// LookPath finds the host's programs for the preflight check
	// (exec.LookPath when nil).
	LookPath func(string) (string, error)
}

// Formats are the output formats a build of req writes: req.Formats, else
// every format a plan's image definition lists, in pkg/format's order.
func (req BuildRequest) formats() []string {
	if len(req.Formats) > 0 {
		return req.Formats
	}
	want := map[string]bool{}
	for _, p := range req.Plans {
		for _, o := range p.Outputs {
			want[o] = true
		}
	}
	var out []string
	for _, f := range format.Names() {
		if want[f] {
			out = append(out, f)
			delete(want, f)
		}
	}
	for f := range want { // unknown to pkg/format: the build refuses it
		out = append(out, f)
	}
	return out
}

// Tools returns the host programs a build of req needs, each with the path
// where it was found (empty when it is missing); imgforge doctor prints it.
func Tools(req BuildRequest) ([]build.Tool, error) {
	tools, err := build.RequiredTools(req.formats(), req.Rootless, "")
	if err != nil {
		return nil, err
	}
	build.FindTools(tools, req.lookPath())
	return tools, nil
}

func (req BuildRequest) lookPath() func(string) (string, error) {
	if req.LookPath != nil {
		return req.LookPath
	}
	return exec.LookPath
}

// Build checks that the host has the programs it needs (a
// *build.MissingToolsError names the Debian packages to install when not),
// opens the cache and builds every plan.
func Build(ctx context.Context, req BuildRequest) ([]*imagemeta.Result, error) {
	if err := build.CheckOutputDir(req.OutputDir); err != nil {
		return nil, err
	}
	if err := build.Preflight(req.formats(), req.Rootless, "", req.lookPath()); err != nil {
		return nil, err
	}
	c, err := cache.Open(ctx, req.CacheDir)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	b, err := build.New(ctx, build.Options{
		Cache: c, OutputDir: req.OutputDir, Formats: req.Formats, Progress: req.Progress,
		Log: req.Log, Rootless: req.Rootless, ToolVersion: "imgforge " + Version, NoCache: req.NoCache,
		Signer: req.Signer, SecureBoot: req.SecureBoot,
	})
	if err != nil {
		return nil, err
	}
	return b.Build(ctx, req.Plans)
}

// AgentEnv names the environment variable that points at the
// imgforge-agent binary to bake into images.
const AgentEnv = "IMGFORGE_AGENT"

// FindAgent finds the imgforge-agent binary every image carries: the file
// $IMGFORGE_AGENT names, else imgforge-agent in the folder of the running
// program (where `make build` puts both), else on PATH. It returns its
// path and contents. getenv is os.Getenv outside tests.
func FindAgent(getenv func(string) string) (string, []byte, error) {
	var tried []string
	if p := getenv(AgentEnv); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", nil, fmt.Errorf("reading the agent binary that %s names: %w", AgentEnv, err)
		}
		return p, b, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "imgforge-agent")
		if b, err := os.ReadFile(p); err == nil {
			return p, b, nil
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath("imgforge-agent"); err == nil {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", nil, fmt.Errorf("reading the agent binary %s: %w", p, err)
		}
		return p, b, nil
	}
	tried = append(tried, "PATH")
	return "", nil, fmt.Errorf("imgforge-agent not found (looked in %s): build it with `make build` (bin/imgforge-agent), or set %s to its path", strings.Join(tried, ", "), AgentEnv)
}
