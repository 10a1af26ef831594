package images_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/imgforge/imgforge/images"
	"github.com/imgforge/imgforge/pkg/spec"
)

func load(t *testing.T, name string) *spec.Image {
	t.Helper()
	data, err := images.FS.ReadFile(name + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	im, src, err := spec.ParseImage("images/"+name+".yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if err := im.Validate(src); err != nil {
		t.Fatal(err)
	}
	return im
}

// TestCloudFollowsDefault: the cloud image is the default one with the
// cloud kernel, without ISOLINUX and without the ISO; everything else
// (packages, files, excludes, services, disk, kernel command line) is the
// same, so a change to default.yaml that is not made to cloud.yaml fails
// here.
func TestCloudFollowsDefault(t *testing.T) {
	def, cloud := load(t, "default"), load(t, "cloud")
	want := *def
	want.Name, want.Description = cloud.Name, cloud.Description
	want.Packages = nil
	for _, p := range def.Packages {
		switch p {
		case "linux-image-amd64":
			want.Packages = append(want.Packages, "linux-image-cloud-amd64")
		case "isolinux", "syslinux-common":
		default:
			want.Packages = append(want.Packages, p)
		}
	}
	want.Outputs = slices.DeleteFunc(slices.Clone(def.Outputs), func(o string) bool { return o == "iso" || o == "docker-archive" })
	if !reflect.DeepEqual(*cloud, want) {
		t.Errorf("images/cloud.yaml is not images/default.yaml with the cloud kernel:\n got %+v\nwant %+v", *cloud, want)
	}
}

// TestHealthUnitTakesTrial: imgforge-health.service must leave --wait to
// the trial entry's imgforge.trial= (an explicit --wait overrides it, and
// a failing update then waited 10 minutes before it fell back).
func TestHealthUnitTakesTrial(t *testing.T) {
	b, err := images.FS.ReadFile("default/imgforge-health.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "ExecStart=") && strings.Contains(line, "--wait") {
			t.Errorf("imgforge-health.service passes --wait, which overrides imgforge.trial=: %s", line)
		}
	}
}
