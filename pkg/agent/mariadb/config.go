package mariadb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
)

// SeedFile is the seed's settings, which the agent renders on a replica
// (roles/db/templates/seed.json.tmpl): the primary whose snapshot it
// takes.
type SeedFile struct {
	Primary Peer `json:"primary"`
}

// Peer is a node's control endpoint: its name (its certificate's CN),
// address and port.
type Peer struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Port    int    `json:"port"`
}

// Addr is HOST:PORT.
func (p Peer) Addr() string { return net.JoinHostPort(p.Address, strconv.Itoa(p.Port)) }

var nodeName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

// ReadSeedFile reads and checks the seed file at path.
func ReadSeedFile(path string) (SeedFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SeedFile{}, fmt.Errorf("reading the seed file: %w", err)
	}
	return ParseSeedFile(path, b)
}

// ParseSeedFile checks a seed file's bytes; errors name the file and the
// field.
func ParseSeedFile(path string, b []byte) (SeedFile, error) {
	var f SeedFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return SeedFile{}, fmt.Errorf("%s: %w; accepted: {\"primary\": {\"name\": NODE, \"address\": IP, \"port\": PORT}}", path, err)
	}
	if dec.More() {
		return SeedFile{}, fmt.Errorf("%s: more than one JSON value", path)
	}
	p := f.Primary
	if !nodeName.MatchString(p.Name) || len(p.Name) > 253 {
		return SeedFile{}, fmt.Errorf("%s: field \"primary.name\": %q is not a node name; accepted: a host name", path, p.Name)
	}
	if a, err := netip.ParseAddr(p.Address); err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
		return SeedFile{}, fmt.Errorf("%s: field \"primary.address\": %q is not accepted; accepted: a unicast IP address", path, p.Address)
	}
	if p.Port < 1 || p.Port > 65535 {
		return SeedFile{}, fmt.Errorf("%s: field \"primary.port\": %d is not accepted; accepted: 1 to 65535", path, p.Port)
	}
	return f, nil
}
