package imagemeta

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// ManifestName is the manifest's file name in a build's output folder.
const ManifestName = "manifest.json"

// Manifest is manifest.json, written beside each image: its inputs, its
// layers, its outputs with their digests, and its packages.
type Manifest struct {
	Role        string            `json:"role"`
	Image       string            `json:"image"`
	PlanDigest  string            `json:"plan_digest"`
	ImageDigest string            `json:"image_digest"`
	Tool        string            `json:"tool"`
	Inputs      ManifestInputs    `json:"inputs"`
	Layers      []ManifestLayer   `json:"layers"`
	Outputs     []Output          `json:"outputs"`
	Packages    []ManifestPackage `json:"packages"`
	Disk        *Disk             `json:"disk,omitempty"`
}

// ManifestInputs records what the build read.
type ManifestInputs struct {
	// Plan is the build's plan as package plan marshals it; a reader that
	// needs it decodes it into a plan.Plan. It is kept as raw JSON so that
	// this package links nothing of the builder.
	Plan            json.RawMessage   `json:"plan"`
	Mmdebstrap      string            `json:"mmdebstrap"`
	Releases        map[string]string `json:"releases"` // apt source -> InRelease sha256
	SourceDateEpoch int64             `json:"source_date_epoch"`
	StageKeys       map[string]string `json:"stage_keys"`
}

// ManifestLayer is one layer of the image.
type ManifestLayer struct {
	Kind   string `json:"kind"` // base, role or overlay
	Digest string `json:"digest"`
	DiffID string `json:"diff_id"`
	Size   int64  `json:"size"`
}

// ManifestPackage is one installed Debian package.
type ManifestPackage struct {
	Name         string `json:"name"`
	Version      string `json:"version"`
	Architecture string `json:"architecture"`
	Source       string `json:"source,omitempty"`
}

// Output is one output file or folder of a build.
type Output struct {
	Path   string `json:"path"` // relative to the output directory
	Format string `json:"format"`
	Size   int64  `json:"size"`
	Digest string `json:"digest"` // sha256 of the file; for an OCI layout, the image manifest's
}

// Disk is what manifest.json says about a bootable image (its "disk"
// section): the kernel, the dm-verity parameters, and the kernel command
// lines and partition UUIDs of the disk, ISO and netboot outputs.
type Disk struct {
	KernelVersion string `json:"kernel_version"`
	Verity        Verity `json:"verity"`
	// OverlayVerity is the overlay image's (imgforge's own files, the
	// boot entry's second initrd); its hash tree follows its data.
	OverlayVerity *Verity      `json:"overlay_verity,omitempty"`
	Cmdline       string       `json:"cmdline"`
	Partitions    PartitionIDs `json:"partitions"`
	ISOCmdline    string       `json:"iso_cmdline,omitempty"`
	// ESPFiles and ISOESPFiles map every file of the raw disk's ESP and
	// of the ISO's to its sha256 ("sha256:HEX"): the boot loader,
	// loader.conf, the loader entry, the kernel and the initramfs.
	// `imgforge verify` checks the ESP against them.
	ESPFiles    map[string]string `json:"esp_files,omitempty"`
	ISOESPFiles map[string]string `json:"iso_esp_files,omitempty"`
	// PXECmdline is the netboot's; ${imgforge-base} is the iPXE setting
	// that holds the URL of the PXE set's folder.
	PXECmdline string `json:"pxe_cmdline,omitempty"`
}

// Verity is the dm-verity parameters of an image's root filesystem.
type Verity struct {
	RootHash   string `json:"root_hash"`
	Salt       string `json:"salt"`
	DataBlocks int64  `json:"data_blocks"` // 4096-byte blocks of the root filesystem
	HashStart  int64  `json:"hash_start"`  // first block of the hash tree on its device
}

// PartitionIDs is a disk's GUID and its partitions' UUIDs, upper case as
// in the GPT. (Its JSON keys are the Go field names, as they always were.)
type PartitionIDs struct {
	Disk, ESP, Root, Verity, State string
}

// Marshal gives manifest.json's bytes.
func (m *Manifest) Marshal() ([]byte, error) {
	return marshal(m)
}

// ParseManifest reads manifest.json's bytes.
func ParseManifest(data []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// ReadManifest reads the manifest.json at path.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the manifest: %w", err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	return m, nil
}

// Version is an image's version, as its partition labels and boot entries
// carry it: the first 12 hex digits of its image digest ("sha256:HEX").
func Version(imageDigest string) string {
	h := strings.TrimPrefix(imageDigest, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}
