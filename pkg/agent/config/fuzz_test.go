package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds user-data to the whole reading path: MIME and gzip
// unwrapping, the strict decoder and validation. It must never panic,
// every error must be one line, and whatever parses must survive Marshal
// and Parse again unchanged.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/cloud-config\n\n#cloud-config\nimgforge: {}\n--B--\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parts, err := CloudConfigs(data)
		if err != nil {
			return
		}
		for _, p := range parts {
			c, src, err := Parse("user-data", p.Data)
			if err != nil {
				if strings.Contains(err.Error(), "\n") {
					t.Fatalf("multi-line error: %q", err)
				}
				continue
			}
			if err := c.validate(src); err != nil {
				t.Fatalf("validated twice with different results: %v", err)
			}
			b, err := Marshal(c)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			if _, _, err := Parse("again", append([]byte("#cloud-config\n"), b...)); err != nil {
				t.Fatalf("a parsed config does not parse again: %v\n%s", err, b)
			}
		}
	})
}

func FuzzParseInstanceData(f *testing.F) {
	b, err := os.ReadFile("testdata/instance-data.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = ParseInstanceData(data)
	})
}
