package layer

import "testing"

func TestGlobFilter(t *testing.T) {
	f := GlobFilter([]string{"/boot/*", "/usr/lib/modules/*/kernel/drivers/*"}, []string{"/usr/lib/modules/*/kernel/drivers/net/*", "/usr/lib/modules/*/kernel/drivers/virtio/*"})
	for name, keep := range map[string]bool{
		"boot/vmlinuz-6.1": false,
		"boot":             true,
		"etc/passwd":       true,
		"usr/lib/modules/6.1/kernel/drivers/net/ethernet/intel/e1000.ko": true,
		"usr/lib/modules/6.1/kernel/drivers/virtio/virtio_pci.ko":        true,
		"usr/lib/modules/6.1/kernel/drivers/mmc/host/sdhci.ko":           false,
		"usr/lib/modules/6.1/kernel/fs/ext4/ext4.ko":                     true,
		"usr/lib/modules/6.1/kernel/drivers":                             true,
	} {
		if got := f(name, nil); got != keep {
			t.Errorf("%s: kept %v, want %v", name, got, keep)
		}
	}
	if GlobFilter(nil, []string{"/x"}) != nil {
		t.Error("no excludes should give no filter")
	}
}
