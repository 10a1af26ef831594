package main

import (
	"testing"

	"github.com/imgforge/imgforge/pkg/agent/config"
)

func TestControlAddr(t *testing.T) {
	c := &config.Config{Node: config.Node{Address: "10.10.0.21/24"}}
	for _, tt := range []struct{ flag, want, err string }{
		{"9443", "10.10.0.21:9443", ""},
		{"off", "", ""},
		{"", "", ""},
		{"127.0.0.1:9444", "127.0.0.1:9444", ""},
		{"nine", "", `--control "nine": accepted: off, a port, or HOST:PORT`},
	} {
		got, err := controlAddr(tt.flag, c)
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && err.Error() != tt.err) {
			t.Errorf("%q: %q, %v; want %q, %q", tt.flag, got, err, tt.want, tt.err)
		}
	}
}
