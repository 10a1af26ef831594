package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestRolloutFlags: the command's refusals before it reads anything.
func TestRolloutFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"rollout", "--image", "lb=x"}, "--cluster FILE is required"},
		{[]string{"rollout", "--cluster", "c.yaml"}, "--image ROLE=SOURCE is required"},
		{[]string{"rollout", "--cluster", "c.yaml", "--image", "lb"}, `--image "lb": accepted: ROLE=SOURCE`},
		{[]string{"rollout", "--cluster", "c.yaml", "--image", "lb=x", "-o", "yaml"}, `--output "yaml"`},
	} {
		var out, errb bytes.Buffer
		root := newRootCmd(&out, &errb, func(string) string { return "" })
		root.SetArgs(tt.args)
		err := root.Execute()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.args, err, tt.want)
		}
	}
}
