package config

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"time"
)

// Discovery methods.
const (
	MethodStatic = "static"
	MethodDNS    = "dns"
	MethodGossip = "gossip"
)

// Methods lists the discovery methods.
var Methods = []string{MethodStatic, MethodDNS, MethodGossip}

// ModeOption is the role option whose value a node shares with its peers
// as its member mode (discovery's Member.Mode), for the roles that declare
// it. Templates choose among members by it (the primary function).
const ModeOption = "mode"

// Member modes: discovery carries exactly these (gossip encodes them in
// two bits). A member without a mode counts as primary.
const (
	ModePrimary = "primary"
	ModeReplica = "replica"
)

// MemberModes lists the member modes.
var MemberModes = []string{ModePrimary, ModeReplica}

// DefaultGossipPort is the gossip port (TCP and UDP) when none is given.
const DefaultGossipPort = 7946

// Config is the imgforge: section of a node's cloud-config, validated,
// with the node's identity completed from cloud-init's instance data.
type Config struct {
	Cluster string `yaml:"cluster" json:"cluster"`
	Role    string `yaml:"role" json:"role"`
	// Options are the node's role options (imgforge.options): a role's
	// boot options (its role.json's boot_options), or the image's choice of
	// a build option repeated. CompleteFromRole fills the rest.
	Options    map[string]string `yaml:"options,omitempty" json:"options,omitempty"`
	Node       Node              `yaml:"node" json:"node"`
	VIPs       []VIP             `yaml:"vips,omitempty" json:"vips,omitempty"`
	Discovery  Discovery         `yaml:"discovery" json:"discovery"`
	TLS        *TLS              `yaml:"tls,omitempty" json:"tls,omitempty"`
	Database   *Database         `yaml:"database,omitempty" json:"database,omitempty"`
	Monitoring *Monitoring       `yaml:"monitoring,omitempty" json:"monitoring,omitempty"`
	Identity   *Identity         `yaml:"identity,omitempty" json:"identity,omitempty"`

	// optionFields names where an option given in an earlier spelling was
	// written (runtime -> app.runtime, see LegacyOptionSections), for
	// messages; the others are options.NAME.
	optionFields map[string]string
}

// Node is the node's identity. Name defaults to cloud-init's
// local-hostname, ID to the low 32 bits of the address, Address (with its
// prefix) to the address of the interface holding the default route.
type Node struct {
	Name       string `yaml:"name,omitempty" json:"name"`
	ID         uint32 `yaml:"id,omitempty" json:"id"`
	Address    string `yaml:"address,omitempty" json:"address"` // 10.10.0.21/24
	InstanceID string `yaml:"-" json:"instance_id,omitempty"`   // from cloud-init, never from user-data
}

// VIP is a virtual address the nodes of a role with vips: true (lb)
// carry between them.
type VIP struct {
	Address   string `yaml:"address" json:"address"`
	Prefix    int    `yaml:"prefix" json:"prefix"`
	Interface string `yaml:"interface" json:"interface"`
}

// Discovery says how the node finds its peers: exactly the block of the
// chosen method is set.
type Discovery struct {
	Method string  `yaml:"method" json:"method"`
	Static *Static `yaml:"static,omitempty" json:"static,omitempty"`
	DNS    *DNS    `yaml:"dns,omitempty" json:"dns,omitempty"`
	Gossip *Gossip `yaml:"gossip,omitempty" json:"gossip,omitempty"`
}

// Static is a fixed list of members.
type Static struct {
	Members []StaticMember `yaml:"members" json:"members"`
}

// StaticMember is one member of a static list.
type StaticMember struct {
	Name    string `yaml:"name" json:"name"`
	Role    string `yaml:"role" json:"role"`
	Address string `yaml:"address" json:"address"`     // an IP address, no prefix
	Mode    string `yaml:"mode,omitempty" json:"mode"` // its member mode, for a role with a mode option
}

// DNS finds members by polling DNS records.
type DNS struct {
	Resolver string      `yaml:"resolver,omitempty" json:"resolver,omitempty"` // host:port; default from /etc/resolv.conf
	Interval string      `yaml:"interval,omitempty" json:"interval,omitempty"` // poll interval, default 5s
	Records  []DNSRecord `yaml:"records" json:"records"`
}

// DNSRecord names the members of a role: Name for A and AAAA records, or
// SRV for an SRV record whose targets are resolved in turn.
type DNSRecord struct {
	Role string `yaml:"role" json:"role"`
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	SRV  string `yaml:"srv,omitempty" json:"srv,omitempty"`
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"` // the members' mode, for a role with a mode option
}

// Gossip finds members with an encrypted memberlist cluster.
type Gossip struct {
	Port int      `yaml:"port,omitempty" json:"port"`
	Join []string `yaml:"join,omitempty" json:"join"` // IP or IP:port (IPv6 as [addr]:port)
	Key  string   `yaml:"key" json:"-"`               // base64 of 32 bytes (AES-256-GCM)
	// Profile is the memberlist tuning, one of GossipProfiles; "" is lan.
	Profile string `yaml:"profile,omitempty" json:"profile,omitempty"`
}

// GossipProfiles are the gossip profiles package discovery has (its test
// checks the two lists agree; config does not import memberlist).
var GossipProfiles = []string{"lan", "large"}

// TLS is the certificate of a role that renders it (web): a PEM certificate chain and key, or
// SelfSigned (written `tls: self-signed`), a pair made on first boot.
type TLS struct {
	Cert       string `yaml:"cert,omitempty" json:"-"`
	Key        string `yaml:"key,omitempty" json:"-"`
	SelfSigned bool   `yaml:"self_signed,omitempty" json:"self_signed"`
}

// Database holds the shared database accounts: the application's
// (credential database) and the replication account (credential
// replication), for the roles whose role.json lists them.
type Database struct {
	User                string `yaml:"user,omitempty" json:"user"`
	Password            string `yaml:"password,omitempty" json:"-"`
	ReplicationUser     string `yaml:"replication_user,omitempty" json:"replication_user,omitempty"`
	ReplicationPassword string `yaml:"replication_password,omitempty" json:"-"`
}

// Monitoring is where every node pushes its metrics and logs. Metrics go
// to a Prometheus remote_write endpoint with basic auth or a bearer token;
// logs go to a systemd-journal-remote endpoint, which authenticates the
// node by a client certificate (LogsCert, LogsKey): systemd-journal-upload
// has no other way.
type Monitoring struct {
	MetricsURL  string `yaml:"metrics_url,omitempty" json:"metrics_url,omitempty"` // the remote-write endpoint (pkg/agent/metrics)
	LogsURL     string `yaml:"logs_url,omitempty" json:"logs_url,omitempty"`       // systemd-journal-remote
	TracesURL   string `yaml:"traces_url,omitempty" json:"traces_url,omitempty"`   // OTLP/HTTP traces (POST), same credentials as metrics_url
	LogsCert    string `yaml:"logs_cert,omitempty" json:"-"`                       // PEM client certificate (chain)
	LogsKey     string `yaml:"logs_key,omitempty" json:"-"`                        // its PEM private key
	Username    string `yaml:"username,omitempty" json:"username,omitempty"`
	Password    string `yaml:"password,omitempty" json:"-"`
	BearerToken string `yaml:"bearer_token,omitempty" json:"-"`
	CA          string `yaml:"ca,omitempty" json:"-"` // PEM certificates to trust
}

// Identity is the node's certificate from the cluster CA, its private
// key, and the CA's certificate (imgforge seed makes them; see package
// identity). Gossip members sign their metadata with the key and take
// only members whose certificates the CA issued for the name and role
// they claim. Required with gossip discovery.
type Identity struct {
	CA   string `yaml:"ca" json:"-"`   // PEM: the cluster CA's certificate
	Cert string `yaml:"cert" json:"-"` // PEM: this node's certificate
	Key  string `yaml:"key" json:"-"`  // PEM PKCS #8: this node's Ed25519 key (secret)
}

// MarshalJSON shows what the certificate says (never the key): its
// subject, issuer and end.
func (i Identity) MarshalJSON() ([]byte, error) {
	out := struct {
		Subject  string    `json:"subject,omitempty"`
		Issuer   string    `json:"issuer,omitempty"`
		NotAfter time.Time `json:"not_after,omitzero"`
	}{}
	if b, _ := pem.Decode([]byte(i.Cert)); b != nil {
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out.Subject, out.Issuer, out.NotAfter = c.Subject.String(), c.Issuer.String(), c.NotAfter
		}
	}
	return json.Marshal(out)
}
