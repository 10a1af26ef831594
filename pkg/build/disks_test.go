package build

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestConvertDiskReproducible converts one raw disk twice to each format:
// the bytes must be the same, qemu-img must read back the raw content,
// qemu-img info must see the format (the vmdk streamOptimized, what
// vSphere imports; the VHD fixed, of the raw size, what Azure takes), and
// qemu-img check must accept it (it has no check of VHDs: it exits 63,
// "does not support checks", and the test checks the footer instead).
func TestConvertDiskReproducible(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (apt-get install qemu-utils)")
	}
	dir := t.TempDir()
	raw := filepath.Join(dir, "d.raw")
	data := make([]byte, 8<<20)
	for i := range data {
		if i%4096 < 64 {
			data[i] = byte(i / 4096)
		}
	}
	if err := os.WriteFile(raw, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"qcow2", "vmdk", "vhd"} {
		driver := map[string]string{"vhd": "vpc"}[f]
		if driver == "" {
			driver = f
		}
		var got [2][]byte
		for i := range got {
			// The same name, in two folders: a vmdk names its own file.
			out := filepath.Join(dir, f+string(rune('a'+i)), "d."+f)
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				t.Fatal(err)
			}
			if i == 1 {
				time.Sleep(1100 * time.Millisecond) // a time in the output would differ now
			}
			if err := convertDisk(context.Background(), HostTools(""), raw, out, f, "sha256:1234", 1735689600); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			got[i] = b
			if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", driver, raw, out).CombinedOutput(); err != nil {
				t.Fatalf("%s: qemu-img compare: %v: %s", f, err, out)
			}
			checkImageInfo(t, out, driver, int64(len(data)))
			if b, err := exec.Command("qemu-img", "check", "-f", driver, out).CombinedOutput(); err != nil {
				var ee *exec.ExitError
				if f != "vhd" || !errors.As(err, &ee) || ee.ExitCode() != 63 {
					t.Fatalf("%s: qemu-img check: %v: %s", f, err, b)
				}
			}
		}
		if !bytes.Equal(got[0], got[1]) {
			t.Errorf("%s: two conversions of the same disk differ", f)
		}
		if f == "vhd" {
			ft := got[0][len(got[0])-vhdFooterSize:]
			if len(got[0]) != len(data)+vhdFooterSize || string(ft[:8]) != "conectix" {
				t.Errorf("vhd: %d bytes, want the raw %d and a footer", len(got[0]), len(data))
			}
			if sum := binary.BigEndian.Uint32(ft[vhdChecksumOff:]); sum != vhdChecksum(ft) {
				t.Errorf("vhd: footer checksum %08x, want %08x", sum, vhdChecksum(ft))
			}
			if ts := binary.BigEndian.Uint32(ft[vhdTimeOff:]); ts != 1735689600-vhdEpochSeconds {
				t.Errorf("vhd: footer time %d, want SOURCE_DATE_EPOCH's", ts)
			}
		}
		if f == "vmdk" && !bytes.Contains(got[0], []byte("\nCID=")) {
			t.Errorf("vmdk: no CID in the descriptor")
		}
	}
	if err := convertDisk(context.Background(), HostTools(""), raw, filepath.Join(dir, "x.vdi"), "vdi", "", 0); err == nil {
		t.Error("vdi: want an error naming the accepted formats")
	}
}

// checkImageInfo runs qemu-img info on path: the format must be driver,
// the virtual size size; a vmdk must be streamOptimized and a VHD fixed.
func checkImageInfo(t *testing.T, path, driver string, size int64) {
	t.Helper()
	b, err := exec.Command("qemu-img", "info", "--output=json", "-f", driver, path).Output()
	if err != nil {
		t.Fatalf("%s: qemu-img info: %v", driver, err)
	}
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
		Specific    struct {
			Data struct {
				CreateType string `json:"create-type"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("%s: qemu-img info: %v: %s", driver, err, b)
	}
	if info.Format != driver || info.VirtualSize != size {
		t.Errorf("qemu-img info: format %s, virtual size %d; want %s, %d", info.Format, info.VirtualSize, driver, size)
	}
	if driver == "vmdk" && info.Specific.Data.CreateType != "streamOptimized" {
		t.Errorf("vmdk: create type %q, want streamOptimized (what vSphere imports)", info.Specific.Data.CreateType)
	}
	if driver == "vpc" {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if typ := binary.BigEndian.Uint32(raw[len(raw)-vhdFooterSize+vhdTypeOff:]); typ != vhdTypeFixed {
			t.Errorf("vhd: disk type %d, want %d (fixed, what Azure takes)", typ, vhdTypeFixed)
		}
	}
}

// TestSetVMDKCIDLeftovers: qemu-img may rewrite its descriptor with a
// shorter CID and leave the old text's last bytes after the NUL. The CID
// must still fit, and the result must not depend on those bytes.
func TestSetVMDKCIDLeftovers(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed (apt-get install qemu-utils)")
	}
	dir := t.TempDir()
	raw := filepath.Join(dir, "d.raw")
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	clean := filepath.Join(dir, "clean.vmdk")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, clean).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	orig, err := os.ReadFile(clean)
	if err != nil {
		t.Fatal(err)
	}
	start := bytes.Index(orig, []byte("# Disk DescriptorFile"))
	end := start + bytes.IndexByte(orig[start:], 0)
	cidAt := start + bytes.Index(orig[start:end], []byte("\nCID=")) + 1
	cidEnd := cidAt + bytes.IndexByte(orig[cidAt:], '\n')
	// The same descriptor with a one-digit CID, and the bytes the longer
	// text left behind after its NUL.
	short := append([]byte(nil), orig[:cidAt]...)
	short = append(short, "CID=7"...)
	short = append(short, orig[cidEnd:end]...)
	short = append(short, 0)
	short = append(short, "\n\x00x\n"...)
	dirty := append(short, orig[len(short):]...)
	messy := filepath.Join(dir, "messy.vmdk")
	if err := os.WriteFile(messy, dirty, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{clean, messy} {
		if err := setVMDKCID(p, "0a1b2c3d"); err != nil {
			t.Fatalf("%s: %v", filepath.Base(p), err)
		}
	}
	a, _ := os.ReadFile(clean)
	b, _ := os.ReadFile(messy)
	if !bytes.Equal(a, b) {
		t.Error("the leftovers after the descriptor's NUL reached the output")
	}
	if !bytes.Contains(a, []byte("\nCID=0a1b2c3d\n")) {
		t.Error("no new CID in the descriptor")
	}
	if out, err := exec.Command("qemu-img", "check", messy).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check: %v: %s", err, out)
	}
}
