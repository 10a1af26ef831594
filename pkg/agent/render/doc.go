// Package render turns what a node knows at boot (its identity, the live
// members of every role, the VIPs, credentials and endpoints) into the
// configuration files of its role's services, and applies them safely.
//
// The model has two halves. Render is pure: from an Input and the
// templates baked into the image (/usr/share/imgforge/templates/ROLE/ and
// .../common/), it gives a Config, a list of Services, each a set of files
// one service reads plus the commands that make the service pick them up.
// Every value is validated before it reaches a template (names, interface
// names and credentials match strict patterns, addresses are parsed), so
// no input can add a line or a directive to a rendered file. The only
// non-pure step, a self-signed TLS pair for the web role, takes its
// randomness and clock from the Renderer and keeps the pair already on the
// node while it still fits.
//
// Apply writes one Service at a time: each file goes to a temporary file
// beside its target, is checked by the service's own checker (haproxy -c,
// nginx -t, keepalived -t, mariadbd --help) or, where the image has none,
// by a Validator in the agent (MetricsCheck), and is renamed over
// the target; the service's commands (systemctl reload-or-restart UNIT, or
// an SQL step) run only when some file's bytes changed. When a check or a
// command fails, every file of that service is put back as it was, so the
// node keeps its last good configuration and the next Apply tries again.
// The Report gives each file's path and sha256 for the agent's status.
//
// The package owns neither discovery nor the agent's loop: the caller
// fills Input, runs Render and Apply when members change, and injects the
// Runner that runs checkers and systemctl.
package render
