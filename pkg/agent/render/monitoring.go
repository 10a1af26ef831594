package render

import "fmt"

// Where the monitoring files live on the node. The image's drop-ins
// (images/default/prometheus-agent.conf, journal-upload.conf) point the
// services at them.
const (
	PrometheusConfigPath = "/etc/prometheus/imgforge/agent.yml"
	prometheusSecretPath = "/etc/prometheus/imgforge/remote-write.secret"
	prometheusCAPath     = "/etc/prometheus/imgforge/ca.pem"

	JournalUploadConfigPath = "/etc/systemd/journal-upload.conf.d/imgforge.conf"
	journalCertPath         = "/etc/imgforge/journal-upload/client.crt"
	journalKeyPath          = "/etc/imgforge/journal-upload/client.key"
	journalCAPath           = "/etc/imgforge/journal-upload/ca.pem"
	// The unit loads the key as a credential (LoadCredential=client.key:...),
	// so its dynamic user can read it while the file stays root's.
	journalKeyCredential = "/run/credentials/systemd-journal-upload.service/client.key"
	systemCABundle       = "/etc/ssl/certs/ca-certificates.crt"
)

type scrapeJob struct {
	Name, Target, Path string
}

type promData struct {
	Self, Role, URL string
	Jobs            []scrapeJob
	User            string
	SecretFile      string // password (with User) or bearer token
	Bearer          bool
	CAFile          string // empty: the system's bundle
}

type journalData struct {
	URL, KeyFile, CertFile, CAFile string
}

// monitoring renders the Prometheus agent's configuration (scrape the
// node exporter and the role's exporter, remote_write to the endpoint) and
// systemd-journal-upload's (the journal to the logs endpoint).
func (r *Renderer) monitoring(c *Config, in *Input) error {
	m := in.Monitoring
	if m == nil {
		return nil
	}
	if m.MetricsURL != "" {
		d := promData{
			Self: in.Self.Name, Role: in.Self.Role, URL: m.MetricsURL,
			Jobs: append([]scrapeJob{{Name: "node", Target: "127.0.0.1:9100", Path: "/metrics"}}, r.jobs()...),
		}
		var files []File
		if len(m.CAPEM) > 0 {
			d.CAFile = prometheusCAPath
			files = append(files, File{Path: prometheusCAPath, Mode: 0o644, Owner: "root", Group: "root", Data: m.CAPEM})
		}
		secret := m.MetricsPassword
		if m.MetricsToken != "" {
			secret, d.Bearer = m.MetricsToken, true
		}
		if secret != "" {
			d.User, d.SecretFile = m.MetricsUser, prometheusSecretPath
			files = append(files, File{Path: prometheusSecretPath, Mode: 0o640, Owner: "root", Group: "prometheus", Data: []byte(secret), Sensitive: true})
		}
		b, err := r.execute("common/prometheus-agent.yml.tmpl", d)
		if err != nil {
			return err
		}
		files = append(files, File{
			Path: PrometheusConfigPath, Mode: 0o644, Owner: "root", Group: "root", Data: b,
			Validate: PrometheusAgentCheck, // the image has no promtool
		})
		c.Services = append(c.Services, Service{Name: "prometheus", Files: files, Then: [][]string{reload("prometheus.service")}})
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
func (r *Renderer) jobs() []scrapeJob {
	var out []scrapeJob
	if r.Role != nil {
		for _, e := range r.Role.Exporters {
			out = append(out, scrapeJob{Name: e.Name, Target: fmt.Sprintf("127.0.0.1:%d", e.Port), Path: e.Path})
		}
	}
	return out
}
