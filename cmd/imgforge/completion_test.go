package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompletion(t *testing.T) {
	roles := filepath.Join(t.TempDir(), "roles")
	if err := os.Mkdir(roles, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(roles, "cache.yaml"), []byte("name: cache\ndescription: a cache\nhealth: {type: tcp, port: 6081}\npackages: [varnish]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string // candidates, then the directive
	}{
		{"roles", []string{"build", ""}, "app\ndb\nlb\nweb\n:4\n"},
		{"roles not given yet", []string{"build", "lb", "db", ""}, "app\nweb\n:4\n"},
		{"roles from --roles", []string{"build", "--roles", roles, ""}, "app\ncache\ndb\nlb\nweb\n:4\n"},
		{"one role for plan", []string{"plan", "lb", ""}, ":4\n"},
		{"formats", []string{"build", "--format", ""}, "oci\ndocker-archive\nraw\nqcow2\nvmdk\nvhd\ngce\niso\npxe\n:6\n"},
		{"formats after a comma", []string{"build", "--format", "raw,q"}, "raw,oci\nraw,docker-archive\nraw,qcow2\nraw,vmdk\nraw,vhd\nraw,gce\nraw,iso\nraw,pxe\n:6\n"},
		{"image formats of run", []string{"run", "lb", "--format", ""}, "raw\nqcow2\niso\n:4\n"},
		{"run takes a role or a file", []string{"run", ""}, "app\ndb\nlb\nweb\n:0\n"},
		{"set of the role given", []string{"plan", "app", "--set", ""},
			"runtime=php-fpm\tapp: PHP 8.2 FastCGI process manager on port 9000 (default)\nruntime=uwsgi\tapp: uWSGI serving a Python WSGI application on port 9000\n:4\n"},
		{"set of no role", []string{"build", "lb", "--set", ""}, ":4\n"},
		{"set of every role", []string{"build", "--set", ""}, "runtime=php-fpm\t"},
		{"set: db's mode", []string{"build", "--set", ""}, "mode=replica\tdb: replicates from the primary that discovery finds\n"},
		{"progress", []string{"build", "--progress", ""}, "auto\nplain\nquiet\n:4\n"},
		{"output", []string{"version", "-o", ""}, "text\njson\n:4\n"},
		{"cache ls roles", []string{"cache", "ls", ""}, "app\ndb\nlb\nweb\n:4\n"},
		{"commands", []string{""}, "cache\t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runCLI(t, nil, append([]string{"__complete"}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("completion of %q:\n%s\nwant it to hold\n%s", tt.args, out, tt.want)
			}
			if strings.HasSuffix(tt.want, "\n") && strings.HasSuffix(tt.want, ":4\n") && !strings.HasPrefix(out, strings.SplitN(tt.want, "\n", 2)[0]) {
				t.Errorf("completion of %q starts %q", tt.args, out)
			}
		})
	}
}
