package build

import (
	"context"
	"testing"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/cache"
	"github.com/imgforge/imgforge/pkg/rootfs"
)

// TestStageKeysUnchanged pins each stage's typed key to the positional
// cache.Key list the stages hashed before they were typed: the caches
// that exist stay valid, and the outputs stay the same. A build without
// root (mmdebstrap's unshare mode) has the keys of a build with root, so
// that its manifest, which lists them, is the same too.
func TestStageKeysUnchanged(t *testing.T) {
	p := goldenPlan()
	for _, rootless := range []bool{false, true} {
		b := &Builder{o: Options{Rootless: rootless}, mmdVersion: "mmdebstrap 1.5.7", releases: map[string]string{p.Distribution.Sources[0]: "sha256:5555"}}
		bk, err := b.baseKey(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		baseKey := cache.KeyOf(baseStage, bk)
		if want := cache.Key(baseStage, b.mmdVersion, p.Distribution.Suite, p.Architecture, p.Distribution.Sources, []string{"sha256:5555"},
			p.BasePackages, p.Exclude, p.Include, p.SourceDateEpoch, false); baseKey != want {
			t.Errorf("rootless=%v: base key %s, was %s", rootless, baseKey, want)
		}
		rk := roleKey{Base: baseKey, Packages: p.Packages, Prune: p.Prune, Exclude: p.Exclude, Include: p.Include, BaseRecord: layerRecord{Tar: "x"}, Plan: p}
		roleKey := cache.KeyOf(roleStage, rk)
		if want := cache.Key(roleStage, baseKey, p.Packages, p.Prune, p.Exclude, p.Include); roleKey != want {
			t.Errorf("role key %s, was %s", roleKey, want)
		}
		sums := []string{"etc/imgforge d 755 0 0  e3b0c442", "etc/imgforge/role.json 0 644 0 0  4f2a"}
		ok := overlayKey{Role: roleKey, Index: "sha256:1111", Files: sums, Epoch: p.SourceDateEpoch, Plan: p}
		if got, want := cache.KeyOf(overlayStage, ok), cache.Key(overlayStage, roleKey, "sha256:1111", sums, p.SourceDateEpoch); got != want {
			t.Errorf("overlay key %s, was %s", got, want)
		}
		var files []string
		for _, f := range boot.InitramfsFiles() {
			files = append(files, f.Path, digestOf(f.Data))
		}
		ik := b.initramfsKey(&Image{Plan: p, baseKey: baseKey})
		if got, want := cache.KeyOf(initramfsStage, ik), cache.Key(initramfsStage, baseKey, files, false); got != want {
			t.Errorf("rootless=%v: initramfs key %s, was %s", rootless, got, want)
		}
		layers := []string{"sha256:aa", "sha256:bb", "sha256:cc"}
		fk := rootfsKey{Layers: layers, Epoch: p.SourceDateEpoch, Options: rootfs.Options, BootExclude: p.BootExclude, BootInclude: p.BootInclude, BaseTar: "sha256:dd"}
		if got, want := cache.KeyOf(rootfsStage, fk), cache.Key(rootfsStage, layers, p.SourceDateEpoch, rootfs.Options, p.BootExclude, p.BootInclude); got != want {
			t.Errorf("rootfs key %s, was %s", got, want)
		}
	}
}
