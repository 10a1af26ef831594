package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// TestReadRoleInfo reads role.json as the builder writes it (through
// imagemeta.RoleInfo.Marshal) and refuses a role the agent does not know.
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
	cache := write("cache.json", imagemeta.RoleInfo{Role: "cache"})
	if _, err := ReadRoleInfo(cache); err == nil || !strings.Contains(err.Error(), cache+`: unknown role "cache"`) {
		t.Errorf("an unknown role: %v", err)
	}
	if _, err := ReadRoleInfo(filepath.Join(dir, "none.json")); err == nil || !strings.Contains(err.Error(), "reading the role file") {
		t.Errorf("no role file: %v", err)
	}
}
