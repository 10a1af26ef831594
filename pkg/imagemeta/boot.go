package imagemeta

// The boot artifact: what `imgforge push` pushes beside an image so that
// `imgforge-agent update REF` can install it into a node's inactive slot.
// It is an OCI image manifest (application/vnd.oci.image.manifest.v1+json)
// with artifactType BootArtifactType, the empty config
// (application/vnd.oci.empty.v1+json, "{}"), the image's manifest as its
// subject (so registries with the referrers API list it as a referrer of
// the image), and one layer per file, whose
// org.opencontainers.image.title annotation is the file's name. It is
// tagged TAG+BootTagSuffix next to the image's TAG, which every registry
// serves; the agent reads it by that tag. The same files make a set that
// `imgforge serve` serves at /sets/ROLE/.
const (
	BootArtifactType = "application/vnd.imgforge.boot.v1"
	BootTagSuffix    = "-boot"
	// BootTitleAnnotation names a layer's file.
	BootTitleAnnotation = "org.opencontainers.image.title"
)

// Files of a boot artifact or served set, and their layer media types.
const (
	BootManifest = ManifestName   // application/vnd.imgforge.manifest.v1+json
	BootKernel   = "vmlinuz"      // application/vnd.imgforge.kernel
	BootInitrd   = "initrd.img"   // application/vnd.imgforge.initrd
	BootOverlay  = "overlay.cpio" // application/vnd.imgforge.overlay.cpio
	BootRoot     = "root.img"     // application/vnd.imgforge.root.verity: the squashfs, then its dm-verity hash tree
)

// BootUKI is the file of a Secure Boot image's PXE set and boot artifact
// that holds disk slot's signed unified kernel image (imgforge-a.efi,
// imgforge-b.efi; application/vnd.imgforge.uki): what imgforge-agent
// update installs on the ESP for the slot.
func BootUKI(slot string) string { return "imgforge-" + slot + ".efi" }

// BootUKIMediaType is the layer media type of BootUKI files.
const BootUKIMediaType = "application/vnd.imgforge.uki"

// BootMediaTypes maps each file of a boot artifact to its layer's media
// type.
var BootMediaTypes = map[string]string{
	BootManifest: "application/vnd.imgforge.manifest.v1+json",
	BootKernel:   "application/vnd.imgforge.kernel",
	BootInitrd:   "application/vnd.imgforge.initrd",
	BootOverlay:  "application/vnd.imgforge.overlay.cpio",
	BootRoot:     "application/vnd.imgforge.root.verity",
	BootUKI("a"): BootUKIMediaType,
	BootUKI("b"): BootUKIMediaType,
}
