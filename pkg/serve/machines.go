package serve

import (
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/imgforge/imgforge/pkg/boot"
	"github.com/imgforge/imgforge/pkg/names"
	"github.com/imgforge/imgforge/pkg/seed"
	"github.com/imgforge/imgforge/pkg/spec"
)

// MachinesFile is the name of the machines file Load looks for in the
// root when none is named.
const MachinesFile = "machines.yaml"

// Machines is the machines file: which PXE set each machine boots and
// the NoCloud seed it gets.
//
//	default: lb              # the role of machines not listed; without it they get a menu
//	machines:
//	  - mac: 52:54:00:12:34:56
//	    role: lb
//	    hostname: lb-1       # default: ROLE-XXXXXX from the MAC address
//	    seed: seeds/lb-1     # folder with meta-data and user-data (and vendor-data,
//	                         # network-config), relative to the file; default: a minimal seed
type Machines struct {
	Default  string    `yaml:"default"`
	Machines []Machine `yaml:"machines"`

	byMAC map[string]*Machine
}

// Machine is one entry of the machines file.
type Machine struct {
	MAC      string `yaml:"mac"`
	Role     string `yaml:"role"`
	Hostname string `yaml:"hostname"`
	Seed     string `yaml:"seed"`
}

var (
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// Roles lists the PXE sets under root: the folders ROLE whose pxe/
// holds a boot.ipxe, sorted.
func Roles(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("reading the PXE root: %w", err)
	}
	var roles []string
	for _, e := range entries {
		if !e.IsDir() || !names.Role(e.Name()) {
			continue
		}
		if fi, err := os.Stat(filepath.Join(root, e.Name(), "pxe", boot.PXEScript)); err == nil && fi.Mode().IsRegular() {
			roles = append(roles, e.Name())
		}
	}
	sort.Strings(roles)
	return roles, nil
}

// LoadMachines reads the machines file at path and checks it against the
// PXE sets under root: every role must have one, every MAC address be a
// unicast Ethernet address listed once, every seed folder hold meta-data
// and user-data.
func LoadMachines(path, root string) (*Machines, error) {
	data, err := readCapped(path, MaxMachinesFile)
	if err != nil {
		return nil, err
	}
	roles, err := Roles(root)
	if err != nil {
		return nil, err
	}
	return parseMachines(path, data, root, roles)
}

// MaxMachinesFile is the largest machines file LoadMachines reads: a
// file of many thousand machines is far smaller.
const MaxMachinesFile = 1 << 20

// readCapped reads the machines file at path, refusing one larger than
// max bytes.
func readCapped(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the machines file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading the machines file: %w", err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: the machines file is larger than its limit of %d bytes; accepted: a file of at most %d bytes", path, max, max)
	}
	return data, nil
}

// parseMachines decodes and checks the machines file path holding data
// against the PXE sets roles under root.
func parseMachines(path string, data []byte, root string, roles []string) (*Machines, error) {
	var m Machines
	pos, err := spec.Decode(path, data, &m)
	if err != nil {
		return nil, err
	}
	at := func(field, format string, args ...any) error {
		p := pos[field]
		return &spec.Error{File: path, Line: p.Line, Col: p.Col, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	known := func(role string) bool { return slices.Contains(roles, role) }
	accepted := "the PXE sets under " + root + ": " + strings.Join(roles, ", ")
	if len(roles) == 0 {
		accepted = "none: " + root + " holds no PXE set (build one with imgforge build ROLE --format pxe)"
	}
	if m.Default != "" && !known(m.Default) {
		return nil, at("default", "role %q has no PXE set; accepted: %s", m.Default, accepted)
	}
	m.byMAC = map[string]*Machine{}
	for i := range m.Machines {
		e := &m.Machines[i]
		f := fmt.Sprintf("machines[%d]", i)
		hw, err := net.ParseMAC(e.MAC)
		if err != nil || len(hw) != 6 || hw[0]&1 != 0 {
			return nil, at(f+".mac", "%q is not a unicast Ethernet address; accepted: six hex bytes such as 52:54:00:12:34:56", e.MAC)
		}
		e.MAC = hw.String()
		if prev, dup := m.byMAC[e.MAC]; dup {
			return nil, at(f+".mac", "%s is listed twice (also for role %s)", e.MAC, prev.Role)
		}
		if e.Role == "" {
			return nil, at(f, "no role; accepted: %s", accepted)
		}
		if !known(e.Role) {
			return nil, at(f+".role", "role %q has no PXE set; accepted: %s", e.Role, accepted)
		}
		if e.Hostname != "" && !hostnameRE.MatchString(e.Hostname) {
			return nil, at(f+".hostname", "%q is not a host name; accepted: 1 to 63 letters, digits and inner '-'", e.Hostname)
		}
		if e.Seed != "" {
			if !filepath.IsAbs(e.Seed) {
				e.Seed = filepath.Join(filepath.Dir(path), e.Seed)
			}
			for _, name := range []string{seed.MetaDataFile, seed.UserDataFile} {
				if fi, err := os.Stat(filepath.Join(e.Seed, name)); err != nil || !fi.Mode().IsRegular() {
					return nil, at(f+".seed", "folder %s has no %s; a NoCloud seed folder holds meta-data and user-data (and optionally vendor-data, network-config)", e.Seed, name)
				}
			}
		}
		m.byMAC[e.MAC] = e
	}
	return &m, nil
}

// Lookup returns the entry of a MAC address, or nil.
func (m *Machines) Lookup(mac net.HardwareAddr) *Machine {
	if m == nil {
		return nil
	}
	return m.byMAC[mac.String()]
}

// seeded counts the machines with a seed folder.
func (m *Machines) seeded() int {
	n := 0
	if m != nil {
		for _, e := range m.Machines {
			if e.Seed != "" {
				n++
			}
		}
	}
	return n
}

// seedFiles are the files of a NoCloud seed served over HTTP.
var seedFiles = []string{seed.MetaDataFile, seed.UserDataFile, seed.VendorDataFile, seed.NetworkConfigFile}

// seedFile returns one file of the seed of the machine mac booting role:
// from the entry's seed folder, or the default seed. A seed without
// vendor-data gets an empty one; one without network-config, none
// (fs.ErrNotExist), so that cloud-init configures DHCP. once says the
// file is secret-bearing: user-data or vendor-data from a seed folder,
// handed out once (see seedLedger).
func seedFile(e *Machine, mac net.HardwareAddr, role, name string) (data []byte, once bool, err error) {
	if !slices.Contains(seedFiles, name) {
		return nil, false, fs.ErrNotExist
	}
	var s seed.Seed
	fromFolder := e != nil && e.Seed != ""
	if fromFolder {
		var err error
		if s, err = seed.ReadDir(e.Seed); err != nil {
			return nil, false, err
		}
	} else {
		host := role + "-" + strings.ReplaceAll(mac.String()[9:], ":", "")
		if e != nil && e.Hostname != "" {
			host = e.Hostname
		}
		s = seed.Default("imgforge-"+strings.ReplaceAll(mac.String(), ":", ""), host)
	}
	switch name {
	case seed.MetaDataFile:
		return s.MetaData, false, nil
	case seed.UserDataFile:
		return s.UserData, fromFolder && seedOnceFiles[name], nil
	case seed.VendorDataFile:
		if s.VendorData == nil {
			return []byte{}, false, nil
		}
		return s.VendorData, fromFolder && seedOnceFiles[name], nil
	}
	if s.NetworkConfig == nil {
		return nil, false, fs.ErrNotExist
	}
	return s.NetworkConfig, false, nil
}
