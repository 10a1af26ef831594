// Package format is the one list of the output formats imgforge writes.
// The spec's validation, the builder, the CLI's --format help, the Packer
// plugin's config validation and its docs all read it; the builder keeps
// one writer per format (pkg/build/output_*.go), and a test there checks
// that every format listed here has one.
//
// The package is a leaf: it imports nothing of imgforge, so that any
// front end can name the formats without linking the builder.
package format

import (
	"fmt"
	"slices"
	"strings"
)

// Format is one output format.
type Format struct {
	// Name is what a definition's outputs:, --format and the Packer
	// config's formats say.
	Name string
	// Description says what the format writes, in a few words.
	Description string
}

// All are the output formats, in the order a build writes them when asked
// for all.
var All = []Format{
	{"oci", "an OCI image layout (ROLE/oci)"},
	{"docker-archive", "a docker-archive tarball (ROLE.docker.tar)"},
	{"raw", "a UEFI-bootable raw disk (ROLE.raw)"},
	{"qcow2", "the same disk as qcow2 (ROLE.qcow2)"},
	{"vmdk", "the same disk as a streamOptimized vmdk, for vSphere (ROLE.vmdk)"},
	{"vhd", "the same disk as a fixed VHD, for Azure (ROLE.vhd)"},
	{"gce", "the same disk as disk.raw in a tar.gz, for Google Compute Engine (ROLE.gce.tar.gz)"},
	{"iso", "a hybrid ISO, UEFI and BIOS (ROLE.iso)"},
	{"pxe", "a PXE set: kernel, initramfs, root image and boot.ipxe (pxe/)"},
}

// Names are the names of All, in order.
func Names() []string {
	out := make([]string, len(All))
	for i, f := range All {
		out[i] = f.Name
	}
	return out
}

// Known says whether name is an output format.
func Known(name string) bool { return slices.Contains(Names(), name) }

// List is the names of All for a message: "oci, docker-archive, ...".
func List() string { return strings.Join(Names(), ", ") }

// Check returns an error naming the accepted formats when name is not one.
func Check(name string) error {
	if Known(name) {
		return nil
	}
	return fmt.Errorf("unknown output format %q; known: %s", name, List())
}
