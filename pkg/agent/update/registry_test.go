package update

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/imgforge/imgforge/pkg/oci"
)

// tokenRegistry is go-containerregistry's in-memory registry behind the
// distribution token protocol: /v2/ wants a bearer token, which /token
// hands to anyone (an anonymous pull, as public registries do).
func tokenRegistry(t *testing.T) (host string, tokens *atomic.Int32) {
	t.Helper()
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tokens = &atomic.Int32{}
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			tokens.Add(1)
			fmt.Fprintf(w, `{"token":"tok-%s"}`, strings.ReplaceAll(r.URL.Query().Get("scope"), ":", "-"))
			return
		}
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer tok-repository-stack/lb-") {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test",scope="repository:stack/lb:pull"`, srv.URL))
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), tokens
}

// TestUpdateFromRegistry: imgforge push's boot artifact, fetched by the
// agent with net/http (an anonymous token), updates the slot.
func TestUpdateFromRegistry(t *testing.T) {
	host, tokens := tokenRegistry(t)
	v1, v2 := makeImage(t, "lb", 1), makeImage(t, "lb", 2)
	ref := host + "/stack/lb:v2"
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oci.Push(context.Background(), ref, img); err != nil {
		t.Fatal(err)
	}
	files, err := oci.BootFiles(v2.dir)
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := partial.Descriptor(img)
	if _, err := oci.PushBoot(context.Background(), ref, *subject, files); err != nil {
		t.Fatal(err)
	}
	disk, esp := makeDisk(t, v1)
	before := takeSnapshot(t, disk, esp, "a")
	pulls := tokens.Load()
	res, err := update(t, ref, disk, esp, "a")
	if err != nil {
		t.Fatal(err)
	}
	checkSlot(t, disk, esp, "b", v2, res.Entry)
	if after := takeSnapshot(t, disk, esp, "a"); after.root != before.root || after.entries != before.entries {
		t.Error("the active slot changed")
	}
	if tokens.Load() == pulls {
		t.Error("the agent got no token")
	}
	// A tag without a boot artifact.
	if _, err := update(t, host+"/stack/lb:nothing", disk, esp, "b"); err == nil || !strings.Contains(err.Error(), "boot artifact") {
		t.Errorf("no boot artifact: %v", err)
	}
	// The image itself is not a boot artifact.
	if err := push(t, host+"/stack/lb:v3-boot"); err != nil {
		t.Fatal(err)
	}
	if _, err := update(t, host+"/stack/lb:v3", disk, esp, "b"); err == nil || !strings.Contains(err.Error(), "is not an imgforge boot artifact") {
		t.Errorf("an image as the boot artifact: %v", err)
	}
}

func push(t *testing.T, ref string) error {
	img, err := random.Image(256, 1)
	if err != nil {
		return err
	}
	_, err = oci.Push(context.Background(), ref, img)
	return err
}

func TestParseRef(t *testing.T) {
	for _, tc := range []struct{ in, host, repo, tag, err string }{
		{"registry.example.com/stack/lb:2025-01", "registry.example.com", "stack/lb", "2025-01", ""},
		{"127.0.0.1:5000/lb", "127.0.0.1:5000", "lb", "latest", ""},
		{"localhost/a/b:c", "localhost", "a/b", "c", ""},
		{"debian:12", "registry-1.docker.io", "library/debian", "12", ""},
		{"me/lb:1", "registry-1.docker.io", "me/lb", "1", ""},
		{"r.example/lb@sha256:" + strings.Repeat("a", 64), "", "", "", "give a tag"},
		{"r.example/lb:", "", "", "", "want REGISTRY/REPOSITORY:TAG"},
	} {
		h, r, tag, err := parseRef(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || h != tc.host || r != tc.repo || tag != tc.tag {
			t.Errorf("%s: %s %s %s %v", tc.in, h, r, tag, err)
		}
	}
}

func TestDigestReader(t *testing.T) {
	body := "root bytes"
	good := sum([]byte(body))
	for _, tc := range []struct {
		name, want string
		size       int64
		err        string
	}{
		{"good", good, int64(len(body)), ""},
		{"bad digest", strings.Repeat("0", 64), int64(len(body)), "its descriptor says"},
		{"short", good, int64(len(body)) + 1, "unexpected EOF"},
		{"long", good, int64(len(body)) - 1, "longer than"},
	} {
		d := &digestReader{rc: io.NopCloser(strings.NewReader(body)), h: newSHA(), want: tc.want, left: tc.size, name: "root.img"}
		_, err := io.ReadAll(d)
		if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
}
