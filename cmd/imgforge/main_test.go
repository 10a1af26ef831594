package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	agent := filepath.Join(t.TempDir(), "imgforge-agent")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\n# a stand-in agent: plans only need its bytes\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := newRootCmd(&out, &errb, func(k string) string {
		if k == "IMGFORGE_AGENT" {
			if v, ok := env[k]; ok {
				return v
			}
			return agent
		}
		return env[k]
	})
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	roles := filepath.Join(dir, "roles")
	os.Mkdir(roles, 0o755)
	os.WriteFile(filepath.Join(roles, "lb.yaml"), []byte("name: lb\nhealth: {type: tcp, port: 80}\npakages: [haproxy]\n"), 0o644)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown role", []string{"plan", "cache"}, nil, `role "cache": known roles: app, db, lb, web`},
		{"no agent", []string{"plan", "lb"}, map[string]string{"IMGFORGE_AGENT": filepath.Join(dir, "none")}, `reading the agent binary that IMGFORGE_AGENT names: open ` + filepath.Join(dir, "none")},
		{"unknown role in build", []string{"build", "lb", "cache"}, nil, `known roles: app, db, lb, web`},
		{"unknown field", []string{"plan", "--roles", roles, "lb"}, nil, roles + `/lb.yaml:3:1: field "pakages": unknown field here; accepted: credentials, description, discover`},
		{"bad format", []string{"build", "--format", "oci,floppy", "lb"}, nil, `--format: unknown output format "floppy"; known: oci, docker-archive`},
		{"bad set", []string{"plan", "--set", "runtime", "app"}, nil, `--set "runtime": expected OPTION=VALUE`},
		{"bad option", []string{"plan", "--set", "runtime=rails", "app"}, nil, `"rails" is not a choice; accepted: php-fpm, uwsgi`},
		{"bad epoch", []string{"plan", "lb"}, map[string]string{"SOURCE_DATE_EPOCH": "yesterday"}, `SOURCE_DATE_EPOCH="yesterday" in the environment is not a positive Unix time`},
		{"negative epoch flag", []string{"plan", "--source-date-epoch", "-5", "lb"}, nil, `--source-date-epoch: -5 is not a positive Unix time`},
		{"bad output", []string{"plan", "-o", "xml", "lb"}, nil, `--output "xml": accepted: text, json`},
		{"yaml output of build", []string{"build", "-o", "yaml", "lb"}, nil, `--output "yaml": accepted: text, json`},
		{"unwritable output dir", []string{"build", "--output-dir", filepath.Join(file, "out"), "--cache-dir", filepath.Join(dir, "cache"), "lb"}, nil, "output directory " + filepath.Join(file, "out") + " cannot be created"},
		{"no cache dir", []string{"build", "--output-dir", filepath.Join(dir, "out"), "lb"}, nil, "neither XDG_CACHE_HOME nor HOME is set: pass --cache-dir"},
		{"missing roles dir", []string{"plan", "--roles", filepath.Join(dir, "nope"), "lb"}, nil, "roles folder: stat"},
		{"no args", []string{"build"}, nil, "requires at least 1 arg"},
		// Issue 11, finding 3: a newline in the mirror added an apt source.
		{"mirror newline", []string{"plan", "--mirror", "http://m.test/debian\ndeb [trusted=yes] http://evil.test/ bookworm main", "lb"}, nil, "--mirror: the mirror URL holds whitespace or a control character; accepted: an http:// or https:// URL"},
		{"mirror userinfo", []string{"plan", "--mirror", "http://u:pw@m.test/debian", "lb"}, nil, "--mirror: the mirror URL holds a user or password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runCLI(t, tt.env, tt.args...)
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q\nwant one line containing %q", err, tt.want)
			}
		})
	}
}

func TestPlanOutputs(t *testing.T) {
	out, _, err := runCLI(t, map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}, "plan", "--mirror", "http://mirror.test/debian", "-o", "json", "app", "--set", "runtime=uwsgi")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Digest string
		Plan   struct {
			Role            string
			Options         map[string]string
			SourceDateEpoch int64 `json:"source_date_epoch"`
			Packages        []string
			Distribution    struct{ Mirror string }
		}
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	if p.Plan.Role != "app" || p.Plan.Options["runtime"] != "uwsgi" || p.Plan.SourceDateEpoch != 1700000000 ||
		p.Plan.Distribution.Mirror != "http://mirror.test/debian" || !strings.HasPrefix(p.Digest, "sha256:") {
		t.Errorf("plan %+v", p)
	}
	yamlOut, _, err := runCLI(t, nil, "plan", "lb")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(yamlOut, "# plan digest: sha256:") || !strings.Contains(yamlOut, "role: lb\n") {
		t.Errorf("yaml plan:\n%s", yamlOut)
	}
	// Each call has its own stand-in agent, so only the form is compared.
	if asked, _, err := runCLI(t, nil, "plan", "-o", "yaml", "lb"); err != nil || !strings.HasPrefix(asked, "# plan digest: sha256:") || !strings.Contains(asked, "role: lb\n") {
		t.Errorf("plan -o yaml is not plan's text form (%v):\n%s", err, asked)
	}
	roles, _, err := runCLI(t, nil, "roles")
	if err != nil || roles != "app\ndb\nlb\nweb\n" {
		t.Errorf("roles = %q, %v", roles, err)
	}
}
