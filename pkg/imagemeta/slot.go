package imagemeta

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// RootHashUUIDs are the PARTUUIDs the build gives slot a's root and
// verity partitions: the first and the last 128 bits of rootHash (hex),
// shaped as version 4 UUIDs, upper case. ok is false when rootHash is
// not 64 hex digits.
func RootHashUUIDs(rootHash string) (root, verity string, ok bool) {
	raw, err := hex.DecodeString(rootHash)
	if err != nil || len(raw) != 32 {
		return "", "", false
	}
	shape := func(b []byte) string {
		u := slices.Clone(b)
		u[6] = (u[6] & 0x0f) | 0x40
		u[8] = (u[8] & 0x3f) | 0x80
		return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16]))
	}
	return shape(raw[:16]), shape(raw[16:]), true
}

// SlotSeededUUIDs are the PARTUUIDs of a slot's partitions derived from
// rootHash and the slot's name: those of the sha256 of
// "ROOTHASH:slot-SLOT". An update gives them to a slot whose root would
// otherwise have the other slot's PARTUUIDs (the same root hash in both),
// and a Secure Boot image always to slot b, whose signed command line
// must name them at build time.
func SlotSeededUUIDs(rootHash, slot string) (root, verity string) {
	sum := sha256.Sum256([]byte(rootHash + ":slot-" + slot))
	root, verity, _ = RootHashUUIDs(hex.EncodeToString(sum[:]))
	return root, verity
}

// SignedSlotUUIDs are the PARTUUIDs of slot's root and verity partitions
// for an image signed for Secure Boot: slot a's are the root hash's (as
// the build writes the disk), slot b's SlotSeededUUIDs, so that the two
// never collide and both are known when the UKIs are signed.
func SignedSlotUUIDs(rootHash, slot string) (root, verity string) {
	if slot == "a" {
		root, verity, _ = RootHashUUIDs(rootHash)
		return root, verity
	}
	return SlotSeededUUIDs(rootHash, slot)
}

// StateByLabel names the state partition by its PARTLABEL, for command
// lines signed at build time, which cannot know a node's PARTUUIDs.
const StateByLabel = "PARTLABEL=" + StateLabel

// slotKeys are the command-line arguments that name a slot's devices
// and root; SlotCmdline sets them for the slot.
var slotKeys = map[string]bool{
	"imgforge.slot": true, "imgforge.root": true, "imgforge.verity": true, "imgforge.roothash": true,
	"imgforge.salt": true, "imgforge.blocks": true, "imgforge.hashstart": true, "imgforge.state": true,
	"imgforge.size": true, "imgforge.trial": true,
}

// SlotCmdline is the kernel command line of a disk slot: base (an
// image's disk, ISO or PXE command line) with the slot's name, its root
// and verity partitions (PARTUUIDs), the root's verity v and state (such
// as PARTUUID=U or StateByLabel) in place of base's.
func SlotCmdline(base, slot, root, verity, state string, v Verity) string {
	var before, rest, after []string
	seen := false
	for _, f := range strings.Fields(base) {
		k, _, _ := strings.Cut(f, "=")
		switch {
		case f == "boot=imgforge":
			seen = true
		case slotKeys[k]:
		case !seen:
			before = append(before, f)
		case strings.HasPrefix(k, "imgforge."):
			rest = append(rest, f)
		default:
			after = append(after, f)
		}
	}
	// /dev/disk/by-partuuid names are lower case.
	out := append(slices.Clone(before), "boot=imgforge", "imgforge.slot="+slot,
		"imgforge.root=PARTUUID="+strings.ToLower(root), "imgforge.verity=PARTUUID="+strings.ToLower(verity),
		"imgforge.roothash="+v.RootHash, "imgforge.salt="+v.Salt,
		fmt.Sprintf("imgforge.blocks=%d", v.DataBlocks), "imgforge.hashstart=0")
	out = append(out, rest...)
	out = append(out, "imgforge.state="+state)
	return strings.Join(append(out, after...), " ")
}
