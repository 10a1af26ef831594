package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExitCodes checks the exit codes the README documents: 2 for usage
// errors, 1 for failures, 130 on interrupt.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	agent := filepath.Join(dir, "imgforge-agent")
	if err := os.WriteFile(agent, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"IMGFORGE_AGENT": agent, "HOME": dir}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name       string
		ctx        context.Context
		args       []string
		want       int
		wantStderr string
	}{
		{"ok", context.Background(), []string{"roles"}, exitOK, ""},
		{"help", context.Background(), []string{"--help"}, exitOK, ""},
		{"unknown command", context.Background(), []string{"bogus"}, exitUsage, `unknown command "bogus" for "imgforge"`},
		{"unknown flag", context.Background(), []string{"build", "--bogus", "lb"}, exitUsage, "unknown flag: --bogus"},
		{"bad flag type", context.Background(), []string{"run", "--memory", "lots", "lb"}, exitUsage, `invalid argument "lots" for "--memory"`},
		{"missing argument", context.Background(), []string{"build"}, exitUsage, "requires at least 1 arg(s)"},
		{"too many arguments", context.Background(), []string{"plan", "lb", "web"}, exitUsage, "accepts 1 arg(s), received 2"},
		{"bad output", context.Background(), []string{"plan", "-o", "xml", "lb"}, exitUsage, `--output "xml": accepted: text, json`},
		{"bad format", context.Background(), []string{"build", "--format", "floppy", "lb"}, exitUsage, `--format: unknown output format "floppy"`},
		{"bad set", context.Background(), []string{"plan", "--set", "runtime", "app"}, exitUsage, `--set "runtime"`},
		{"bad mirror", context.Background(), []string{"plan", "--mirror", "ftp://m.test/", "lb"}, exitUsage, "--mirror: "},
		{"bad forward", context.Background(), []string{"run", "--forward", "80", "lb"}, exitUsage, `--forward "80"`},
		{"seed without --out", context.Background(), []string{"seed", "lb"}, exitUsage, "--out DIR is required"},
		{"usage hint", context.Background(), []string{"plan"}, exitUsage, "Run 'imgforge plan --help' for usage."},
		{"unknown role", context.Background(), []string{"plan", "cache"}, exitFailure, `role "cache": known roles`},
		{"missing roles folder", context.Background(), []string{"plan", "--roles", filepath.Join(dir, "none"), "lb"}, exitFailure, "roles folder"},
		{"interrupted", canceled, []string{"build", "--cache-dir", filepath.Join(dir, "cache"), "--output-dir", filepath.Join(dir, "out"), "lb"}, exitInterrupt, "imgforge: interrupted; nothing was written"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			got := run(tt.ctx, tt.args, &stdout, &stderr, func(k string) string { return env[k] })
			if got != tt.want {
				t.Errorf("exit code %d, want %d; stderr:\n%s", got, tt.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not hold %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	bg := context.Background()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want int
	}{
		{"nil", bg, nil, exitOK},
		{"failure", bg, errors.New("mmdebstrap failed"), exitFailure},
		{"usage", bg, usage(errors.New("--output: bad")), exitUsage},
		{"wrapped usage", bg, errors.Join(errors.New("x"), usage(errors.New("--x"))), exitUsage},
		{"canceled error", bg, context.Canceled, exitInterrupt},
		{"interrupted while failing", canceled, errors.New("mmdebstrap: signal: interrupt"), exitInterrupt},
	}
	for _, tt := range tests {
		if got := exitCode(tt.ctx, nil, tt.err); got != tt.want {
			t.Errorf("%s: exitCode = %d, want %d", tt.name, got, tt.want)
		}
	}
}
