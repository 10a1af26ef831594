package debian

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// ReleaseDigests fetches the InRelease file of every source and returns the
// sha256 of each, in the order of sources. They are part of the base's cache
// key: when the mirror publishes new packages, the base is rebuilt.
func ReleaseDigests(ctx context.Context, client *http.Client, sources []string) ([]string, error) {
	out := make([]string, len(sources))
	errs := make([]error, len(sources))
	var wg sync.WaitGroup
	for i, s := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = releaseDigest(ctx, client, s)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func releaseDigest(ctx context.Context, client *http.Client, source string) (string, error) {
	f := strings.Fields(source)
	if len(f) < 3 || f[0] != "deb" {
		return "", fmt.Errorf("apt source %q: expected \"deb URI SUITE COMPONENTS\"", source)
	}
	u := strings.TrimSuffix(f[1], "/") + "/dists/" + f[2] + "/InRelease"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("mirror %s: %w", f[1], err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("reaching mirror %s: %w", f[1], err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return "", fmt.Errorf("mirror %s has no release %s: %s answered %s", f[1], f[2], u, resp.Status)
	}
	body := resp.Body
	defer body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, body); err != nil {
		return "", fmt.Errorf("reading %s: %w", u, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
