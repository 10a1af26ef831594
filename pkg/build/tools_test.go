package build

import (
	"errors"
	"os/exec"
	"slices"
	"testing"
)

func toolNames(ts []Tool) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out
}

func TestRequiredTools(t *testing.T) {
	tests := []struct {
		formats  []string
		rootless bool
		command  string
		want     []string
	}{
		{[]string{"oci"}, false, "", []string{"mmdebstrap"}},
		{[]string{"oci", "docker-archive"}, true, "", []string{"mmdebstrap", "newuidmap", "newgidmap"}},
		{[]string{"pxe"}, false, "", []string{"mmdebstrap", "tar2sqfs", "veritysetup"}},
		{[]string{"raw"}, false, "", []string{"mmdebstrap", "tar2sqfs", "veritysetup", "mke2fs"}},
		{[]string{"qcow2"}, false, "", []string{"mmdebstrap", "tar2sqfs", "veritysetup", "mke2fs", "qemu-img"}},
		{[]string{"vmdk", "qcow2"}, false, "", []string{"mmdebstrap", "tar2sqfs", "veritysetup", "mke2fs", "qemu-img"}},
		{[]string{"iso"}, false, "", []string{"mmdebstrap", "tar2sqfs", "veritysetup", "xorriso"}},
		{[]string{"oci"}, false, "/opt/mmdebstrap", []string{"/opt/mmdebstrap"}},
	}
	for _, tt := range tests {
		got, err := RequiredTools(tt.formats, tt.rootless, tt.command)
		if err != nil {
			t.Fatalf("%v: %v", tt.formats, err)
		}
		if names := toolNames(got); !slices.Equal(names, tt.want) {
			t.Errorf("RequiredTools(%v, rootless=%v) = %v, want %v", tt.formats, tt.rootless, names, tt.want)
		}
		for _, tool := range got {
			if tool.Package == "" || tool.For == "" {
				t.Errorf("%s: no package or purpose", tool.Name)
			}
		}
	}
	if _, err := RequiredTools([]string{"floppy"}, false, ""); err == nil {
		t.Error("no error for an unknown format")
	}
}

func TestPreflight(t *testing.T) {
	installed := func(names ...string) func(string) (string, error) {
		return func(n string) (string, error) {
			if slices.Contains(names, n) {
				return "/usr/bin/" + n, nil
			}
			return "", &exec.Error{Name: n, Err: exec.ErrNotFound}
		}
	}
	tests := []struct {
		name     string
		formats  []string
		rootless bool
		have     []string
		want     string
	}{
		{"all there", []string{"raw", "iso"}, false, []string{"mmdebstrap", "tar2sqfs", "veritysetup", "mke2fs", "xorriso"}, ""},
		{"oci needs no disk tools", []string{"oci"}, false, []string{"mmdebstrap"}, ""},
		{"no mmdebstrap", []string{"oci"}, false, nil,
			"missing programs: mmdebstrap (the Debian root, the role's packages and the initramfs); install them with: apt-get install mmdebstrap"},
		{"rootless without uidmap", []string{"oci"}, true, []string{"mmdebstrap"},
			"missing programs: newuidmap (mmdebstrap's unshare mode, when not run as root), newgidmap (mmdebstrap's unshare mode, when not run as root); install them with: apt-get install uidmap"},
		{"qcow2 without qemu-utils", []string{"qcow2"}, false, []string{"mmdebstrap", "tar2sqfs", "veritysetup", "mke2fs"},
			"missing programs: qemu-img (converting the raw disk); install them with: apt-get install qemu-utils"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Preflight(tt.formats, tt.rootless, "", installed(tt.have...))
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var me *MissingToolsError
			if !errors.As(err, &me) || err.Error() != tt.want {
				t.Errorf("error %v\nwant %s", err, tt.want)
			}
		})
	}
}

func TestStagesOf(t *testing.T) {
	for _, tt := range []struct {
		formats []string
		want    int
	}{{[]string{"oci"}, 4}, {[]string{"oci", "docker-archive"}, 4}, {[]string{"raw"}, 7}, {[]string{"oci", "pxe"}, 7}, {[]string{"iso"}, 7}} {
		if got, err := StagesOf(tt.formats); err != nil || got != tt.want {
			t.Errorf("StagesOf(%v) = %d, %v; want %d", tt.formats, got, err, tt.want)
		}
	}
}

func TestOutputFile(t *testing.T) {
	for _, tt := range []struct{ format, want string }{
		{"oci", "oci"}, {"docker-archive", "lb.docker.tar"}, {"raw", "lb.raw"}, {"qcow2", "lb.qcow2"},
		{"vmdk", "lb.vmdk"}, {"iso", "lb.iso"}, {"pxe", "pxe/"}, {"unknown", "unknown"},
	} {
		if got := outputFile(tt.format, "lb"); got != tt.want {
			t.Errorf("outputFile(%q) = %q, want %q", tt.format, got, tt.want)
		}
	}
}

func TestRanSeconds(t *testing.T) {
	timings := []StageTime{
		{Role: "lb", Stage: "base", Seconds: 85, Result: "3f2a, 240 MB compressed"},
		{Role: "lb", Stage: "packages", Seconds: 0.2, Result: "cached 9c1e"},
		{Role: "lb", Stage: "overlay", Seconds: 1, Result: "failed"},
		{Role: "lb", Stage: "outputs", Seconds: 0.3, Result: "out/lb sha256:1 unchanged"},
		{Role: "web", Stage: "base", Seconds: 80, Result: "made"},
	}
	got := ranSeconds(timings, "lb")
	if len(got) != 1 || got["base"] != 85 {
		t.Errorf("ranSeconds = %v, want only base 85", got)
	}
	if got := ranSeconds(timings[1:4], "lb"); got != nil {
		t.Errorf("nothing ran: %v", got)
	}
}
