package render

import (
	"encoding/json"
	"fmt"

	"github.com/imgforge/imgforge/pkg/agent/metrics"
)

// Where the monitoring files live on the node. The image's units
// (images/default/imgforge-metrics.service, journal-upload.conf) point the
// services at them.
const (
	MetricsConfigPath = "/etc/imgforge/metrics/config.json"
	metricsSecretPath = "/etc/imgforge/metrics/remote-write.secret"
	metricsCAPath     = "/etc/imgforge/metrics/ca.pem"
	// imgforge-metrics.service runs as a dynamic user and loads the secret
	// as a credential (LoadCredential=remote-write.secret:...).
	metricsSecretCredential = "/run/credentials/imgforge-metrics.service/remote-write.secret"

	JournalUploadConfigPath = "/etc/systemd/journal-upload.conf.d/imgforge.conf"
	journalCertPath         = "/etc/imgforge/journal-upload/client.crt"
	journalKeyPath          = "/etc/imgforge/journal-upload/client.key"
	journalCAPath           = "/etc/imgforge/journal-upload/ca.pem"
	// The unit loads the key as a credential (LoadCredential=client.key:...),
	// so its dynamic user can read it while the file stays root's.
	journalKeyCredential = "/run/credentials/systemd-journal-upload.service/client.key"
	systemCABundle       = "/etc/ssl/certs/ca-certificates.crt"
)

type journalData struct {
	URL, KeyFile, CertFile, CAFile string
}

// MetricsCheck checks the metrics shipper's configuration with the
// shipper's own parser (pkg/agent/metrics), before it is written.
var MetricsCheck = &Validator{Name: "imgforge-agent metrics config", Check: func(b []byte) error {
	_, err := metrics.Parse(b)
	return err
}}

// AgentMetricsURL is the agent's own /metrics, on its status endpoint
// (agent.DefaultListen): its state and its use of the node's memory and
// CPU, scraped as job "agent".
const AgentMetricsURL = "http://127.0.0.1:9477/metrics"

// monitoring renders the metrics shipper's configuration (scrape the node
// exporter and the role's exporters, push to the endpoint with the
// remote-write protocol) and systemd-journal-upload's (the journal to the
// logs endpoint).
func (r *Renderer) monitoring(c *Config, in *Input) error {
	m := in.Monitoring
	if m == nil {
		return nil
	}
	if m.MetricsURL != "" || m.TracesURL != "" {
		d := metrics.Config{URL: m.MetricsURL, TracesURL: m.TracesURL, Instance: in.Self.Name}
		if m.MetricsURL != "" {
			d.Labels = map[string]string{"node": in.Self.Name, "role": in.Self.Role}
			d.Jobs = append([]metrics.Job{{Name: "node", URL: "http://127.0.0.1:9100/metrics"}, {Name: "agent", URL: AgentMetricsURL}}, r.jobs()...)
		}
		var files []File
		if len(m.CAPEM) > 0 {
			d.CAFile = metricsCAPath
			files = append(files, File{Path: metricsCAPath, Mode: 0o644, Owner: "root", Group: "root", Data: m.CAPEM})
		}
		secret := m.MetricsPassword
		if m.MetricsToken != "" {
			secret, d.Bearer = m.MetricsToken, true
		}
		if secret != "" {
			if !d.Bearer {
				d.User = m.MetricsUser
			}
			d.SecretFile = metricsSecretCredential
		}
		// Written, empty, without a secret too: the unit's LoadCredential=
		// fails the start when its file is missing (systemd 252).
		files = append(files, File{Path: metricsSecretPath, Mode: 0o600, Owner: "root", Group: "root", Data: []byte(secret), Sensitive: true})
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return err
		}
		files = append(files, File{
			Path: MetricsConfigPath, Mode: 0o644, Owner: "root", Group: "root", Data: append(b, '\n'),
			Validate: MetricsCheck,
		})
		c.Services = append(c.Services, Service{Name: "imgforge-metrics", Files: files, Then: [][]string{{"systemctl", "restart", "imgforge-metrics.service"}}})
	}
	if m.LogsURL != "" {
		d := journalData{URL: m.LogsURL, KeyFile: journalKeyCredential, CertFile: journalCertPath, CAFile: systemCABundle}
		files := []File{
			{Path: journalCertPath, Mode: 0o644, Owner: "root", Group: "root", Data: m.LogsCert.CertPEM},
			{Path: journalKeyPath, Mode: 0o600, Owner: "root", Group: "root", Data: m.LogsCert.KeyPEM, Sensitive: true},
		}
		if len(m.CAPEM) > 0 {
			d.CAFile = journalCAPath
			files = append(files, File{Path: journalCAPath, Mode: 0o644, Owner: "root", Group: "root", Data: m.CAPEM})
		}
		b, err := r.execute("common/journal-upload.conf.tmpl", d)
		if err != nil {
			return err
		}
		// systemd has no checker for journal-upload.conf; every value in
		// it was validated.
		files = append(files, File{Path: JournalUploadConfigPath, Mode: 0o644, Owner: "root", Group: "root", Data: b})
		c.Services = append(c.Services, Service{Name: "systemd-journal-upload", Files: files, Then: [][]string{reload("systemd-journal-upload.service")}})
	}
	return nil
}

// jobs are the role's exporters, from its role.json.
func (r *Renderer) jobs() []metrics.Job {
	var out []metrics.Job
	if r.Role != nil {
		for _, e := range r.Role.Exporters {
			out = append(out, metrics.Job{Name: e.Name, URL: fmt.Sprintf("http://127.0.0.1:%d%s", e.Port, e.Path)})
		}
	}
	return out
}
