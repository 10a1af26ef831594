package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imgforge/imgforge/images"
	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/plan"
	"github.com/imgforge/imgforge/pkg/spec"
	"github.com/imgforge/imgforge/roles"
)

const userData = `#cloud-config
imgforge:
  cluster: shop
  role: web
  node: {name: web-1, address: 10.0.0.21/24}
  discovery:
    method: static
    static:
      members:
        - {name: app-1, role: app, address: 10.0.0.31}
`

// webRoleJSON is the role.json of the web image, with a health check
// that fails (port 1).
func webRoleJSON(t *testing.T) string {
	t.Helper()
	cat := &spec.Catalog{Roles: []spec.Folder{{FS: roles.FS, Label: "roles"}}, Images: []spec.Folder{{FS: images.FS, Label: "images"}}}
	p, err := plan.Resolve(cat, "web", plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ri := p.RoleInfo()
	ri.Health = imagemeta.Health{Type: "tcp", Port: 1}
	b, err := ri.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func files(t *testing.T, ud, role string) (dir string, args []string) {
	t.Helper()
	dir = t.TempDir()
	for name, data := range map[string]string{
		"user-data.txt":      ud,
		"instance-data.json": `{"v1": {"instance_id": "shop-web-1", "local_hostname": "web-1"}}`,
		"role.json":          role,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, []string{"--user-data", filepath.Join(dir, "user-data.txt"), "--instance-data", filepath.Join(dir, "instance-data.json"), "--role-file", filepath.Join(dir, "role.json")}
}

// nodeDirs are a node's root and the image's templates for run: the
// root has no /etc/passwd, so applying stops before any command runs
// (nothing touches the host), with an error the status shows.
func nodeDirs(t *testing.T) []string {
	t.Helper()
	tmpl := t.TempDir()
	for src, dst := range map[string]string{"../../roles/web/templates": "web", "../../images/default/templates/common": "common"} {
		if err := os.CopyFS(filepath.Join(tmpl, dst), os.DirFS(src)); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"--root", t.TempDir(), "--templates", tmpl}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func execute(ctx context.Context, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	cmd := newRootCmd(&out, &errb, nil)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	return out.String(), errb.String(), err
}

func TestRunAndStatus(t *testing.T) {
	dir, args := files(t, userData, webRoleJSON(t))
	addr := freeAddr(t)
	snap := filepath.Join(dir, "run", "snapshot.json")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, _, err := execute(ctx, append(append([]string{"run", "--listen", addr, "--snapshot", snap}, nodeDirs(t)...), args...)...)
		done <- err
	}()
	var out string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		out, _, err = execute(t.Context(), "status", "--addr", addr)
		if err == nil && strings.Contains(out, "file      "+snap) && strings.Contains(out, "error     ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed the snapshot file and the role renderer's error: %v\n%s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The role renderer ran: it rendered nginx.conf and stopped at the
	// node's users, which this root lacks.
	for _, want := range []string{"node      web-1 (web, id 167772181, 10.0.0.21/24) in cluster shop", "health    unhealthy", "app       app-1=10.0.0.31", "web       web-1=10.0.0.21 (unhealthy)",
		"rendering: reading the node's users"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	js, _, err := execute(t.Context(), "status", "--addr", addr, "-o", "json")
	if err != nil || !strings.Contains(js, `"cluster": "shop"`) {
		t.Errorf("json status: %v\n%s", err, js)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
	if _, err := os.Stat(snap); err != nil {
		t.Error(err)
	}
}

func TestRunInvalidSettings(t *testing.T) {
	tests := []struct{ name, ud, role, want string }{
		{"bad field", strings.Replace(userData, "role: app,", "role: ca_che,", 1), `{"role": "web", "health": {"type": "tcp", "port": 1}}`,
			`user-data.txt:10:31: field "imgforge.discovery.static.members[0].role": "ca_che" is not a role name; accepted: a role name`},
		{"wrong image", userData, `{"role": "lb", "health": {"type": "tcp", "port": 1}}`,
			`field "imgforge.role": the user-data says web but this is the lb image`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, args := files(t, tt.ud, tt.role)
			snap := filepath.Join(dir, "snapshot.json")
			_, _, err := execute(t.Context(), append(append([]string{"run", "--listen", freeAddr(t), "--snapshot", snap}, nodeDirs(t)...), args...)...)
			var ce configError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("got %v; want a one-line settings error with %q", err, tt.want)
			}
			if _, err := os.Stat(snap); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("wrote %s with invalid settings", snap)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	_, args := files(t, userData, `{"role": "web"}`)
	out, _, err := execute(t.Context(), append([]string{"check"}, args...)...)
	if err != nil || !strings.Contains(out, `"instance_id": "shop-web-1"`) {
		t.Errorf("%v\n%s", err, out)
	}
}

func TestRunWithoutSection(t *testing.T) {
	_, args := files(t, "#cloud-config\nhostname: x\n", `{"role": "web"}`)
	_, stderr, err := execute(t.Context(), append(append([]string{"run", "--listen", freeAddr(t), "--snapshot", t.TempDir() + "/s.json"}, nodeDirs(t)...), args...)...)
	if err != nil || !strings.Contains(stderr, "no imgforge: section") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("%v; stderr %q", err, stderr)
	}
}
