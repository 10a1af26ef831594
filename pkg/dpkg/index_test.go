package dpkg

import (
	"bytes"
	"maps"
	"strings"
	"testing"
)

func TestIndexDigests(t *testing.T) {
	const index = `Package: haproxy
Version: 2.6.12-1+deb12u1
Installed-Size: 4300
Architecture: amd64
Description: fast and reliable load balancing reverse proxy
 HAProxy is a TCP/HTTP reverse proxy.
SHA256: 51F704622B1BA11E3E8828623B0AA6ADE60B0C32C15F2C3C234667727B4EF85F

Package: haproxy
Version: 2.6.12-1
Architecture: amd64
SHA256: 0000000000000000000000000000000000000000000000000000000000000001

Package: tzdata
Version: 2024a-0+deb12u1
Architecture: all
SHA256: 00000000000000000000000000000000000000000000000000000000000000aa
Package: not-a-new-stanza
`
	got, err := IndexDigests(strings.NewReader(strings.ReplaceAll(index, "\n", "\r\n")), map[string]bool{
		"haproxy 2.6.12-1+deb12u1 amd64": true, "tzdata 2024a-0+deb12u1 all": true, "nginx 1 amd64": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"haproxy 2.6.12-1+deb12u1 amd64": "51f704622b1ba11e3e8828623b0aa6ade60b0c32c15f2c3c234667727b4ef85f",
	}
	// The last stanza's Package field was overwritten by a second one
	// without a blank line: not a package anyone asked for.
	if !maps.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// FuzzIndexDigests: whatever the index holds, only wanted keys come back,
// each with the SHA256 of its stanza in lower case.
func FuzzIndexDigests(f *testing.F) {
	f.Add([]byte("Package: a\nVersion: 1\nArchitecture: all\nSHA256: AB\n\nPackage: b\nVersion: 2\nArchitecture: amd64\nSHA256: cd\n"))
	f.Add([]byte("Package: a\n Version: 1\nArchitecture: all\nSHA256:\n"))
	f.Add([]byte("\r\n\r\nPackage: a\r\nVersion: 1\r\nArchitecture: all\r\nSHA256: 00\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		want := map[string]bool{"a 1 all": true, "b 2 amd64": true}
		got, err := IndexDigests(bytes.NewReader(data), want)
		if err != nil {
			return
		}
		for k, v := range got {
			if !want[k] || v == "" || v != strings.ToLower(v) {
				t.Fatalf("%q: %q", k, v)
			}
		}
	})
}
