package main

import (
	"bytes"
	"encoding/json"
	"runtime/debug"
	"testing"

	"github.com/imgforge/imgforge/pkg/imgforge"
)

func TestVersion(t *testing.T) {
	stamped := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/imgforge/imgforge", Version: "v0.1.0"},
		Settings: []debug.BuildSetting{
			{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "amd64"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "db00963aa8d1c1e0f0c2b9b0b3b8d4a1e2f3a4b5"},
			{Key: "vcs.time", Value: "2026-11-30T14:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	devel := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}
	tests := []struct {
		name     string
		bi       *debug.BuildInfo
		ok       bool
		args     []string
		wantText string
		wantJSON versionInfo
	}{
		{"stamped text", stamped, true, []string{"version"},
			"version: " + imgforge.Version + "\nmodule:  v0.1.0\ncommit:  db00963aa8d1c1e0f0c2b9b0b3b8d4a1e2f3a4b5 (with uncommitted changes)\ndate:    2026-11-30T14:00:00Z\ngo:      go1.26.8 linux/amd64\n", versionInfo{}},
		{"stamped json", stamped, true, []string{"version", "-o", "json"}, "",
			versionInfo{Version: imgforge.Version, Module: "v0.1.0", Commit: "db00963aa8d1c1e0f0c2b9b0b3b8d4a1e2f3a4b5", Modified: true, Date: "2026-11-30T14:00:00Z", GoVersion: "go1.26.8", Platform: "linux/amd64"}},
		{"no vcs", devel, true, []string{"version"},
			"version: " + imgforge.Version + "\ncommit:  unknown (built without VCS information)\ndate:    unknown\ngo:      go1.26.8\n", versionInfo{}},
		{"no build info json", nil, false, []string{"version", "--output=json"}, "", versionInfo{Version: imgforge.Version}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			root := newRootCmd(&out, &out, func(string) string { return "" })
			for _, c := range root.Commands() {
				if c.Name() == "version" {
					root.RemoveCommand(c)
				}
			}
			root.AddCommand(newVersionCmd(&common{}, func() (*debug.BuildInfo, bool) { return tt.bi, tt.ok }))
			root.SetArgs(tt.args)
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if tt.wantText != "" {
				if out.String() != tt.wantText {
					t.Errorf("got\n%q\nwant\n%q", out.String(), tt.wantText)
				}
				return
			}
			var got versionInfo
			if err := json.Unmarshal(out.Bytes(), &got); err != nil {
				t.Fatalf("%v in %q", err, out.String())
			}
			if got != tt.wantJSON {
				t.Errorf("got %+v, want %+v", got, tt.wantJSON)
			}
		})
	}
	if _, _, err := runCLI(t, nil, "version", "-o", "xml"); err == nil || err.Error() != `--output "xml": accepted: text, json` {
		t.Errorf("version -o xml: %v", err)
	}
}
