package imagemeta

import (
	"encoding/json"
	"fmt"
	"os"
)

// RolePath is where an imgforge image says which role it was built for.
const RolePath = "/etc/imgforge/role.json"

// RoleInfo is role.json: what the agent needs to know about the role its
// image was built for.
type RoleInfo struct {
	Role     string            `json:"role"`
	Image    string            `json:"image"`
	Options  map[string]string `json:"options,omitempty"`
	Services []string          `json:"services,omitempty"`
	// Ports is written even when it is empty (as null), as it always was:
	// omitting it would change the image of every role without ports.
	Ports    []Port   `json:"ports"`
	Health   Health   `json:"health"`
	Discover []string `json:"discover,omitempty"`
}

// Port is one port the role serves (a role definition's ports entry).
type Port struct {
	Name     string `json:"name"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol,omitempty"` // tcp or udp
}

// Health is the role's health check (a role definition's health field).
type Health struct {
	Type     string   `json:"type"` // http, tcp or command
	Port     int      `json:"port,omitempty"`
	Path     string   `json:"path,omitempty"`
	Command  []string `json:"command,omitempty"`
	Interval string   `json:"interval,omitempty"`
}

// Marshal gives role.json's bytes.
func (r RoleInfo) Marshal() ([]byte, error) {
	return marshal(r)
}

// ParseRoleInfo reads role.json's bytes. It checks the syntax and the
// types, not the values: a reader decides which roles it knows.
func ParseRoleInfo(data []byte) (RoleInfo, error) {
	var r RoleInfo
	if err := json.Unmarshal(data, &r); err != nil {
		return RoleInfo{}, err
	}
	if r.Role == "" {
		return RoleInfo{}, fmt.Errorf("field \"role\" is missing")
	}
	return r, nil
}

// ReadRoleInfo reads the role.json at path.
func ReadRoleInfo(path string) (RoleInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return RoleInfo{}, fmt.Errorf("reading the role file: %w", err)
	}
	r, err := ParseRoleInfo(b)
	if err != nil {
		return RoleInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// marshal is how every file of this package is written: indented by two
// spaces, HTML characters escaped, and a final newline.
func marshal(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
