package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/render"
	"github.com/imgforge/imgforge/pkg/imagemeta"
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
	return ri, nil
}

// CheckRole reports settings made for another image: a role, or an app
// runtime, that the image was not built with.
func CheckRole(c *config.Config, ri imagemeta.RoleInfo) error {
	if c.Role != ri.Role {
		return fmt.Errorf("field \"imgforge.role\": the user-data says %s but this is the %s image; boot the %s image or fix the seed", c.Role, ri.Role, c.Role)
	}
	if c.App != nil && c.App.Runtime != "" && ri.Options["runtime"] != "" && c.App.Runtime != ri.Options["runtime"] {
		return fmt.Errorf("field \"imgforge.app.runtime\": the user-data says %s but this image was built with runtime=%s", c.App.Runtime, ri.Options["runtime"])
	}
	return nil
}

// CompleteFromRole fills what the settings leave out from the options the
// image was built with: the runtime option (imgforge.app.runtime) and the
// mode option (imgforge.db.mode), whichever the image has. Call it after
// CheckRole.
func CompleteFromRole(c *config.Config, ri imagemeta.RoleInfo) {
	if rt := ri.Options["runtime"]; rt != "" && (c.App == nil || c.App.Runtime == "") {
		c.App = &config.App{Runtime: rt}
	}
	if m := ri.Options["mode"]; m != "" && (c.DB == nil || c.DB.Mode == "") {
		c.DB = &config.DB{Mode: m}
	}
}

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
