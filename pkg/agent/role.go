package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/render"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	namerules "github.com/imgforge/imgforge/pkg/names"
)

// ReadRoleInfo reads the image's role.json at path (imagemeta.RolePath
// on a node) and checks what the agent reads of it: a role name, and the
// ports, exporters, files, checkers and reload commands it renders with
// (render.ValidateRole).
func ReadRoleInfo(path string) (imagemeta.RoleInfo, error) {
	ri, err := imagemeta.ReadRoleInfo(path)
	if err != nil {
		return ri, err
	}
	if err := render.ValidateRole(&ri); err != nil {
		return ri, fmt.Errorf("%s: %w", path, err)
	}
	if err := validateBootOptions(ri); err != nil {
		return ri, fmt.Errorf("%s: %w", path, err)
	}
	return ri, nil
}

// CheckRole reports settings made for another image: a role, an option
// the role does not declare or a value it does not accept, or what the
// role needs and the settings lack (config.Config.CheckRole).
func CheckRole(c *config.Config, ri imagemeta.RoleInfo) error { return c.CheckRole(ri) }

// CompleteFromRole fills the options the settings leave out from the
// role's declared defaults and the image's choices. Call it after
// CheckRole.
func CompleteFromRole(c *config.Config, ri imagemeta.RoleInfo) { c.CompleteFromRole(ri) }

// Probe returns a check of the role's service on this machine, as its
// role.json's health says: an HTTP GET answered 2xx, a TCP connect, or a
// command that exits 0, each within timeout.
func Probe(h imagemeta.Health, timeout time.Duration) func(ctx context.Context) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Port))
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	return func(ctx context.Context) bool {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		switch h.Type {
		case "http":
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+h.Path, nil)
			if err != nil {
				return false
			}
			resp, err := client.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode >= 200 && resp.StatusCode < 300
		case "tcp":
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return false
			}
			conn.Close()
			return true
		case "command":
			if len(h.Command) == 0 {
				return false
			}
			return exec.CommandContext(ctx, h.Command[0], slices.Clone(h.Command[1:])...).Run() == nil
		}
		return false
	}
}

// validateBootOptions checks the options role.json lets user-data set:
// names and values the settings can carry, defaults among the values, and
// the mode option's values among the member modes discovery carries.
func validateBootOptions(ri imagemeta.RoleInfo) error {
	if v, ok := ri.Options[config.ModeOption]; ok && !slices.Contains(config.MemberModes, v) {
		return fmt.Errorf("options.%s: %q is not a member mode, which discovery shares; accepted: %s", config.ModeOption, v, strings.Join(config.MemberModes, ", "))
	}
	for i, o := range ri.BootOptions {
		f := fmt.Sprintf("boot_options[%d]", i)
		if !namerules.Word(o.Name) {
			return fmt.Errorf("%s.name: %q; accepted: lower-case letters, digits and '-', starting with a letter", f, o.Name)
		}
		if len(o.Values) == 0 {
			return fmt.Errorf("%s.values: empty; accepted: the values the option accepts", f)
		}
		if !slices.Contains(o.Values, o.Default) {
			return fmt.Errorf("%s.default: %q is not among its values; accepted: %s", f, o.Default, strings.Join(o.Values, ", "))
		}
		for _, v := range o.Values {
			if o.Name == config.ModeOption && !slices.Contains(config.MemberModes, v) {
				return fmt.Errorf("%s.values: %q is not a member mode, which discovery shares; accepted for option %s: %s", f, v, config.ModeOption, strings.Join(config.MemberModes, ", "))
			}
		}
	}
	return nil
}
