// Package spec reads imgforge's definitions: roles (roles/NAME.yaml) and
// images (images/NAME.yaml), from folders on disk and the defaults embedded
// in the binary.
//
// Decoding is strict: an unknown field, a value of the wrong kind, a key
// given twice or a YAML syntax error is an *Error that names the file, line,
// column and field and says what would be accepted. Validate then checks
// values (names, package names, paths, ports, modes). The package does not
// resolve a role against its image; package plan does.
package spec
