// Package imgforge is the Packer builder `imgforge`: it builds one role's
// images with the imgforge library (not the command line), with the same
// inputs and so the same bytes as `imgforge build`.
package imgforge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2/hcldec"
	packersdk "github.com/hashicorp/packer-plugin-sdk/packer"

	"github.com/imgforge/imgforge/pkg/build"
	"github.com/imgforge/imgforge/pkg/imgforge"
	"github.com/imgforge/imgforge/pkg/plan"
)

// BuilderID names the artefacts of this builder.
const BuilderID = "imgforge.builder"

var _ packersdk.Builder = (*Builder)(nil)

// Builder is the imgforge builder. Its zero value is ready for use.
type Builder struct {
	config   Config
	plan     *plan.Plan
	cacheDir string

	// getenv reads the environment (SOURCE_DATE_EPOCH, XDG_CACHE_HOME);
	// os.Getenv when nil.
	getenv func(string) string
}

// ConfigSpec is the HCL2 spec of the builder's configuration.
func (b *Builder) ConfigSpec() hcldec.ObjectSpec { return b.config.FlatMapstructure().HCL2Spec() }

// Prepare decodes and checks the configuration and resolves the role's
// plan. It writes nothing.
func (b *Builder) Prepare(raws ...interface{}) (generatedVars, warnings []string, err error) {
	getenv := b.getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	b.plan, b.cacheDir, err = b.config.prepare(getenv, raws...)
	if err != nil {
		return nil, nil, err
	}
	return slices.Clone(generatedDataNames), nil, nil
}

// Run builds the role. When ctx is cancelled (Ctrl-C in Packer), the
// library stops its tools and leaves the output folder as it was: no
// partial artefact.
func (b *Builder) Run(ctx context.Context, ui packersdk.Ui, _ packersdk.Hook) (packersdk.Artifact, error) {
	if b.plan == nil {
		return nil, errors.New("imgforge: Run before a successful Prepare")
	}
	lines := newLineWriter(ui.Say)
	defer lines.Close()
	ui.Say(fmt.Sprintf("Building role %s (plan %s) into %s", b.plan.Role, b.plan.Digest(), b.config.OutputDir))
	results, err := imgforge.Build(ctx, imgforge.BuildRequest{
		Plans:      []*plan.Plan{b.plan},
		CacheDir:   b.cacheDir,
		OutputDir:  b.config.OutputDir,
		Formats:    b.config.Formats,
		Progress:   build.NewProgress(build.LogLines(lines), nil),
		Log:        log.Writer(), // the tools' output goes to Packer's log (PACKER_LOG=1)
		Rootless:   os.Geteuid() != 0,
		Signer:     b.config.signer,
		SecureBoot: b.config.secureBoot,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("build of %s cancelled; %s was left as it was: %w", b.plan.Role, b.config.OutputDir, err)
		}
		return nil, fmt.Errorf("building %s: %w", b.plan.Role, err)
	}
	if len(results) != 1 {
		return nil, fmt.Errorf("building %s: the library gave %d results, want 1", b.plan.Role, len(results))
	}
	return newArtifact(results[0])
}

// lineWriter turns what is written to it into one call of say per line.
type lineWriter struct {
	mu  sync.Mutex
	say func(string)
	buf strings.Builder
}

func newLineWriter(say func(string)) *lineWriter { return &lineWriter{say: say} }

var _ io.WriteCloser = (*lineWriter)(nil)

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	s := w.buf.String()
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		return len(p), nil
	}
	sc := bufio.NewScanner(strings.NewReader(s[:i]))
	for sc.Scan() {
		if line := strings.TrimRight(sc.Text(), " "); line != "" {
			w.say(line)
		}
	}
	w.buf.Reset()
	w.buf.WriteString(s[i+1:])
	return len(p), nil
}

// Close says what is left without a final newline.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s := strings.TrimSpace(w.buf.String()); s != "" {
		w.say(s)
	}
	w.buf.Reset()
	return nil
}
