package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// PrometheusAgentCheck checks the Prometheus agent configuration rendered
// from common/prometheus-agent.yml.tmpl, in the agent itself.
//
// It stands in for `promtool check config`: promtool is 45 MB, and was in
// every image only to check this one file, while the prometheus binary
// has no check-only mode (it would start scraping and writing). Linking
// Prometheus's own config package into the agent would pull in most of
// Prometheus and its service discovery, so this is a strict check of the
// subset of the configuration format the template uses, with the rules
// Prometheus applies to it (prometheus/config, v2.42 as in Debian 12):
// every field must be one this check knows (a misspelt or misplaced key is
// refused, as Prometheus refuses it), durations parse as Prometheus
// durations, a scrape timeout is not longer than its interval, job names
// are present and unique, label names are valid, relabel rules have a
// known action and a compiling regex, targets are host:port, remote_write
// URLs are absolute http(s) URLs, and the authentication settings are not
// contradictory. What it cannot know is what Prometheus would do with a
// field outside that subset: a template that needs one adds it here.
var PrometheusAgentCheck = &Validator{Name: "imgforge-agent's Prometheus agent check", Check: checkPrometheusAgent}

// A Validator checks a candidate file's bytes in the agent itself, where
// the image carries no checker program for it.
type Validator struct {
	Name  string // what checks, for errors and goldens
	Check func(data []byte) error
}

type promDuration string

type promConfig struct {
	Global struct {
		ScrapeInterval     promDuration      `yaml:"scrape_interval"`
		ScrapeTimeout      promDuration      `yaml:"scrape_timeout"`
		EvaluationInterval promDuration      `yaml:"evaluation_interval"`
		ExternalLabels     map[string]string `yaml:"external_labels"`
	} `yaml:"global"`
	ScrapeConfigs []promScrape      `yaml:"scrape_configs"`
	RemoteWrite   []promRemoteWrite `yaml:"remote_write"`
}

type promScrape struct {
	JobName        string         `yaml:"job_name"`
	ScrapeInterval promDuration   `yaml:"scrape_interval"`
	ScrapeTimeout  promDuration   `yaml:"scrape_timeout"`
	MetricsPath    string         `yaml:"metrics_path"`
	Scheme         string         `yaml:"scheme"`
	HonorLabels    bool           `yaml:"honor_labels"`
	StaticConfigs  []promStatic   `yaml:"static_configs"`
	RelabelConfigs []promRelabel  `yaml:"relabel_configs"`
	MetricRelabel  []promRelabel  `yaml:"metric_relabel_configs"`
	BasicAuth      *promBasicAuth `yaml:"basic_auth"`
	Authorization  *promAuthz     `yaml:"authorization"`
	TLSConfig      *promTLS       `yaml:"tls_config"`
}

type promStatic struct {
	Targets []string          `yaml:"targets"`
	Labels  map[string]string `yaml:"labels"`
}

type promRelabel struct {
	SourceLabels []string `yaml:"source_labels,flow"`
	Separator    *string  `yaml:"separator"`
	Regex        *string  `yaml:"regex"`
	Modulus      uint64   `yaml:"modulus"`
	TargetLabel  string   `yaml:"target_label"`
	Replacement  *string  `yaml:"replacement"`
	Action       string   `yaml:"action"`
}

type promRemoteWrite struct {
	URL           string         `yaml:"url"`
	Name          string         `yaml:"name"`
	RemoteTimeout promDuration   `yaml:"remote_timeout"`
	BasicAuth     *promBasicAuth `yaml:"basic_auth"`
	Authorization *promAuthz     `yaml:"authorization"`
	TLSConfig     *promTLS       `yaml:"tls_config"`
	WriteRelabel  []promRelabel  `yaml:"write_relabel_configs"`
}

type promBasicAuth struct {
	Username     string `yaml:"username"`
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
}

type promAuthz struct {
	Type            string `yaml:"type"`
	Credentials     string `yaml:"credentials"`
	CredentialsFile string `yaml:"credentials_file"`
}

type promTLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

var (
	// Prometheus's duration (model.ParseDuration): units from largest to
	// smallest, each at most once.
	promDurationRe = regexp.MustCompile(`^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$`)
	promLabelRe    = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
	promActions    = map[string]bool{"replace": true, "keep": true, "drop": true, "keepequal": true, "dropequal": true,
		"hashmod": true, "labelmap": true, "labeldrop": true, "labelkeep": true, "lowercase": true, "uppercase": true}
)

func (d promDuration) parse(field string) (time.Duration, error) {
	if d == "" || d == "0" {
		return 0, nil
	}
	m := promDurationRe.FindStringSubmatch(string(d))
	if m == nil {
		return 0, fmt.Errorf("%s: %q is not a duration (e.g. 30s, 1m, 1h30m)", field, string(d))
	}
	units := []time.Duration{365 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second, time.Millisecond}
	var total time.Duration
	for i, u := range units {
		if s := m[2*i+2]; s != "" {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %q is out of range", field, string(d))
			}
			total += time.Duration(n) * u
		}
	}
	return total, nil
}

// checkPrometheusAgent is PrometheusAgentCheck's check. Its errors are one
// line and name the field.
func checkPrometheusAgent(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c promConfig
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("the file is empty")
		}
		return oneLine(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	interval, err := c.Global.ScrapeInterval.parse("global.scrape_interval")
	if err != nil {
		return err
	}
	if interval == 0 {
		interval = time.Minute // Prometheus's default
	}
	timeout, err := c.Global.ScrapeTimeout.parse("global.scrape_timeout")
	if err != nil {
		return err
	}
	if timeout == 0 {
		timeout = min(10*time.Second, interval)
	}
	if timeout > interval {
		return fmt.Errorf("global.scrape_timeout: %s is longer than global.scrape_interval %s", c.Global.ScrapeTimeout, c.Global.ScrapeInterval)
	}
	if _, err := c.Global.EvaluationInterval.parse("global.evaluation_interval"); err != nil {
		return err
	}
	if err := checkLabels("global.external_labels", c.Global.ExternalLabels); err != nil {
		return err
	}
	jobs := map[string]bool{}
	for i, s := range c.ScrapeConfigs {
		at := fmt.Sprintf("scrape_configs[%d]", i)
		if s.JobName == "" {
			return fmt.Errorf("%s.job_name: missing", at)
		}
		if jobs[s.JobName] {
			return fmt.Errorf("%s.job_name: %q is used twice", at, s.JobName)
		}
		jobs[s.JobName] = true
		iv, err := s.ScrapeInterval.parse(at + ".scrape_interval")
		if err != nil {
			return err
		}
		if iv == 0 {
			iv = interval
		}
		to, err := s.ScrapeTimeout.parse(at + ".scrape_timeout")
		if err != nil {
			return err
		}
		if to == 0 {
			to = min(timeout, iv)
		}
		if to > iv {
			return fmt.Errorf("%s.scrape_timeout: longer than the scrape interval", at)
		}
		if s.MetricsPath != "" && !strings.HasPrefix(s.MetricsPath, "/") {
			return fmt.Errorf("%s.metrics_path: %q does not start with /", at, s.MetricsPath)
		}
		if s.Scheme != "" && s.Scheme != "http" && s.Scheme != "https" {
			return fmt.Errorf("%s.scheme: %q; accepted: http, https", at, s.Scheme)
		}
		for j, sc := range s.StaticConfigs {
			for k, t := range sc.Targets {
				if err := checkTarget(t); err != nil {
					return fmt.Errorf("%s.static_configs[%d].targets[%d]: %w", at, j, k, err)
				}
			}
			if err := checkLabels(fmt.Sprintf("%s.static_configs[%d].labels", at, j), sc.Labels); err != nil {
				return err
			}
		}
		if err := checkRelabels(at+".relabel_configs", s.RelabelConfigs); err != nil {
			return err
		}
		if err := checkRelabels(at+".metric_relabel_configs", s.MetricRelabel); err != nil {
			return err
		}
		if err := checkAuth(at, s.BasicAuth, s.Authorization); err != nil {
			return err
		}
	}
	for i, w := range c.RemoteWrite {
		at := fmt.Sprintf("remote_write[%d]", i)
		u, err := url.Parse(w.URL)
		if w.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s.url: %q is not an absolute http or https URL", at, w.URL)
		}
		if _, err := w.RemoteTimeout.parse(at + ".remote_timeout"); err != nil {
			return err
		}
		if err := checkAuth(at, w.BasicAuth, w.Authorization); err != nil {
			return err
		}
		if err := checkRelabels(at+".write_relabel_configs", w.WriteRelabel); err != nil {
			return err
		}
	}
	return nil
}

func checkLabels(field string, labels map[string]string) error {
	for name := range labels {
		if !promLabelRe.MatchString(name) {
			return fmt.Errorf("%s: %q is not a valid label name", field, name)
		}
	}
	return nil
}

func checkTarget(t string) error {
	host, port, err := net.SplitHostPort(t)
	if err != nil {
		return fmt.Errorf("%q is not host:port", t)
	}
	if n, err := strconv.ParseUint(port, 10, 16); host == "" || err != nil || n == 0 {
		return fmt.Errorf("%q is not host:port", t)
	}
	return nil
}

func checkRelabels(field string, rs []promRelabel) error {
	for i, r := range rs {
		at := fmt.Sprintf("%s[%d]", field, i)
		action := strings.ToLower(r.Action)
		if action == "" {
			action = "replace"
		}
		if !promActions[action] {
			return fmt.Errorf("%s.action: unknown action %q", at, r.Action)
		}
		if r.Regex != nil {
			if _, err := regexp.Compile("^(?:" + *r.Regex + ")$"); err != nil {
				return fmt.Errorf("%s.regex: %w", at, err)
			}
		}
		needsTarget := action == "replace" || action == "hashmod" || action == "lowercase" || action == "uppercase" || action == "keepequal" || action == "dropequal"
		if needsTarget && r.TargetLabel == "" {
			return fmt.Errorf("%s.target_label: missing; the %s action needs it", at, action)
		}
		if action != "replace" && r.TargetLabel != "" && !promLabelRe.MatchString(r.TargetLabel) {
			return fmt.Errorf("%s.target_label: %q is not a valid label name", at, r.TargetLabel)
		}
		if action == "hashmod" && r.Modulus == 0 {
			return fmt.Errorf("%s.modulus: missing; the hashmod action needs it", at)
		}
	}
	return nil
}

func checkAuth(at string, b *promBasicAuth, a *promAuthz) error {
	if b != nil && a != nil {
		return fmt.Errorf("%s: basic_auth and authorization are both set; use one", at)
	}
	if b != nil {
		if b.Username == "" {
			return fmt.Errorf("%s.basic_auth.username: missing", at)
		}
		if b.Password != "" && b.PasswordFile != "" {
			return fmt.Errorf("%s.basic_auth: password and password_file are both set", at)
		}
	}
	if a != nil {
		if strings.EqualFold(a.Type, "basic") {
			return fmt.Errorf("%s.authorization.type: Basic is set with basic_auth", at)
		}
		if a.Credentials != "" && a.CredentialsFile != "" {
			return fmt.Errorf("%s.authorization: credentials and credentials_file are both set", at)
		}
	}
	return nil
}

// oneLine joins the lines of a YAML error ("yaml: unmarshal errors:\n
// line 3: ...").
func oneLine(err error) error {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	msg := strings.Join(lines, " ")
	msg = strings.Replace(msg, "yaml: unmarshal errors: ", "", 1)
	msg = strings.ReplaceAll(msg, " in type render.promConfig", "")
	for _, t := range []string{"promScrape", "promStatic", "promRelabel", "promRemoteWrite", "promBasicAuth", "promAuthz", "promTLS"} {
		msg = strings.ReplaceAll(msg, " in type render."+t, "")
	}
	return errors.New(msg)
}
