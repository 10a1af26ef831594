package config

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"net/netip"
	"net/textproto"
	"strings"

	"github.com/imgforge/imgforge/pkg/names"
	"github.com/imgforge/imgforge/pkg/spec"
)

// Where cloud-init keeps what the datasource gave, whatever the datasource
// (NoCloud, ConfigDrive, EC2, ...).
const (
	// UserDataPath is the user-data as the datasource gave it (cloud-init's "userdata_raw").
	UserDataPath = "/var/lib/cloud/instance/user-data.txt"
	// InstanceDataPath is cloud-init's instance data (world-readable, sensitive keys redacted).
	InstanceDataPath = "/run/cloud-init/instance-data.json"
)

// maxUserData bounds user-data as stored, and everything decoded from it
// (gunzipped or base64-decoded), in all, across every MIME part and
// level of nesting (cloud-init itself refuses user-data over 16 KiB on
// some clouds; 1 MiB is ample).
const maxUserData = 1 << 20

// maxParts bounds the MIME parts of user-data, in all levels of nesting.
const maxParts = 100

// budget is what user-data may still decode to: bytes and MIME parts.
// Each limit is on the total, not per part: 400 small gzip parts of
// 1 MiB each must not make the agent hold 400 MiB.
type budget struct {
	bytes, parts int
}

func newBudget() *budget { return &budget{bytes: maxUserData, parts: maxParts} }

// spend takes n decoded bytes from the budget.
func (b *budget) spend(n int) error {
	if n > b.bytes {
		return fmt.Errorf("user-data decodes (gzip, base64) to more than %d bytes in all, the limit on the total across every MIME part", maxUserData)
	}
	b.bytes -= n
	return nil
}

// part takes one MIME part from the budget.
func (b *budget) part() error {
	if b.parts == 0 {
		return fmt.Errorf("user-data has more than %d MIME parts in all, the limit", maxParts)
	}
	b.parts--
	return nil
}

// Part is one cloud-config document found in user-data.
type Part struct {
	Name string // "user-data", or the MIME part's file name or index
	Data []byte
}

// CloudConfigs returns the cloud-config documents in user-data: the whole
// of it when it starts with "#cloud-config", or each text/cloud-config
// part (or part starting with "#cloud-config") of a multipart MIME
// message, after undoing gzip compression as cloud-init does. Other
// content (scripts, #include, boothooks) is skipped.
//
// What user-data decodes to is bounded in all (maxUserData bytes
// gunzipped or base64-decoded, maxParts MIME parts, across every part and
// level of nesting); an error names the limit.
func CloudConfigs(data []byte) ([]Part, error) {
	b := newBudget()
	data, err := b.gunzip(data)
	if err != nil {
		return nil, err
	}
	return cloudConfigs("user-data", data, 0, b)
}

// gunzip undoes gzip compression, if data has it, within the budget.
func (b *budget) gunzip(data []byte) ([]byte, error) {
	if len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
		return data, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("user-data looks gzip-compressed but is not: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(b.bytes)+1))
	if err != nil {
		return nil, fmt.Errorf("decompressing user-data: %w", err)
	}
	if err := b.spend(len(out)); err != nil {
		return nil, err
	}
	return out, nil
}

func isCloudConfig(data []byte) bool {
	first, _, _ := bytes.Cut(data, []byte("\n"))
	return strings.TrimRight(string(first), " \t\r") == "#cloud-config"
}

func cloudConfigs(name string, data []byte, depth int, b *budget) ([]Part, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if isCloudConfig(data) {
		return []Part{{Name: name, Data: data}}, nil
	}
	if depth > 4 || !looksMIME(data) {
		return nil, nil
	}
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		return nil, fmt.Errorf("%s: reading the MIME message: %s", name, mimeError(err))
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("%s: bad Content-Type: %w", name, err)
	}
	if !strings.HasPrefix(mt, "multipart/") {
		body, err := io.ReadAll(io.LimitReader(msg.Body, maxUserData))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if mt == "text/cloud-config" || isCloudConfig(body) {
			return []Part{{Name: name, Data: body}}, nil
		}
		return nil, nil
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var out []Part
	for i := 1; ; i++ {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: reading MIME part %d: %s", name, i, mimeError(err))
		}
		if err := b.part(); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		body, err := io.ReadAll(io.LimitReader(p, maxUserData))
		if err != nil {
			return nil, fmt.Errorf("%s: reading MIME part %d: %w", name, i, err)
		}
		if strings.EqualFold(p.Header.Get("Content-Transfer-Encoding"), "base64") {
			body, err = decodeBase64Lines(body)
			if err != nil {
				return nil, fmt.Errorf("%s: MIME part %d: %w", name, i, err)
			}
			if err := b.spend(len(body)); err != nil {
				return nil, fmt.Errorf("%s: MIME part %d: %w", name, i, err)
			}
		}
		if body, err = b.gunzip(body); err != nil {
			return nil, fmt.Errorf("%s: MIME part %d: %w", name, i, err)
		}
		pname := fmt.Sprintf("%s (part %d", name, i)
		if fn := p.FileName(); fn != "" {
			pname += " " + fn
		}
		pname += ")"
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch {
		case pt == "text/cloud-config" || isCloudConfig(body):
			out = append(out, Part{Name: pname, Data: body})
		case strings.HasPrefix(pt, "multipart/"):
			sub := append([]byte("Content-Type: "+p.Header.Get("Content-Type")+"\r\n\r\n"), body...)
			more, err := cloudConfigs(pname, sub, depth+1, b)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
		}
	}
}

// mimeError describes an error of the MIME readers without the line of
// user-data it may quote (net/mail, textproto and multipart quote a
// malformed line, which may hold a secret): only messages known to
// quote nothing pass.
func mimeError(err error) string {
	var pe textproto.ProtocolError
	msg := err.Error()
	switch {
	case errors.As(err, &pe), strings.Contains(msg, "malformed"):
		return "a malformed MIME header line (not shown)"
	case strings.Contains(msg, "got line"):
		return "a line that is not where a MIME part should begin (not shown)"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the message ends early"
	case strings.HasPrefix(msg, "multipart: ") && !strings.ContainsAny(msg, "\"'`"):
		return msg
	}
	return "a malformed MIME message (not shown)"
}

func looksMIME(data []byte) bool {
	head := strings.ToLower(string(data[:min(len(data), 4096)]))
	return strings.HasPrefix(head, "content-type:") || strings.HasPrefix(head, "mime-version:") || strings.Contains(head, "\ncontent-type: multipart/")
}

func decodeBase64Lines(b []byte) ([]byte, error) {
	s := strings.Join(strings.Fields(string(b)), "")
	out := make([]byte, len(s))
	n, err := base64Decode(out, s)
	if err != nil {
		return nil, fmt.Errorf("bad base64 body: %w", err)
	}
	return out[:n], nil
}

// InstanceData is what the agent takes from cloud-init's instance data.
type InstanceData struct {
	InstanceID    string
	LocalHostname string
}

// ParseInstanceData reads /run/cloud-init/instance-data.json: v1.instance_id
// and v1.local_hostname (cloud-init 22.4 writes both the underscore and
// the older hyphenated keys).
func ParseInstanceData(data []byte) (InstanceData, error) {
	var doc struct {
		V1 map[string]json.RawMessage `json:"v1"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return InstanceData{}, fmt.Errorf("instance data is not JSON: %w", err)
	}
	if doc.V1 == nil {
		return InstanceData{}, errors.New("instance data has no v1 section")
	}
	get := func(keys ...string) string {
		for _, k := range keys {
			var s string
			if raw, ok := doc.V1[k]; ok && json.Unmarshal(raw, &s) == nil && s != "" {
				return s
			}
		}
		return ""
	}
	id := InstanceData{InstanceID: get("instance_id", "instance-id"), LocalHostname: get("local_hostname", "local-hostname")}
	if id.InstanceID == "" {
		return id, errors.New("instance data has no v1.instance_id")
	}
	return id, nil
}

// Host is what Load reads from the machine; tests give their own.
type Host struct {
	ReadFile  func(path string) ([]byte, error)
	Addresses func() ([]netip.Prefix, error) // global unicast addresses with their prefixes, preferred first
}

// Paths are the files Load reads.
type Paths struct {
	UserData     string
	InstanceData string
}

// DefaultPaths are cloud-init's.
var DefaultPaths = Paths{UserData: UserDataPath, InstanceData: InstanceDataPath}

// Load reads the user-data and instance data that cloud-init stored,
// finds the cloud-config holding the imgforge: section, validates it and
// completes the node's identity. Every error is one line naming the file
// and field.
func Load(paths Paths, h Host) (*Config, error) {
	raw, err := h.ReadFile(paths.UserData)
	if err != nil {
		return nil, fmt.Errorf("reading user-data: %w", err)
	}
	if len(raw) > maxUserData {
		return nil, fmt.Errorf("%s: larger than %d bytes", paths.UserData, maxUserData)
	}
	parts, err := CloudConfigs(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", paths.UserData, err)
	}
	var found *Config
	var src spec.Source
	foundIn := ""
	for _, p := range parts {
		file := paths.UserData
		if p.Name != "user-data" {
			file += " " + strings.TrimPrefix(p.Name, "user-data ")
		}
		c, s, err := Parse(file, p.Data)
		if errors.Is(err, ErrNoSection) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if found != nil {
			return nil, fmt.Errorf("%s: a second imgforge: section (the first is in %s); accepted: one", file, foundIn)
		}
		found, src, foundIn = c, s, file
	}
	if found == nil {
		return nil, fmt.Errorf("%s: %w in any cloud-config part; see docs/agent.md", paths.UserData, ErrNoSection)
	}
	idData, err := h.ReadFile(paths.InstanceData)
	if err != nil {
		return nil, fmt.Errorf("reading cloud-init instance data: %w", err)
	}
	id, err := ParseInstanceData(idData)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", paths.InstanceData, err)
	}
	var addrs []netip.Prefix
	if found.Node.Address == "" {
		if addrs, err = h.Addresses(); err != nil {
			return nil, fmt.Errorf("listing the node's addresses: %w", err)
		}
	}
	if err := found.Complete(src, id, addrs); err != nil {
		return nil, err
	}
	return found, nil
}

// Complete fills what user-data left out of the node's identity: the name
// from cloud-init's local-hostname, the address from addrs (the first),
// the id from the address; then checks the VIPs against the address.
func (c *Config) Complete(src spec.Source, id InstanceData, addrs []netip.Prefix) error {
	c.Node.InstanceID = id.InstanceID
	if c.Node.Name == "" {
		name := strings.ToLower(strings.SplitN(id.LocalHostname, ".", 2)[0])
		if !names.Node(name) {
			return src.Errorf(Section+".node.name", "is not set and cloud-init's local-hostname %q is not a node name; accepted: %s", id.LocalHostname, acceptNodeName)
		}
		c.Node.Name = name
	}
	if c.Node.Address == "" {
		if len(addrs) == 0 {
			return src.Errorf(Section+".node.address", "is not set and the node has no global address yet; accepted: an address such as 10.10.0.21/24")
		}
		c.Node.Address = addrs[0].String()
	}
	p, err := ParseNodeAddress(c.Node.Address)
	if err != nil {
		return src.Errorf(Section+".node.address", "%v", err)
	}
	if c.Node.ID == 0 {
		c.Node.ID = AddressID(p.Addr())
		if c.Node.ID == 0 {
			return src.Errorf(Section+".node.id", "is not set and cannot be derived from %s; accepted: 1 to 4294967295", p.Addr())
		}
	}
	if err := c.validateIdentity(src); err != nil { // the name is known now
		return err
	}
	return c.checkVIPSubnet(src)
}

// AddressID is the default node id: the last 32 bits of the address.
func AddressID(a netip.Addr) uint32 {
	b := a.As16()
	return binary.BigEndian.Uint32(b[12:])
}

func base64Decode(dst []byte, s string) (int, error) {
	return base64.StdEncoding.Decode(dst, []byte(s))
}

// HostAddresses lists the machine's global unicast addresses with their
// prefixes, IPv4 first, in interface order: the default for Host.Addresses.
func HostAddresses() ([]netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var v4, v6 []netip.Prefix
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok || !ip.IsGlobalUnicast() {
				continue
			}
			ones, _ := ipn.Mask.Size()
			p := netip.PrefixFrom(ip.Unmap(), ones)
			if p.Addr().Is4() {
				v4 = append(v4, p)
			} else {
				v6 = append(v6, p)
			}
		}
	}
	return append(v4, v6...), nil
}
