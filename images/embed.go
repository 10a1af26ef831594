// Package images holds the image definitions embedded in imgforge: the
// Debian release, architecture, shared packages and outputs every role is
// built on. A folder of the same layout on disk overrides them by name.
package images

import "embed"

// FS holds NAME.yaml definitions and the files they reference.
//
//go:embed *.yaml all:default
var FS embed.FS
