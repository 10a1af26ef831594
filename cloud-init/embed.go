// Package cloudinit holds the cloud-init configuration every imgforge image
// carries (cloud.cfg.d drop-ins); seeds for booting nodes are made from it too.
package cloudinit

import "embed"

// FS holds the drop-ins, installed under /etc/cloud/cloud.cfg.d.
//
//go:embed *.cfg
var FS embed.FS
