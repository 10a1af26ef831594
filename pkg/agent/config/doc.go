// Package config reads the agent's settings: the imgforge: section of a
// node's cloud-config user-data, as cloud-init stored it.
//
// The agent does not talk to datasources itself. cloud-init (NoCloud,
// ConfigDrive, EC2, ...) writes the user-data it was given to
// /var/lib/cloud/instance/user-data.txt and its instance data to
// /run/cloud-init/instance-data.json; Load reads those, so the agent works
// with every datasource cloud-init supports. User-data may be a plain
// "#cloud-config" document, gzip-compressed, or a multipart MIME message:
// CloudConfigs finds the cloud-config documents in it, and exactly one
// must hold an imgforge: section. cloud-init ignores top-level keys it does
// not know (22.4 validates its schema without failing, and its schema
// allows extra keys).
//
// Decoding is strict (package spec's rules): an unknown field, a wrong
// kind or a key given twice is an error naming the file, line, column and
// field. Validate-time errors say what is accepted. Parse checks what user
// data alone decides; Complete fills the node's name, address and id from
// cloud-init's instance data and the machine when user-data leaves them
// out (so one user-data can boot many nodes of a role), and checks the
// VIPs against the node's subnet. docs/agent.md documents every field.
package config
