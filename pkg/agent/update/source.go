package update

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// Files of an update set: what `imgforge serve` serves for a role's set
// and what `imgforge push` pushes as the boot artifact (see package
// imagemeta).
const (
	ManifestFile = imagemeta.BootManifest
	RootFile     = imagemeta.BootRoot // the squashfs root, then its dm-verity hash tree
)

// Source gives the files of a new image.
type Source interface {
	// Open opens the named file; a missing file is an fs.ErrNotExist.
	// size is its length, or -1 when unknown.
	Open(ctx context.Context, name string) (rc io.ReadCloser, size int64, err error)
	String() string
}

// The boot artifact's type and tag (see package imagemeta).
const (
	BootArtifactType = imagemeta.BootArtifactType
	BootTagSuffix    = imagemeta.BootTagSuffix
	titleAnnotation  = imagemeta.BootTitleAnnotation
)

// NewSource picks the source of s: an http:// or https:// URL is the
// folder of a set served by `imgforge serve` (http://HOST/sets/ROLE/),
// anything else an OCI reference REGISTRY/REPO:TAG whose boot artifact is
// at TAG-boot.
func NewSource(s string, client *http.Client) (Source, error) {
	if client == nil {
		client = http.DefaultClient
	}
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("update source %q: %w", s, err)
		}
		if !strings.HasSuffix(u.Path, "/") {
			u.Path += "/"
		}
		return &setSource{base: u, client: client}, nil
	}
	return newRegistrySource(s, client)
}

// setSource reads a set over HTTP(S).
type setSource struct {
	base   *url.URL
	client *http.Client
}

func (s *setSource) String() string { return s.base.String() }

func (s *setSource) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	u := s.base.ResolveReference(&url.URL{Path: name})
	return get(ctx, s.client, u.String(), nil)
}

// StallTimeout ends a download on which no byte arrived for this long
// (a peer gone without closing the connection); the update fails and
// leaves the node as it was.
var StallTimeout = time.Minute

// stallReader cancels its request when no Read returns bytes for
// StallTimeout.
type stallReader struct {
	rc     io.ReadCloser
	timer  *time.Timer
	cancel context.CancelFunc
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	if n > 0 {
		s.timer.Reset(StallTimeout)
	}
	return n, err
}

func (s *stallReader) Close() error {
	s.timer.Stop()
	s.cancel()
	return s.rc.Close()
}

// get GETs u; a 404 is an fs.ErrNotExist.
func get(ctx context.Context, c *http.Client, u string, hdr http.Header) (_ io.ReadCloser, _ int64, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(StallTimeout, func() {
		cancel(fmt.Errorf("no byte arrived for %s", StallTimeout))
	})
	defer func() {
		if err != nil {
			timer.Stop()
			cancel(nil)
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return &stallReader{rc: resp.Body, timer: timer, cancel: func() { cancel(nil) }}, resp.ContentLength, nil
	case http.StatusNotFound:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("GET %s: %w", u, fs.ErrNotExist)
	default:
		resp.Body.Close()
		return nil, 0, &statusError{url: u, code: resp.StatusCode, auth: resp.Header.Get("WWW-Authenticate")}
	}
}

type statusError struct {
	url  string
	code int
	auth string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: %s", e.url, http.StatusText(e.code))
}

// registrySource reads the boot artifact of an image from a registry
// with the distribution API over net/http: anonymous, or with the bearer
// token the registry's token service gives an anonymous pull.
type registrySource struct {
	client             *http.Client
	scheme, host, repo string
	tag                string
	token              string
	files              map[string]descriptor
	ref                string
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ociManifest struct {
	MediaType    string       `json:"mediaType"`
	ArtifactType string       `json:"artifactType"`
	Layers       []descriptor `json:"layers"`
}

// parseRef splits an OCI reference REGISTRY/REPO:TAG as docker does:
// the first element is the registry when it has a dot or a colon or is
// localhost; else it is Docker Hub.
func parseRef(s string) (host, repo, tag string, err error) {
	if strings.Contains(s, "@") {
		return "", "", "", fmt.Errorf("OCI reference %q: give a tag, not a digest (the boot artifact is found at TAG%s)", s, BootTagSuffix)
	}
	host, rest, ok := strings.Cut(s, "/")
	if !ok || (!strings.ContainsAny(host, ".:") && host != "localhost") {
		host, rest = "registry-1.docker.io", s
		if !strings.Contains(rest, "/") {
			rest = "library/" + rest
		}
	}
	repo, tag = rest, "latest"
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		repo, tag = rest[:i], rest[i+1:]
	}
	if repo == "" || tag == "" || strings.ContainsAny(repo, " ?#") || strings.ContainsAny(tag, "/ ?#") {
		return "", "", "", fmt.Errorf("OCI reference %q: want REGISTRY/REPOSITORY:TAG", s)
	}
	return host, repo, tag, nil
}

func newRegistrySource(s string, c *http.Client) (*registrySource, error) {
	host, repo, tag, err := parseRef(s)
	if err != nil {
		return nil, err
	}
	scheme := "https"
	if h, _, err := net.SplitHostPort(host); err == nil && (h == "localhost" || net.ParseIP(h).IsLoopback()) {
		scheme = "http" // as docker and go-containerregistry do for a local registry
	} else if host == "localhost" {
		scheme = "http"
	}
	return &registrySource{client: c, scheme: scheme, host: host, repo: repo, tag: tag, ref: s}, nil
}

func (r *registrySource) String() string { return r.ref + " (" + r.tag + BootTagSuffix + ")" }

func (r *registrySource) url(kind, what string) string {
	return fmt.Sprintf("%s://%s/v2/%s/%s/%s", r.scheme, r.host, r.repo, kind, what)
}

// fetch GETs a registry URL, getting an anonymous token once when asked.
func (r *registrySource) fetch(ctx context.Context, u string, hdr http.Header) (io.ReadCloser, int64, error) {
	if hdr == nil {
		hdr = http.Header{}
	}
	for try := 0; ; try++ {
		if r.token != "" {
			hdr.Set("Authorization", "Bearer "+r.token)
		}
		rc, n, err := get(ctx, r.client, u, hdr)
		var se *statusError
		if try == 0 && errors.As(err, &se) && se.code == http.StatusUnauthorized && strings.HasPrefix(se.auth, "Bearer ") {
			if terr := r.getToken(ctx, se.auth); terr != nil {
				return nil, 0, fmt.Errorf("%w (getting a token: %w)", err, terr)
			}
			continue
		}
		return rc, n, err
	}
}

// getToken asks the token service of a Bearer challenge for an anonymous
// pull token (the distribution token protocol).
func (r *registrySource) getToken(ctx context.Context, challenge string) error {
	params := map[string]string{}
	for _, kv := range splitChallenge(strings.TrimPrefix(challenge, "Bearer ")) {
		k, v, _ := strings.Cut(kv, "=")
		params[strings.ToLower(strings.TrimSpace(k))] = strings.Trim(strings.TrimSpace(v), `"`)
	}
	realm, err := url.Parse(params["realm"])
	if err != nil || (realm.Scheme != "https" && realm.Scheme != "http") {
		return fmt.Errorf("bad realm in the challenge")
	}
	q := realm.Query()
	if params["service"] != "" {
		q.Set("service", params["service"])
	}
	scope := params["scope"]
	if scope == "" {
		scope = "repository:" + r.repo + ":pull"
	}
	q.Set("scope", scope)
	realm.RawQuery = q.Encode()
	rc, _, err := get(ctx, r.client, realm.String(), nil)
	if err != nil {
		return err
	}
	defer rc.Close()
	var t struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&t); err != nil {
		return fmt.Errorf("reading the token: %w", err)
	}
	r.token = t.Token
	if r.token == "" {
		r.token = t.AccessToken
	}
	if r.token == "" {
		return errors.New("the token service gave no token")
	}
	return nil
}

// splitChallenge splits k="v",k="v" at the commas outside quotes.
func splitChallenge(s string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for _, c := range s {
		switch {
		case c == '"':
			quoted = !quoted
			cur.WriteRune(c)
		case c == ',' && !quoted:
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(c)
		}
	}
	return append(out, cur.String())
}

func (r *registrySource) load(ctx context.Context) error {
	if r.files != nil {
		return nil
	}
	hdr := http.Header{"Accept": {"application/vnd.oci.image.manifest.v1+json"}}
	rc, _, err := r.fetch(ctx, r.url("manifests", r.tag+BootTagSuffix), hdr)
	if err != nil {
		return fmt.Errorf("fetching the boot artifact of %s (pushed by imgforge push): %w", r.ref, err)
	}
	defer rc.Close()
	var m ociManifest
	if err := json.NewDecoder(io.LimitReader(rc, 4<<20)).Decode(&m); err != nil {
		return fmt.Errorf("reading the boot artifact's manifest: %w", err)
	}
	if m.ArtifactType != BootArtifactType {
		return fmt.Errorf("%s%s is not an imgforge boot artifact (artifactType %q, want %q)", r.tag, BootTagSuffix, m.ArtifactType, BootArtifactType)
	}
	r.files = map[string]descriptor{}
	for _, l := range m.Layers {
		if t := l.Annotations[titleAnnotation]; t != "" {
			r.files[t] = l
		}
	}
	return nil
}

func (r *registrySource) Open(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	if err := r.load(ctx); err != nil {
		return nil, 0, err
	}
	d, ok := r.files[name]
	if !ok {
		return nil, 0, fmt.Errorf("the boot artifact has no %s: %w", name, fs.ErrNotExist)
	}
	hexd, ok := strings.CutPrefix(d.Digest, "sha256:")
	if !ok || len(hexd) != 64 {
		return nil, 0, fmt.Errorf("the boot artifact's %s has digest %q, want sha256:HEX", name, d.Digest)
	}
	rc, _, err := r.fetch(ctx, r.url("blobs", d.Digest), nil)
	if err != nil {
		return nil, 0, err
	}
	return &digestReader{rc: rc, h: sha256.New(), want: hexd, left: d.Size, name: name}, d.Size, nil
}

// digestReader checks a blob against its digest and size: the read that
// reaches the end returns an error instead of io.EOF if they differ.
type digestReader struct {
	rc   io.ReadCloser
	h    hash.Hash
	want string
	left int64
	name string
}

func (d *digestReader) Read(p []byte) (int, error) {
	if int64(len(p)) > d.left+1 {
		p = p[:d.left+1]
	}
	n, err := d.rc.Read(p)
	d.h.Write(p[:n])
	d.left -= int64(n)
	if d.left < 0 {
		return n, fmt.Errorf("%s is longer than its descriptor says", d.name)
	}
	if err == io.EOF {
		if d.left != 0 {
			return n, fmt.Errorf("%s: %w", d.name, io.ErrUnexpectedEOF)
		}
		if got := hex.EncodeToString(d.h.Sum(nil)); got != d.want {
			return n, fmt.Errorf("%s has sha256 %s, its descriptor says %s", d.name, got, d.want)
		}
	}
	return n, err
}

func (d *digestReader) Close() error { return d.rc.Close() }
