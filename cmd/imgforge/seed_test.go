package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func seedCLI(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCmd(&out, &errb, func(k string) string { return env[k] })
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func TestSeedCluster(t *testing.T) {
	out := t.TempDir()
	stdout, err := seedCLI(t, nil, "seed", "--cluster", "../../pkg/seed/testdata/cluster.yaml", "--out", out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "lb-1   lb    10.10.0.11  52:54:00:0a:00:0b") {
		t.Errorf("table:\n%s", stdout)
	}
	iso1, err := os.ReadFile(filepath.Join(out, "web-1", "seed.iso"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seedCLI(t, nil, "seed", "--cluster", "../../pkg/seed/testdata/cluster.yaml", "--out", out); err != nil {
		t.Fatal(err)
	}
	if iso2, _ := os.ReadFile(filepath.Join(out, "web-1", "seed.iso")); !bytes.Equal(iso1, iso2) {
		t.Error("a re-run changed web-1's seed.iso")
	}
}

func TestSeedErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"seed", "cache", "--out", t.TempDir()}, `ROLE: unknown role "cache"; accepted: app, db, lb, web`},
		{[]string{"seed", "lb", "--address", "10.0.2.15/24", "--vip", "10.0.3.1", "--out", t.TempDir()}, `--vip: 10.0.3.1 is outside the subnet 10.0.2.0/24`},
		{[]string{"seed", "web", "--address", "10.0.2.15", "--out", t.TempDir()}, `--address: "10.0.2.15": accepted: an address with its prefix length`},
		{[]string{"seed", "web", "--name", "Web", "--out", t.TempDir()}, `--name: "Web" is not a node name`},
		{[]string{"seed", "--out", t.TempDir()}, "give a ROLE for one node, or --cluster FILE"},
		{[]string{"seed", "web"}, "--out DIR is required"},
		{[]string{"seed", "--cluster", "x.yaml", "--name", "a", "--out", t.TempDir()}, "--name is for one node"},
		// Issue 16: one-node errors name the flags, not the cluster file's fields.
		{[]string{"seed", "lb", "--out", t.TempDir()}, "--vip: role lb holds the cluster's VIPs and needs at least one: give --vip ADDRESS[/PREFIX]"},
		{[]string{"seed", "lb", "--vip", "10.0.0.9", "--out", t.TempDir()}, "--vip 10.0.0.9: without --address the node's subnet is unknown; give the VIP with its prefix length, such as 10.0.0.9/24"},
		{[]string{"seed", "lb", "--address", "10.0.0.5/24", "--vip", "10.0.0.9", "--vip", "10.0.0.9", "--out", t.TempDir()}, "--vip 10.0.0.9 is given twice"},
		{[]string{"seed", "lb", "--address", "10.0.0.5/24", "--vip", "10.0.0.9", "--join", "1.2.3.4:99999", "--out", t.TempDir()}, `--join: "1.2.3.4:99999" is not an address; accepted: IP or IP:port, such as 10.10.0.11 or 10.10.0.11:7946`},
	} {
		_, err := seedCLI(t, nil, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "field ") || strings.Contains(err.Error(), "node's name") {
			t.Errorf("%v: got %v, want %q", tt.args, err, tt.want)
		}
	}
}
