// Package imagemeta owns the files that describe a built image, which the
// builder writes and others read: role.json (inside the image, read by the
// agent), manifest.json and SHA256SUMS (beside the image, read by verify,
// `imgforge run` and the Packer plugin), the manifest's disk section, and
// the build result (what `imgforge build -o json` prints and what the Packer
// plugin's artefact wraps).
//
// There is one Go type per file, used by the writer and by every reader, so
// a field added here reaches all of them. The package is a leaf: it imports
// only the standard library, so that the agent can read role.json without
// linking the builder.
//
// The JSON these types give is part of every image: builds are
// reproducible and their digests are compared across the CLI and the Packer
// plugin. Changing a field's name, order, type or omitempty changes every
// image's digest; the goldens in testdata/ pin the bytes.
//
// The name is imagemeta rather than format: in imgforge a "format" is an
// output format (raw, qcow2, iso, oci...).
package imagemeta
