// Package seed writes NoCloud seeds: the meta-data, user-data and
// network-config that cloud-init reads from a volume labelled cidata.
//
// A seed is three files. WriteDir puts them in a folder (for a VFAT or 9p
// volume made elsewhere, or for inspection); WriteISO makes the usual
// seed volume, an ISO 9660 file system with Joliet names and the volume
// identifier "cidata", byte for byte the same for the same seed and time.
// What goes into the files is the caller's: Default gives a minimal seed
// that boots a machine with DHCP and nothing secret in it.
package seed

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"

	"github.com/imgforge/imgforge/pkg/atomicfile"
)

// Label is the volume label cloud-init's NoCloud datasource looks for.
const Label = "cidata"

// File names inside a seed.
const (
	MetaDataFile      = "meta-data"
	UserDataFile      = "user-data"
	VendorDataFile    = "vendor-data"
	NetworkConfigFile = "network-config"
)

// Seed is the content of a NoCloud seed. VendorData and NetworkConfig may
// be empty, in which case their files are left out (and cloud-init falls
// back to DHCP on the first NIC).
type Seed struct {
	MetaData      []byte
	UserData      []byte
	VendorData    []byte
	NetworkConfig []byte
	// Private marks a seed whose user-data holds secrets: the user-data
	// and the ISO are written readable by their owner only.
	Private bool
}

func (s Seed) files() []struct {
	name string
	data []byte
} {
	out := []struct {
		name string
		data []byte
	}{{MetaDataFile, s.MetaData}, {UserDataFile, s.UserData}}
	if len(s.VendorData) > 0 {
		out = append(out, struct {
			name string
			data []byte
		}{VendorDataFile, s.VendorData})
	}
	if len(s.NetworkConfig) > 0 {
		out = append(out, struct {
			name string
			data []byte
		}{NetworkConfigFile, s.NetworkConfig})
	}
	return out
}

// Default returns a minimal valid seed: meta-data with the instance id and
// host name, and a user-data that asks for nothing. It has no
// network-config: cloud-init then configures DHCP on the first wired NIC
// itself (its networkd renderer in Debian 12 ignores a version 2
// "match: name:" glob and would name an interface that does not exist).
// It holds no keys or passwords.
func Default(instanceID, hostname string) Seed {
	return Seed{
		MetaData: fmt.Appendf(nil, "instance-id: %s\nlocal-hostname: %s\n", yamlString(instanceID), yamlString(hostname)),
		UserData: []byte("#cloud-config\n# imgforge's default seed: no users, keys or passwords.\n"),
	}
}

// yamlString quotes s as a YAML double-quoted scalar (JSON strings are
// valid YAML), so that any instance id or host name stays one value.
func yamlString(s string) string {
	var b bytes.Buffer
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// WriteDir writes the seed's files into dir, creating it if needed; each
// file is written beside its place and renamed into it.
func WriteDir(dir string, s Seed) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating seed folder: %w", err)
	}
	for _, f := range s.files() {
		mode := os.FileMode(0o644)
		if s.Private && f.name == UserDataFile {
			mode = 0o600
		}
		if err := atomicfile.WriteFile(filepath.Join(dir, f.name), f.data, mode); err != nil {
			return fmt.Errorf("writing seed file: %w", err)
		}
	}
	if !s.hasNetworkConfig() {
		// A network-config of an earlier run would otherwise stay.
		if err := os.Remove(filepath.Join(dir, NetworkConfigFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing a stale network-config: %w", err)
		}
	}
	if len(s.VendorData) == 0 {
		if err := os.Remove(filepath.Join(dir, VendorDataFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing a stale vendor-data: %w", err)
		}
	}
	return nil
}

func (s Seed) hasNetworkConfig() bool { return len(s.NetworkConfig) > 0 }

// WriteISO writes the seed as an ISO 9660 image at path: volume
// identifier "cidata", Joliet names (so they keep their lower case and
// hyphens), every time stamp set to modTime. The same seed and modTime
// give the same bytes. The file is written beside path and renamed into
// place.
func WriteISO(path string, s Seed, modTime time.Time) (err error) {
	modTime = modTime.UTC().Truncate(10 * time.Millisecond)
	work, err := os.MkdirTemp(filepath.Dir(path), ".seed-work-*")
	if err != nil {
		return fmt.Errorf("writing seed iso: %w", err)
	}
	defer os.RemoveAll(work)
	if err := WriteDir(work, s); err != nil {
		return err
	}
	for _, f := range s.files() {
		if err := os.Chtimes(filepath.Join(work, f.name), modTime, modTime); err != nil {
			return fmt.Errorf("writing seed iso: %w", err)
		}
	}
	if err := os.Chtimes(work, modTime, modTime); err != nil {
		return fmt.Errorf("writing seed iso: %w", err)
	}

	mode := os.FileMode(0o644)
	if s.Private {
		mode = 0o600
	}
	tmp, err := atomicfile.Create(path, mode)
	if err != nil {
		return fmt.Errorf("writing seed iso: %w", err)
	}
	defer tmp.Abort()
	fs, err := iso9660.Create(file.New(tmp.File, false), 0, 0, 2048, work)
	if err != nil {
		return fmt.Errorf("creating iso 9660 file system: %w", err)
	}
	if err := fs.Finalize(iso9660.FinalizeOptions{Joliet: true, VolumeIdentifier: Label}); err != nil {
		return fmt.Errorf("writing iso 9660 file system: %w", err)
	}
	if err := fixVolumeDescriptors(tmp.File, modTime); err != nil {
		return fmt.Errorf("writing seed iso: %w", err)
	}
	return tmp.Commit()
}

const sector = 2048

// fixVolumeDescriptors makes the image deterministic and standard.
// go-diskfs v1.9.4 stamps time.Now() into the creation, modification,
// expiration and effective dates of the primary and supplementary (Joliet)
// volume descriptors, and pads their identifiers with NUL bytes where ECMA-119
// wants spaces. This sets creation and modification to t, expiration and
// effective to "not specified", pads the identifiers with spaces, and cuts
// the file to the volume size.
func fixVolumeDescriptors(f *os.File, t time.Time) error {
	date := volumeDate(t)
	unset := append(bytes.Repeat([]byte{'0'}, 16), 0)
	var volumeBlocks uint32
	buf := make([]byte, sector)
	for i := int64(16); ; i++ {
		if _, err := f.ReadAt(buf, i*sector); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("no volume descriptor set terminator")
			}
			return err
		}
		if string(buf[1:6]) != "CD001" {
			return fmt.Errorf("sector %d is not a volume descriptor", i)
		}
		switch buf[0] {
		case 1, 2: // primary, supplementary
			if buf[0] == 1 {
				volumeBlocks = binary.LittleEndian.Uint32(buf[80:84])
			}
			for _, r := range identifierFields {
				padSpaces(buf[r[0]:r[1]], buf[0] == 2)
			}
			copy(buf[813:], date)
			copy(buf[830:], date)
			copy(buf[847:], unset)
			copy(buf[864:], unset)
			if _, err := f.WriteAt(buf, i*sector); err != nil {
				return err
			}
		case 255: // terminator
			if volumeBlocks == 0 {
				return errors.New("no primary volume descriptor")
			}
			return f.Truncate(int64(volumeBlocks) * sector)
		}
	}
}

// identifierFields are the byte ranges of the text fields of a primary or
// supplementary volume descriptor: system, volume, volume set, publisher,
// data preparer and application identifiers, then the copyright, abstract
// and bibliographic file identifiers.
var identifierFields = [][2]int{{8, 40}, {40, 72}, {190, 318}, {318, 446}, {446, 574}, {574, 702}, {702, 739}, {739, 776}, {776, 813}}

// padSpaces replaces the NUL bytes after the text in b with spaces: 0x20,
// or UCS-2 big-endian 0x00 0x20 pairs in a Joliet descriptor (with a last
// odd byte left NUL).
func padSpaces(b []byte, ucs2 bool) {
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	if !ucs2 {
		for i := end; i < len(b); i++ {
			b[i] = ' '
		}
		return
	}
	end += end % 2
	for i := end; i+1 < len(b); i += 2 {
		b[i], b[i+1] = 0, ' '
	}
}

// volumeDate is the 17-byte date of a volume descriptor, in UTC.
func volumeDate(t time.Time) []byte {
	t = t.UTC()
	b := fmt.Appendf(nil, "%04d%02d%02d%02d%02d%02d%02d", t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond()/1e7)
	return append(b, 0)
}
