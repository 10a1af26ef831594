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
	Signing     Signing           `json:"signing"`
}

// Signing says whether and with which key a build signed its outputs
// (SHA256SUMS.sig, provenance.intoto.json and the OCI image's cosign
// signature and attestations), and whether its boot chain is signed for
// Secure Boot.
type Signing struct {
	Signed bool `json:"signed"`
	// Key is the sha256 of the public key's PKIX DER encoding.
	Key string `json:"key,omitempty"`
	// SecureBoot says the disk's and the ISO's boot chain is signed for
	// UEFI Secure Boot: systemd-boot and unified kernel images (whose
	// signature covers the kernel command line and so the root hash);
	// the PXE set then carries each disk slot's signed UKI for updates.
	SecureBoot bool `json:"secure_boot"`
	// SecureBootCert is the sha256 of the DER of the certificate the
	// boot chain is signed with, which the firmware's db must hold.
	SecureBootCert string `json:"secure_boot_cert,omitempty"`
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
	// Layout is the raw disk's A/B layout: the slot sizes and the
	// partition labels (absent in manifests of older builds).
	Layout     *DiskLayout `json:"layout,omitempty"`
	ISOCmdline string      `json:"iso_cmdline,omitempty"`
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
// Root and Verity are slot A's, which the build writes; RootB and VerityB
// are the empty slot B's as the build leaves it (an update renames them
// after its root hash); StateFS is the UUID of the prebuilt ext4 file
// system in the state partition.
type PartitionIDs struct {
	Disk, ESP, Root, Verity, State string
	RootB, VerityB, StateFS        string `json:",omitempty"`
}

// DiskLayout is the A/B layout of a raw disk, in partition order:
//
//	1 ESP        PARTLABEL esp
//	2 root-a     PARTLABEL ROLE_VERSION  the built root
//	3 verity-a   PARTLABEL ROLE_VERSION  its dm-verity hash tree
//	4 root-b     PARTLABEL _empty        zeros, until an update writes it
//	5 verity-b   PARTLABEL _empty
//	6 state      PARTLABEL imgforge-state, a prebuilt empty ext4
//
// Both slots have the same sizes.
type DiskLayout struct {
	SlotSize   int64           `json:"slot_size"`   // bytes of each root partition
	VeritySize int64           `json:"verity_size"` // bytes of each verity partition
	Labels     PartitionLabels `json:"labels"`
}

// PartitionLabels are the GPT partition names (PARTLABELs) of a raw disk
// as the build writes it.
type PartitionLabels struct {
	ESP     string `json:"esp"`
	RootA   string `json:"root_a"`
	VerityA string `json:"verity_a"`
	RootB   string `json:"root_b"`
	VerityB string `json:"verity_b"`
	State   string `json:"state"`
}

// Partition type GUIDs of a raw disk (Discoverable Partitions
// Specification, x86-64), for its writer (package disk) and its readers
// (verify, the agent's update).
const (
	TypeESP        = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeRoot       = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
	TypeRootVerity = "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5"
	TypeVar        = "4D21B016-B534-45C2-A9FB-5C16E091FD2D"
)

// Partition labels of a raw disk.
const (
	ESPLabel   = "esp"
	StateLabel = "imgforge-state" // the state partition's and its ext4 file system's
	// EmptySlotLabel marks a slot with no root (systemd-sysupdate's
	// convention).
	EmptySlotLabel = "_empty"
	// MaxLabel is the length of a GPT partition name, in UTF-16 units.
	MaxLabel = 36
	// VersionLen is how many hex digits of the image digest make an
	// image's version.
	VersionLen = 12
)

// Version is an image's version: the first VersionLen hex digits of its
// image digest ("sha256:HEX" or HEX).
func Version(imageDigest string) string {
	v := strings.TrimPrefix(imageDigest, "sha256:")
	if len(v) > VersionLen {
		v = v[:VersionLen]
	}
	return v
}

// SlotLabel is the PARTLABEL of a slot holding version of role:
// ROLE_VERSION, the role shortened so that the whole fits the GPT's 36
// UTF-16 units (role names are ASCII, see package names).
func SlotLabel(role, version string) string {
	if n := MaxLabel - len(version) - 1; len(role) > n {
		role = role[:max(n, 0)]
	}
	return role + "_" + version
}

// ParseSlotLabel splits a slot's PARTLABEL into its role and version; ok
// is false for an empty slot or a label that names no version.
func ParseSlotLabel(label string) (role, version string, ok bool) {
	i := strings.LastIndexByte(label, '_')
	if i <= 0 || len(label)-i-1 != VersionLen {
		return "", "", false
	}
	for _, c := range label[i+1:] {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return "", "", false
		}
	}
	return label[:i], label[i+1:], true
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
