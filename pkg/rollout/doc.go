// Package rollout updates a running imgforge cluster to new images, role
// by role, a few nodes at a time, without taking a role out of service.
//
// For each node it asks the node's agent, over the agent's control
// endpoint (mutual TLS with an operator certificate of the cluster CA,
// see package agent), to drain (leave service: its peers drop it from
// their configuration, an lb gives up its VIPs), then to update (write the
// new image into its inactive A/B slot and reboot into it), and waits
// until the node answers on the new version, healthy, and is back in the
// configuration of every peer that renders its role. At most
// MaxUnavailable nodes of a role are out of service at once, counting
// nodes a killed earlier run left out.
//
// A node that comes back on its old version rolled back by itself (its
// new slot failed its boot tries): the rollout stops, names the node, and
// remembers the image, which a later run offers again only with Force.
// Its progress is kept in a state file beside the cluster file, so a
// killed rollout resumes where it was.
//
// The package does not build or serve images (packages build and serve
// do), nor write slots (package agent/update does, on the node).
package rollout
