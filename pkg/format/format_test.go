package format

import "testing"

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"oci", true}, {"pxe", true}, {"vmdk", true}, {"vhd", true}, {"gce", true}, {"vpc", false}, {"OCI", false}, {"", false}, {"tar", false}} {
		if err := Check(tc.name); (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
	if got, want := List(), "oci, docker-archive, raw, qcow2, vmdk, vhd, gce, iso, pxe"; got != want {
		t.Errorf("List() = %q, want %q", got, want)
	}
}
