package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// FuzzParse feeds user-data to the whole reading path: MIME and gzip
// unwrapping, the strict decoder and validation. It must never panic,
// every error must be one line and show no secret-bearing value (see
// secretValues), and whatever parses must survive Marshal and Parse
// again unchanged.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		// Options, in both spellings, and an option given twice.
		f.Add([]byte(strings.Replace(string(b), "  role: ", "  options: {runtime: uwsgi, balance: random}\n  role: ", 1)))
		f.Add([]byte(strings.Replace(string(b), "  role: ", "  db: {mode: replica}\n  app: {mode: primary}\n  role: ", 1)))
	}
	f.Add([]byte("Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/cloud-config\n\n#cloud-config\nimgforge: {}\n--B--\n"))
	// Secrets where another kind of value belongs: errors once quoted them.
	f.Add([]byte("#cloud-config\nimgforge:\n  cluster: shop\n  role: app\n  database: shop:Sup3rS3cret\n"))
	f.Add([]byte("#cloud-config\nimgforge:\n  cluster: shop\n  role: web\n  monitoring: {metrics_url: 'https://u:Sup3rS3cret@m.example/'}\n"))
	f.Add([]byte("#cloud-config\nimgforge:\n  cluster: shop\n  role: app\n  database: {user: Sup3r-S3cret, password: app-password-1}\n"))
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
				for _, v := range secretValues(p.Data) {
					if strings.Contains(err.Error(), v) {
						t.Fatalf("the error shows the secret-bearing value %q: %v", v, err)
					}
				}
				continue
			}
			if err := c.validate(src); err != nil {
				t.Fatalf("validated twice with different results: %v", err)
			}
			// Checked against a role.json: one-line errors, no panic.
			for _, ri := range []imagemeta.RoleInfo{webInfo, appInfo, dbInfo, lbInfo} {
				ri.Role = c.Role
				if err := c.CheckRole(ri); err != nil && strings.Contains(err.Error(), "\n") {
					t.Fatalf("multi-line error: %q", err)
				}
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

// secretValues lists the values of secret-bearing fields of the imgforge:
// section of a cloud-config that an error must never show: every scalar
// under database, monitoring and tls, and of any field whose name holds
// key, password, token or secret (the gossip key, the node key). Only
// values that look like secrets count (8 characters or more, with an
// upper-case letter, a lower-case letter and a digit), and none that is
// also written elsewhere in the document, where errors may show it, so
// that the check cannot trip on an error's own words.
func secretValues(data []byte) []string {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	secret := map[string]bool{}
	other := map[string]bool{}
	var walk func(n *yaml.Node, isSecret bool)
	walk = func(n *yaml.Node, isSecret bool) {
		switch n.Kind {
		case yaml.ScalarNode:
			if isSecret {
				secret[n.Value] = true
			} else {
				other[n.Value] = true
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := strings.ToLower(n.Content[i].Value)
				other[n.Content[i].Value] = true
				walk(n.Content[i+1], isSecret || strings.Contains(k, "key") || strings.Contains(k, "password") || strings.Contains(k, "token") || strings.Contains(k, "secret"))
			}
		default:
			for _, c := range n.Content {
				walk(c, isSecret)
			}
		}
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != Section || top.Content[i+1].Kind != yaml.MappingNode {
			walk(top.Content[i+1], false)
			continue
		}
		other[top.Content[i].Value] = true
		sec := top.Content[i+1]
		for j := 0; j+1 < len(sec.Content); j += 2 {
			k := sec.Content[j].Value
			other[k] = true
			walk(sec.Content[j+1], k == "database" || k == "monitoring" || k == "tls")
		}
	}
	var out []string
	for v := range secret {
		if len(v) >= 8 && strings.ContainsAny(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") && strings.ContainsAny(v, "abcdefghijklmnopqrstuvwxyz") && strings.ContainsAny(v, "0123456789") && !other[v] {
			out = append(out, v)
		}
	}
	return out
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
