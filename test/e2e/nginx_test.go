//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/fcgi"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/render"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// TestNginxServes runs the nginx.conf the agent renders (PHP-FPM runtime,
// the https option's default) with the web image's own nginx, chrooted
// into its built root, in a network namespace, in front of a FastCGI app
// the test serves; no VM. What the cluster test sees through the VIP,
// and what it cannot: /health over plain HTTP, the redirect and HSTS,
// HTTP/2, gzip, /static/ kept a year, the app's cacheable answers cached
// (and its others never), a stale entry served while the app is down,
// and the cache folder made by nginx on a fresh node.
func TestNginxServes(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("chroot needs root")
	}
	root := roleRoots(t, 1, "web")["web"]
	seg := newSegment(t, "ngx", "10.11.0.1/24")
	seg.addAddr(t, "10.11.1.1/24") // the app's
	// The app: /cached for 60 s, /short for 1 s, /big a page worth
	// compressing, the rest no-store. Each answer counts the calls.
	var calls atomic.Int64
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch r.URL.Path {
		case "/cached":
			w.Header().Set("Cache-Control", "public, max-age=60")
		case "/short":
			w.Header().Set("Cache-Control", "public, max-age=1")
		default:
			w.Header().Set("Cache-Control", "no-store")
		}
		fmt.Fprintf(w, "call %d %s\n", n, r.URL.Path)
		if r.URL.Path == "/big" {
			fmt.Fprint(w, strings.Repeat("imgforge ", 200))
		}
	})
	l, err := seg.listen("10.11.1.1:9000")
	if err != nil {
		t.Fatal(err)
	}
	go fcgi.Serve(l, app)
	t.Cleanup(func() { l.Close() })

	// Render and apply as the agent does (the checker is the image's nginx -t).
	ri, err := imagemeta.ReadRoleInfo(filepath.Join(root, imagemeta.RolePath))
	if err != nil {
		t.Fatal(err)
	}
	r := &render.Renderer{Templates: renderTemplates(root), Current: os.DirFS(root), Rand: rand.Reader, Now: time.Now, Role: &ri}
	in := render.Input{
		Self:    render.Node{Name: "web-self", Role: "web", Address: netip.MustParseAddr("10.11.0.1")},
		Members: map[string][]render.Node{"app": {{Name: "app-01", Role: "app", Address: netip.MustParseAddr("10.11.1.1")}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := r.Render(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (&render.Applier{Root: root, Runner: &chrootRunner{root: root}}).Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	// A fresh node: no cache folder (nginx -t above may have made one).
	cacheDir := filepath.Join(root, "var/cache/nginx")
	if err := os.RemoveAll(cacheDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	nginx := exec.Command("ip", "netns", "exec", seg.ns, "chroot", root, "nginx", "-g", "daemon off;")
	nginx.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}
	nginx.Stdout, nginx.Stderr = &stderr, &stderr
	if err := nginx.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// SIGTERM: the master stops its workers before it ends.
		_ = nginx.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = nginx.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = nginx.Process.Kill()
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(root, "var/log/nginx/error.log"))
			t.Logf("nginx: %s\nerror.log:\n%s", stderr.String(), log)
		}
	})

	type answer struct {
		code                  int
		body, proto           string
		header                http.Header
		uncompressed, overTLS bool
	}
	get := func(url string, follow, h2 bool) (answer, error) {
		resp, err := seg.client("", follow, h2).Get(url)
		if err != nil {
			return answer{}, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return answer{code: resp.StatusCode, body: string(b), proto: resp.Proto, header: resp.Header,
			uncompressed: resp.Uncompressed, overTLS: resp.TLS != nil}, err
	}
	err = eventually(ctx, func() error {
		a, err := get("http://127.0.0.1/health", false, false)
		if err != nil {
			return err
		}
		if a.code != http.StatusOK || a.body != "ok\n" {
			return fmt.Errorf("/health: %d %q", a.code, a.body)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("nginx never answered /health over plain HTTP: %v", err)
	}
	if fi, err := os.Stat(cacheDir); err != nil || !fi.IsDir() {
		t.Errorf("nginx did not make its cache folder: %v", err)
	}

	a, err := get("http://127.0.0.1/cached?x=1", false, false)
	if err != nil || a.code != http.StatusMovedPermanently || a.header.Get("Location") != "https://127.0.0.1/cached?x=1" {
		t.Errorf("plain HTTP: %d, Location %q (%v); want 301 to https://127.0.0.1/cached?x=1", a.code, a.header.Get("Location"), err)
	}
	a, err = get("http://127.0.0.1:8080/stub_status", false, false)
	if err != nil || a.code != http.StatusOK || !strings.Contains(a.body, "Active connections") {
		t.Errorf("stub_status: %d %q (%v)", a.code, a.body, err)
	}

	// The cacheable route: the app is called once.
	var cached []string
	for i := range 2 {
		a, err := get("http://127.0.0.1/cached", true, false)
		if err != nil {
			t.Fatal(err)
		}
		if !a.overTLS || !strings.HasPrefix(a.header.Get("Strict-Transport-Security"), "max-age=") {
			t.Errorf("/cached after the redirect: over TLS %v, Strict-Transport-Security %q", a.overTLS, a.header.Get("Strict-Transport-Security"))
		}
		cached = append(cached, a.header.Get("X-Cache-Status")+" "+strings.TrimSpace(a.body))
		if i == 1 && cached[1] != "HIT call 1 /cached" {
			t.Errorf("/cached twice: %q, want the first call's answer as a HIT", cached)
		}
	}
	// The others: the app every time, never a HIT.
	for range 3 {
		before := calls.Load()
		a, err := get("https://127.0.0.1/", true, false)
		if err != nil {
			t.Fatal(err)
		}
		if a.header.Get("X-Cache-Status") != "MISS" || calls.Load() != before+1 {
			t.Errorf("/: X-Cache-Status %q, %d calls of the app; want a MISS and one call", a.header.Get("X-Cache-Status"), calls.Load()-before)
		}
	}
	a, err = get("https://127.0.0.1/big", true, false)
	if err != nil || !a.uncompressed || a.header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("/big: gzip %v, Vary %q (%v); want it compressed", a.uncompressed, a.header.Get("Vary"), err)
	}
	a, err = get("https://127.0.0.1/static/index.html", true, true)
	if err != nil || a.code != http.StatusOK || a.proto != "HTTP/2.0" || a.header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Errorf("/static/index.html: %d %s, Cache-Control %q (%v); want 200 over HTTP/2, kept a year", a.code, a.proto, a.header.Get("Cache-Control"), err)
	}

	// A stale entry while the app is down.
	if a, err := get("https://127.0.0.1/short", true, false); err != nil || a.header.Get("X-Cache-Status") != "MISS" {
		t.Fatalf("/short: X-Cache-Status %q (%v), want MISS", a.header.Get("X-Cache-Status"), err)
	}
	time.Sleep(2 * time.Second) // its max-age is 1 s
	l.Close()
	a, err = get("https://127.0.0.1/short", true, false)
	if err != nil || a.code != http.StatusOK || a.header.Get("X-Cache-Status") != "STALE" || !strings.Contains(a.body, "/short") {
		t.Errorf("/short with the app down: %d %q, X-Cache-Status %q (%v); want the stale entry", a.code, a.body, a.header.Get("X-Cache-Status"), err)
	}
	a, err = get("https://127.0.0.1/", true, false)
	if err != nil || a.code != http.StatusBadGateway {
		t.Errorf("/ with the app down: %d %q (%v); want 502, nothing cached", a.code, a.body, err)
	}
	t.Logf("nginx: /cached %q; / never cached; /short served stale with the app down", cached)
}
