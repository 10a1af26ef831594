// Package roles holds the role definitions embedded in imgforge (lb, web,
// app, db) and the files and templates they bake into their images. A
// folder of the same layout on disk overrides them by name.
package roles

import "embed"

// FS holds NAME.yaml definitions and the folders their files come from.
//
//go:embed *.yaml all:lb all:web all:app all:db
var FS embed.FS
