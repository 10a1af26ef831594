package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// TestReadRoleInfo reads role.json as the builder writes it (through
// imagemeta.RoleInfo.Marshal) and refuses what it cannot render safely.
func TestReadRoleInfo(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, ri imagemeta.RoleInfo) string {
		b, err := ri.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	web := imagemeta.RoleInfo{Role: "web", Image: "debian-bookworm", Options: map[string]string{"tls": "on"},
		Ports: []imagemeta.Port{{Name: "http", Port: 80}}, Health: imagemeta.Health{Type: "http", Port: 80, Path: "/health"}, Discover: []string{"app"}}
	got, err := ReadRoleInfo(write("web.json", web))
	if err != nil {
		t.Fatal(err)
	}
	if got.Role != "web" || got.Health.Type != "http" || got.Health.Path != "/health" || got.Ports[0].Port != 80 || got.Discover[0] != "app" {
		t.Errorf("read %+v", got)
	}
	// A role is data: any role name is read, what it renders is checked.
	if _, err := ReadRoleInfo(write("cache.json", imagemeta.RoleInfo{Role: "cache"})); err != nil {
		t.Errorf("a role that is only data: %v", err)
	}
	bad := write("bad.json", imagemeta.RoleInfo{Role: "Cache"})
	if _, err := ReadRoleInfo(bad); err == nil || !strings.Contains(err.Error(), bad+`: role: "Cache" is not a role name`) {
		t.Errorf("not a role name: %v", err)
	}
	shell := write("shell.json", imagemeta.RoleInfo{Role: "cache", Render: []imagemeta.RenderService{{Service: "x",
		Files: []imagemeta.RenderFile{{Template: "a.tmpl", Path: "/etc/a", Check: []string{"sh", "-c", "id;{candidate}"}}}}}})
	if _, err := ReadRoleInfo(shell); err == nil || !strings.Contains(err.Error(), "render[0].files[0].check") {
		t.Errorf("a checker with a shell line: %v", err)
	}
	// Boot options: what user-data may say is checked before it is used.
	for _, tt := range []struct {
		name string
		ri   imagemeta.RoleInfo
		want string
	}{
		{"own option", imagemeta.RoleInfo{Role: "cache", BootOptions: []imagemeta.BootOption{{Name: "balance", Values: []string{"random", "round-robin"}, Default: "random"}}}, ""},
		{"no values", imagemeta.RoleInfo{Role: "cache", BootOptions: []imagemeta.BootOption{{Name: "balance", Default: "random"}}}, "boot_options[0].values: empty"},
		{"default not a value", imagemeta.RoleInfo{Role: "cache", BootOptions: []imagemeta.BootOption{{Name: "balance", Values: []string{"random"}, Default: "fast"}}}, `boot_options[0].default: "fast" is not among its values; accepted: random`},
		{"option name", imagemeta.RoleInfo{Role: "cache", BootOptions: []imagemeta.BootOption{{Name: "Balance", Values: []string{"random"}, Default: "random"}}}, `boot_options[0].name: "Balance"`},
		{"mode values", imagemeta.RoleInfo{Role: "cache", BootOptions: []imagemeta.BootOption{{Name: "mode", Values: []string{"leader", "follower"}, Default: "leader"}}}, `boot_options[0].values: "leader" is not a member mode, which discovery shares; accepted for option mode: primary, replica`},
		{"built mode", imagemeta.RoleInfo{Role: "cache", Options: map[string]string{"mode": "leader"}}, `options.mode: "leader" is not a member mode`},
	} {
		_, err := ReadRoleInfo(write(tt.name+".json", tt.ri))
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, err := ReadRoleInfo(filepath.Join(dir, "none.json")); err == nil || !strings.Contains(err.Error(), "reading the role file") {
		t.Errorf("no role file: %v", err)
	}
}
