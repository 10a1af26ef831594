// Package version holds imgforge's version. It is a leaf: the on-node agent
// and the image builder both read it, so it imports nothing of either.
package version

// Version is imgforge's version, written into every image's labels and
// manifest and printed by both binaries. It is a constant so that every
// front end (CLI, Packer) makes the same bytes from the same inputs.
const Version = "0.1.0"
