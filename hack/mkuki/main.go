// Command mkuki is a scratch tool: a UKI from a kernel, initrds, a
// command line and os-release (for trying the Secure Boot path by hand).
package main

import (
	"fmt"
	"os"

	"github.com/imgforge/imgforge/pkg/boot"
)

func main() {
	if len(os.Args) < 6 {
		fmt.Fprintln(os.Stderr, "usage: mkuki STUB KERNEL CMDLINE-FILE OSREL OUT [INITRD...]")
		os.Exit(2)
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return b
	}
	var initrd []byte
	for _, p := range os.Args[6:] {
		initrd = append(initrd, read(p)...)
	}
	uki, err := boot.AssembleUKI(read(os.Args[1]), []boot.UKISection{
		{Name: ".osrel", Data: read(os.Args[4])},
		{Name: ".cmdline", Data: read(os.Args[3])},
		{Name: ".initrd", Data: initrd},
		{Name: ".linux", Data: read(os.Args[2])},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.WriteFile(os.Args[5], uki, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
