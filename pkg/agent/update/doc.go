// Package update installs a new image on a running imgforge node: it
// writes the image into the A/B slot the node is not running and makes
// it the next boot, with boot counting, so that a node that does not come
// up on it falls back to the slot it ran.
//
// The disk is the build's slot layout (GPT, in this order): the ESP,
// root and verity of slot a, root and verity of slot b, the state
// partition. A slot's partitions are labelled ROLE_VERSION and named by
// their root hash (PARTUUIDs = its first and last 128 bits), or labelled
// _empty. The ESP holds one kernel set per slot in /imgforge/SLOT/ and
// one systemd-boot entry per slot, imgforge-GEN-SLOT[+TRIES].conf; the
// highest generation that has tries left boots.
//
// An update (Update) never writes the running slot's partitions, its GPT
// entries or its kernel set. It first takes the other slot out of the
// boot (its entry and kernel set removed, its partitions labelled
// _empty), then streams the new root into it, computing the dm-verity
// hash tree in Go (the format of veritysetup with hash type 1) and
// comparing the root hash with the image's manifest before anything
// points at the slot; the loader entry is written last. So an update cut
// at any point leaves the node booting its current slot.
//
// The image comes from a Source: a set served by `imgforge serve`
// (/sets/ROLE/) or the boot artifact `imgforge push --boot-from` pushes
// beside an image in an OCI registry, read here with plain net/http (the
// agent links no registry library). The GPT is read and rewritten here
// too (headers, entries, CRC32s), with the disk and the ESP's folder as
// parameters, so that tests run on a disk image file and a plain folder.
// OnNode finds them on a node (kernel command line, sysfs) and mounts the
// ESP.
//
// The package does not build images or disks (packages build and disk
// do), nor decide when to update (the rollout does).
package update
