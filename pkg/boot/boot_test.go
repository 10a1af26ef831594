package boot

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestNetCmdline(t *testing.T) {
	v := Verity{RootHash: "ab12", Salt: "cd34", DataBlocks: 100, HashStart: 7}
	got := NetCmdline("console=ttyS0,115200", v, "${imgforge-base}root.img", 413696, &Verity{RootHash: "ef56", Salt: "0a", DataBlocks: 3})
	want := "console=ttyS0,115200 boot=imgforge imgforge.root=${imgforge-base}root.img imgforge.roothash=ab12 imgforge.salt=cd34 imgforge.blocks=100 imgforge.hashstart=100 imgforge.overlayhash=ef56 imgforge.overlaysalt=0a imgforge.overlayblocks=3 imgforge.size=413696"
	if got != want {
		t.Errorf("NetCmdline:\n got %s\nwant %s", got, want)
	}
}

func TestIPXEScript(t *testing.T) {
	s := string(IPXEScript("lb", "console=ttyS0 boot=imgforge imgforge.root=${imgforge-base}root.img", true))
	for _, want := range []string{
		"#!ipxe\n",
		"isset ${imgforge-base} || goto nobase\n",
		// The initrd= name is how the kernel's EFI stub finds iPXE's initrd.
		"kernel ${imgforge-base}vmlinuz initrd=initrd.img initrd=overlay.cpio console=ttyS0 boot=imgforge imgforge.root=${imgforge-base}root.img BOOTIF=01-${netX/mac:hexhyp} ${imgforge-args} || goto failed\n",
		"initrd ${imgforge-base}initrd.img || goto failed\ninitrd ${imgforge-base}overlay.cpio || goto failed\n",
		"boot || goto failed\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if !strings.HasPrefix(s, "#!ipxe\n") {
		t.Error("an iPXE script must start with #!ipxe")
	}
}

// TestScriptsParse checks the initramfs hook and boot script with the
// shell the initramfs runs them with (dash, Debian's sh): a syntax error
// there stops every boot with a kernel panic.
func TestScriptsParse(t *testing.T) {
	sh, err := exec.LookPath("dash")
	if err != nil {
		if sh, err = exec.LookPath("sh"); err != nil {
			t.Skip("no dash or sh")
		}
	}
	for _, f := range InitramfsFiles() {
		if out, err := exec.Command(sh, "-n", "-c", string(f.Data)).CombinedOutput(); err != nil {
			t.Errorf("%s: %s -n: %v: %s", f.Path, sh, err, out)
		}
	}
}

func TestDigests(t *testing.T) {
	got := Digests(ESP([]byte("loader"), Slot{Name: "a", Gen: 1, Title: "t", Cmdline: "c", Kernel: []byte("kernel"), Initrd: []byte("initrd"), Overlay: []byte("overlay")}))
	if len(got) != 6 {
		t.Fatalf("%d digests, want the ESP's 6 files: %v", len(got), got)
	}
	if want := "sha256:6923dd1bc0460082c5d55a831908c24a282860b7f1cd6c2b79cf1bc8857c639c"; got["/imgforge/a/vmlinuz"] != want {
		t.Errorf("kernel digest %q, want sha256(\"kernel\") %s", got["/imgforge/a/vmlinuz"], want)
	}
}

func TestPadInitrd(t *testing.T) {
	for n := range 9 {
		got := PadInitrd(make([]byte, n, n+4))
		if len(got)%4 != 0 || len(got) < n || len(got) >= n+4 {
			t.Errorf("PadInitrd(%d bytes) = %d bytes", n, len(got))
		}
	}
}

// TestCpio reads the archive back with cpio(1), as the kernel would
// unpack it.
func TestCpio(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("no cpio")
	}
	data := Cpio([]File{{Path: OverlayPath, Mode: 0o444, Data: []byte("squashfs and hash tree")}}, 1735689600)
	if len(data)%4 != 0 {
		t.Errorf("archive of %d bytes, not a multiple of 4", len(data))
	}
	dir := t.TempDir()
	cmd := exec.Command(cpio, "-idm", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(string(data))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -id: %v: %s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, OverlayPath))
	if err != nil || string(got) != "squashfs and hash tree" {
		t.Fatalf("unpacked %q, %v", got, err)
	}
	if !bytes.Equal(data, Cpio([]File{{Path: OverlayPath, Mode: 0o444, Data: []byte("squashfs and hash tree")}}, 1735689600)) {
		t.Error("the same files gave other bytes")
	}
}
