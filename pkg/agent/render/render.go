package render

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/template"
	"time"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// Candidate in a File's Check is replaced by the path of the candidate
// file, as the node sees it.
const Candidate = "{candidate}"

// File is one rendered file.
type File struct {
	// Path is the absolute path on the node.
	Path string
	// Mode, Owner and Group are the file's permissions and owners (names,
	// resolved in the node's /etc/passwd and /etc/group).
	Mode         fs.FileMode
	Owner, Group string
	Data         []byte
	// Sensitive files hold keys or passwords: the status should not show
	// their digest and logs should not show their text.
	Sensitive bool
	// Check is the checker's command line, with Candidate for the file; nil
	// when the service has no checker for it.
	Check []string
	// Validate checks the file in the agent itself, before Check; nil
	// when nothing does.
	Validate *Validator
}

// A Validator checks a candidate file's bytes in the agent itself, where
// the image carries no checker program for it.
type Validator struct {
	Name  string // what checks, for errors and goldens
	Check func(data []byte) error
}

// Service is the set of files one service reads and the commands that
// make it read them again. Apply writes them in order and runs Then only
// when some file changed.
type Service struct {
	// Name says what the files are for: haproxy, keepalived, nginx, ...
	Name  string
	Files []File
	// Then are commands run, in order, after the files changed.
	Then [][]string
}

// Config is everything rendered for one node.
type Config struct {
	Role     string
	Services []Service
	// Waiting says what could not be rendered yet and why (for example
	// "db.json: no db primary among the members"); the files involved are
	// left as they are.
	Waiting []string
}

// Renderer renders a node's configuration from the image's templates.
type Renderer struct {
	// Templates holds ROLE/NAME.tmpl and common/NAME.tmpl, as in
	// /usr/share/imgforge/templates on a node.
	Templates fs.FS
	// Current is the node's root file system (os.DirFS("/")): the web
	// role keeps the self-signed pair it finds there. Nil means none.
	Current fs.FS
	// Rand and Now make the self-signed certificate.
	Rand io.Reader
	Now  func() time.Time
	// Role is the node's role.json: what is rendered, checked and
	// reloaded, from which templates (ROLE/NAME under Templates).
	Role *imagemeta.RoleInfo
}

// ErrUnknownRole is returned when the image's role.json (Renderer.Role)
// lists nothing to render.
var ErrUnknownRole = errors.New("the image's role.json lists no files to render")

// Render validates in and renders the configuration of in.Self's role
// as its role.json (Renderer.Role) lists it, plus the monitoring every
// node runs.
func (r *Renderer) Render(ctx context.Context, in Input) (*Config, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if r.Templates == nil {
		return nil, fmt.Errorf("rendering: no templates")
	}
	if err := in.Validate(); err != nil {
		return nil, fmt.Errorf("invalid input: %w", err)
	}
	c := &Config{Role: in.Self.Role}
	ri := r.Role
	if ri == nil || len(ri.Render) == 0 {
		return nil, fmt.Errorf("role %q: %w", in.Self.Role, ErrUnknownRole)
	}
	if ri.Role != in.Self.Role {
		return nil, fmt.Errorf("invalid input: self.role: %q, but this is the %s image", in.Self.Role, ri.Role)
	}
	if err := ValidateRole(ri); err != nil {
		return nil, fmt.Errorf("the image's role.json: %w", err)
	}
	if err := in.validateData(ri); err != nil {
		return nil, fmt.Errorf("invalid input: %w", err)
	}
	if err := r.renderRole(c, &in, ri); err != nil {
		return nil, err
	}
	if err := r.monitoring(c, &in); err != nil {
		return nil, err
	}
	return c, nil
}

// execute renders templates/NAME with data.
func (r *Renderer) execute(name string, data any) ([]byte, error) {
	return r.executeFuncs(name, data, nil)
}

// executeFuncs renders templates/NAME with data and the functions fm
// besides join and json.
func (r *Renderer) executeFuncs(name string, data any, fm template.FuncMap) ([]byte, error) {
	b, err := fs.ReadFile(r.Templates, name)
	if err != nil {
		return nil, fmt.Errorf("reading template: %w", err)
	}
	t, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{
		"join": strings.Join,
		"json": jsonString,
	}).Funcs(fm).Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("parsing template %s: %w", name, err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, data); err != nil {
		return nil, fmt.Errorf("rendering template %s: %w", name, err)
	}
	return out.Bytes(), nil
}

// jsonString is s as a JSON string.
func jsonString(s string) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	err := enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n"), err
}

func modeOf(m imagemeta.FileMode) fs.FileMode { return fs.FileMode(m) & fs.ModePerm }

// reload is the command that makes a unit read its configuration again.
func reload(unit string) []string {
	return []string{"systemctl", "reload-or-restart", unit}
}
