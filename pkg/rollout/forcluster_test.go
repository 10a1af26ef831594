package rollout

import (
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/agent"
	"github.com/imgforge/imgforge/pkg/seed"
	"github.com/imgforge/imgforge/pkg/spec"
	"github.com/imgforge/imgforge/roles"
)

// TestForCluster: the nodes of a seeded cluster at their control port,
// reached with the CA of its secrets; a secrets file others may read is
// refused, and nothing is written beside the cluster file.
func TestForCluster(t *testing.T) {
	rs, err := seed.LoadRoles(&spec.Catalog{Roles: []spec.Folder{{FS: roles.FS, Label: "embedded:roles"}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	clusterFile := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(clusterFile, []byte("cluster: shop\nnetwork: {subnet: 10.10.0.0/24, gateway: 10.10.0.1}\nvips: [{address: 10.10.0.100}]\n"+
		"nodes:\n  - {name: lb-1, role: lb, address: 10.10.0.11}\n  - {name: web-1, role: web, address: 10.10.0.21}\n"+
		"  - {name: db-1, role: db, address: 10.10.0.41}\n  - {name: db-2, role: db, address: 10.10.0.42, options: {mode: replica}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cl, err := seed.LoadCluster(clusterFile, rs)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "seeds")
	if _, err := seed.Generate(cl, seed.Options{Out: out, Rand: rand.Reader, ModTime: time.Now()}); err != nil {
		t.Fatal(err)
	}
	secrets := filepath.Join(out, seed.SecretsFile)
	before, _ := os.ReadDir(dir)
	c, err := ForCluster(clusterFile, secrets, rs, agent.DefaultControlPort, rand.Reader, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Nodes) != 4 || c.Nodes[1] != (Node{Name: "web-1", Role: "web", Addr: "10.10.0.21:9443"}) ||
		c.Nodes[3] != (Node{Name: "db-2", Role: "db", Addr: "10.10.0.42:9443", Mode: "replica"}) {
		t.Errorf("nodes %+v", c.Nodes)
	}
	if cc, ok := c.Dial(c.Nodes[0]).(*agent.ControlClient); !ok || cc.Addr != "10.10.0.11:9443" {
		t.Errorf("dial: %#v", c.Dial(c.Nodes[0]))
	}
	after, _ := os.ReadDir(dir)
	if len(after) != len(before) {
		t.Errorf("ForCluster wrote beside the cluster file: %v", after)
	}
	if err := os.Chmod(secrets, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ForCluster(clusterFile, secrets, rs, 9443, rand.Reader, time.Now(), 0); err == nil || !strings.Contains(err.Error(), "may be read or written by others") {
		t.Errorf("secrets mode 0644: %v", err)
	}
}
