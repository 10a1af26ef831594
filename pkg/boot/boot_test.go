package boot

import (
	"os/exec"
	"strings"
	"testing"
)

func TestNetCmdline(t *testing.T) {
	v := Verity{RootHash: "ab12", Salt: "cd34", DataBlocks: 100, HashStart: 7}
	got := NetCmdline("console=ttyS0,115200", v, "${imgforge-base}root.img", 413696)
	want := "console=ttyS0,115200 boot=imgforge imgforge.root=${imgforge-base}root.img imgforge.roothash=ab12 imgforge.salt=cd34 imgforge.blocks=100 imgforge.hashstart=100 imgforge.size=413696"
	if got != want {
		t.Errorf("NetCmdline:\n got %s\nwant %s", got, want)
	}
}

func TestIPXEScript(t *testing.T) {
	s := string(IPXEScript("lb", "console=ttyS0 boot=imgforge imgforge.root=${imgforge-base}root.img"))
	for _, want := range []string{
		"#!ipxe\n",
		"isset ${imgforge-base} || goto nobase\n",
		// The initrd= name is how the kernel's EFI stub finds iPXE's initrd.
		"kernel ${imgforge-base}vmlinuz initrd=initrd.img console=ttyS0 boot=imgforge imgforge.root=${imgforge-base}root.img BOOTIF=01-${netX/mac:hexhyp} ${imgforge-args} || goto failed\n",
		"initrd ${imgforge-base}initrd.img || goto failed\n",
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
	got := Digests(ESP("t", "c", []byte("loader"), []byte("kernel"), []byte("initrd")))
	if len(got) != 5 {
		t.Fatalf("%d digests, want the ESP's 5 files: %v", len(got), got)
	}
	if want := "sha256:6923dd1bc0460082c5d55a831908c24a282860b7f1cd6c2b79cf1bc8857c639c"; got["/imgforge/vmlinuz"] != want {
		t.Errorf("kernel digest %q, want sha256(\"kernel\") %s", got["/imgforge/vmlinuz"], want)
	}
}
