package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/imgforge/imgforge/pkg/imagemeta"
	"github.com/imgforge/imgforge/pkg/oci"
)

// pushFixture is an output folder with lb's OCI layout and manifest, as
// imgforge build writes them, and a registry on addr over plain HTTP.
func pushFixture(t *testing.T, addr string) (out, host, digest string) {
	t.Helper()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "auth.json"))
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	out = t.TempDir()
	if err := oci.WriteLayout(context.Background(), filepath.Join(out, "lb", "oci"), img, "lb", nil); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	b, _ := (&imagemeta.Manifest{Role: "lb", ImageDigest: d.String()}).Marshal()
	os.WriteFile(filepath.Join(out, "lb", imagemeta.ManifestName), b, 0o644)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("listening on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return out, ln.Addr().String(), d.String()
}

// TestPushErrors: REF, -o and the flags are checked before anything is
// built or read, each in one line naming what is accepted.
func TestPushErrors(t *testing.T) {
	// A cache "folder" that is a file: were a build started, it would
	// fail on it (and not run mmdebstrap).
	cacheFile := filepath.Join(t.TempDir(), "cache")
	os.WriteFile(cacheFile, nil, 0o644)
	empty := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad ref", []string{"push", "lb", "bad ref!!", "--build", "--cache-dir", cacheFile},
			`REF "bad ref!!": not an image reference; accepted: REGISTRY/REPO[:TAG], such as registry.example.com/stack/lb:2025-01 (`},
		{"bad second ref", []string{"push", "lb", "registry.example.com/stack/lb:1", "registry.example.com/stack/lb:no good", "--build", "--cache-dir", cacheFile},
			`REF "registry.example.com/stack/lb:no good": not an image reference; accepted: REGISTRY/REPO[:TAG]`},
		{"digest ref", []string{"push", "lb", "registry.example.com/stack/lb@sha256:" + strings.Repeat("0", 64), "--build", "--cache-dir", cacheFile},
			"not an image reference: a digest cannot be pushed to; accepted: REGISTRY/REPO[:TAG]"},
		{"bad output", []string{"push", "lb", "registry.example.com/stack/lb:1", "-o", "yaml", "--build", "--cache-dir", cacheFile}, `--output "yaml": accepted: text, json`},
		{"build and output-dir", []string{"push", "lb", "registry.example.com/stack/lb:1", "--build", "--output-dir", empty},
			"--output-dir and --build: give one; accepted: --output-dir OUTPUT (push the image built there) or --build (build it from the cache)"},
		{"no image", []string{"push", "lb", "registry.example.com/stack/lb:1", "--output-dir", empty},
			filepath.Join(empty, "lb", "oci") + ": no OCI image here; build one with imgforge build lb --format oci --output-dir " + empty + ", or push with --build"},
		{"no ref", []string{"push", "lb"}, "requires at least 2 arg(s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runCLI(t, nil, tt.args...)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q\nwant one line containing %q", err, tt.want)
			}
		})
	}
}

// TestPushCLI pushes the image of --output-dir (no build: there is no
// cache) under two tags, prints JSON with -o json, and skopeo reads it
// back.
func TestPushCLI(t *testing.T) {
	out, host, digest := pushFixture(t, "127.0.0.1:0")
	cacheFile := filepath.Join(t.TempDir(), "cache")
	os.WriteFile(cacheFile, nil, 0o644)
	refs := []string{host + "/stack/lb:2025-01", host + "/stack/lb:latest"}
	stdout, _, err := runCLI(t, nil, "push", "lb", refs[0], refs[1], "--output-dir", out, "--cache-dir", cacheFile, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Role, Digest, Source string
		Refs, Tags, Boot     []string
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("-o json printed %q: %v", stdout, err)
	}
	want := host + "/stack/lb@" + digest
	if res.Role != "lb" || res.Digest != digest || res.Source != filepath.Join(out, "lb", "oci") || len(res.Refs) != 2 || res.Refs[0] != want || res.Refs[1] != want || strings.Join(res.Tags, " ") != strings.Join(refs, " ") {
		t.Errorf("-o json: %+v", res)
	}
	for _, r := range refs {
		ref, _ := name.ParseReference(r)
		desc, err := remote.Get(ref)
		if err != nil || desc.Digest.String() != digest {
			t.Errorf("%s: %v %v, want %s", r, desc, err, digest)
		}
	}
	// Text: the pushed references, one a line.
	stdout, _, err = runCLI(t, nil, "push", "lb", refs[0], "--output-dir", out)
	if err != nil || stdout != want+"\n" {
		t.Errorf("text output %q %v, want %q", stdout, err, want+"\n")
	}
	if _, err := exec.LookPath("skopeo"); err == nil {
		for _, r := range refs {
			b, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "--raw", "docker://"+r).CombinedOutput()
			if err != nil {
				t.Fatalf("skopeo inspect %s: %v\n%s", r, err, b)
			}
			if got := fmt.Sprintf("sha256:%x", sha256.Sum256(b)); got != digest {
				t.Errorf("skopeo read %s: a manifest of digest %s, want %s", r, got, digest)
			}
		}
	}
}

// TestPushInsecureCLI: a plain-HTTP registry on 127.0.0.2 (which
// go-containerregistry does not take for local) needs --insecure.
func TestPushInsecureCLI(t *testing.T) {
	out, host, digest := pushFixture(t, "127.0.0.2:0")
	ref := host + "/stack/lb:1"
	if _, _, err := runCLI(t, nil, "push", "lb", ref, "--output-dir", out); err == nil || !strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		t.Fatalf("without --insecure: %v, want a refusal of plain HTTP", err)
	}
	stdout, _, err := runCLI(t, nil, "push", "lb", ref, "--output-dir", out, "--insecure")
	if err != nil || stdout != host+"/stack/lb@"+digest+"\n" {
		t.Errorf("with --insecure: %q %v", stdout, err)
	}
}

// TestExamplesParse: every imgforge command line in a command's examples
// names a command and only flags it has, with -o/--output text or json
// (push's example once gave -o out, meaning --output-dir).
func TestExamplesParse(t *testing.T) {
	var walk func(*cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		ex := strings.ReplaceAll(c.Example, "\\\n", " ")
		for _, line := range strings.Split(ex, "\n") {
			for _, part := range strings.FieldsFunc(line, func(r rune) bool { return r == '&' || r == '|' || r == ';' }) {
				f := strings.Fields(part)
				if len(f) == 0 || f[0] != "imgforge" {
					continue
				}
				n++
				root := newRootCmd(io.Discard, io.Discard, func(string) string { return "" })
				cmd, rest, err := root.Find(f[1:])
				if err != nil || cmd == root {
					t.Errorf("%s example %q: no such command: %v", c.Name(), part, err)
					continue
				}
				if err := cmd.ParseFlags(rest); err != nil {
					t.Errorf("%s example %q: %v", c.Name(), part, err)
					continue
				}
				if o := cmd.Flags().Lookup("output"); o != nil && o.Value.String() != "text" && o.Value.String() != "json" {
					t.Errorf("%s example %q: -o/--output %q; accepted: text, json", c.Name(), part, o.Value)
				}
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd(io.Discard, io.Discard, func(string) string { return "" }))
	if n < 10 {
		t.Errorf("only %d example command lines found", n)
	}
}
