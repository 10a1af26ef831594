// Package metrics ships a node's metrics to the monitoring endpoint given at
// boot: it scrapes the node's exporters (the node exporter and the role's,
// all on loopback) in the Prometheus text format and pushes the samples
// with the Prometheus remote-write protocol (1.0: a snappy-compressed
// protobuf WriteRequest), as Prometheus in agent mode did before it.
//
// It owns the scrape loop, the encoding and a short buffer for when the
// endpoint is down. It does not own its configuration, which the agent
// renders (pkg/agent/render) from the node's boot data and which Load
// validates, nor the credentials it reads: the unit hands it its secret as
// a systemd credential.
//
// Prometheus itself was dropped because the one in Debian 12 (2.42) reads
// the tail of its write-ahead log every 10 ms for remote_write: a sixth of
// a core per node under emulation, for two scrapes a minute (see
// docs/performance.md).
package metrics

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
)

// Config is what the shipper reads (JSON, rendered by the agent).
type Config struct {
	// URL is the remote-write endpoint (https, or http on loopback); empty
	// when the node ships only traces.
	URL string `json:"url,omitempty"`
	// TracesURL is the OTLP/HTTP traces endpoint (https, or http on
	// loopback), for example https://collector.example:4318/v1/traces:
	// the relay (Relay) takes the node's spans on TracesListen and sends
	// them there, with the same credentials and CA.
	TracesURL string `json:"traces_url,omitempty"`
	// TracesListen is the relay's address: loopback only; default
	// 127.0.0.1:4318 (OTLP/HTTP's port).
	TracesListen string `json:"traces_listen,omitempty"`
	// Labels are added to every sample that lacks them (Prometheus's
	// external_labels): the node and its role.
	Labels map[string]string `json:"labels,omitempty"`
	// Instance is the instance label of every target (they are all on
	// 127.0.0.1, which says nothing).
	Instance string `json:"instance"`
	Jobs     []Job  `json:"jobs,omitempty"`
	// User with SecretFile is basic authentication; SecretFile alone with
	// Bearer is a bearer token. The file is read at each start.
	User       string `json:"user,omitempty"`
	SecretFile string `json:"secret_file,omitempty"`
	Bearer     bool   `json:"bearer,omitempty"`
	// CAFile is the endpoint's CA (PEM); empty means the system's.
	CAFile string `json:"ca_file,omitempty"`
	// IntervalSeconds between scrapes (default 30); a scrape is given at
	// most half of it, a push a third.
	IntervalSeconds int `json:"interval_seconds,omitempty"`
}

// Job is one exporter on the node.
type Job struct {
	Name string `json:"name"`
	// URL of the exporter: http on a loopback address.
	URL string `json:"url"`
}

const defaultInterval = 30

// DefaultTracesListen is where the traces relay listens without
// traces_listen: OTLP/HTTP's port, on loopback.
const DefaultTracesListen = "127.0.0.1:4318"

var labelName = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Validate checks every field; the error names the field.
func (c *Config) Validate() error {
	if c.URL == "" && c.TracesURL == "" {
		return errors.New("url: empty, and so is traces_url; accepted: either or both")
	}
	for _, f := range []struct{ name, v string }{{"url", c.URL}, {"traces_url", c.TracesURL}} {
		if f.v == "" {
			continue
		}
		if err := endpoint(f.v); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if c.TracesListen != "" {
		host, port, err := net.SplitHostPort(c.TracesListen)
		if err != nil || !loopback(host) || port == "" {
			return fmt.Errorf("traces_listen: %q is not HOST:PORT on a loopback address", c.TracesListen)
		}
	}
	if c.URL == "" {
		if len(c.Jobs) > 0 {
			return errors.New("jobs: given without url")
		}
		return c.validateAuth()
	}
	for k, v := range c.Labels {
		if !labelName.MatchString(k) || strings.HasPrefix(k, "__") {
			return fmt.Errorf("labels: %q is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)", k)
		}
		if v == "" {
			return fmt.Errorf("labels: %s is empty", k)
		}
	}
	if c.Instance == "" {
		return errors.New("instance: empty")
	}
	if len(c.Jobs) == 0 {
		return errors.New("jobs: none")
	}
	seen := map[string]bool{}
	for i, j := range c.Jobs {
		if j.Name == "" || seen[j.Name] {
			return fmt.Errorf("jobs[%d].name: %q is empty or given twice", i, j.Name)
		}
		seen[j.Name] = true
		u, err := url.Parse(j.URL)
		if err != nil || u.Scheme != "http" || !loopback(u.Hostname()) {
			return fmt.Errorf("jobs[%d].url: %q is not an http URL on loopback", i, j.URL)
		}
	}
	if c.IntervalSeconds < 0 || c.IntervalSeconds > 3600 {
		return fmt.Errorf("interval_seconds: %d is not 0 (the default, 30) to 3600", c.IntervalSeconds)
	}
	return c.validateAuth()
}

// endpoint checks a URL to push to. The URL is not shown in errors: its
// query may hold a token.
func endpoint(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return errors.New("not accepted; accepted: an https URL (http only on loopback)")
	case u.Scheme == "http" && !loopback(u.Hostname()):
		return errors.New("plain http is accepted only on loopback; use https")
	case u.User != nil:
		return errors.New("holds credentials; give them as user and secret_file")
	}
	return nil
}

func (c *Config) validateAuth() error {
	if c.Bearer && c.SecretFile == "" {
		return errors.New("bearer: set without secret_file")
	}
	if c.User != "" && c.SecretFile == "" {
		return errors.New("user: set without secret_file")
	}
	return nil
}

func loopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

// redact is a URL for a log line: no credentials, no query.
func redact(u *url.URL) string {
	c := *u
	c.User, c.RawQuery = nil, ""
	return c.String()
}

// Parse reads and validates a configuration.
func Parse(b []byte) (*Config, error) {
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	// One JSON object and nothing after it: a file with more was not
	// written by the agent (json.Decoder stops at the first value).
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the configuration object at offset %d: accepted: one JSON object", dec.InputOffset())
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load reads and validates the configuration at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Shipper scrapes and pushes, per its Config.
type Shipper struct {
	cfg      *Config
	client   *http.Client // the endpoint
	local    *http.Client // the exporters
	auth     func(*http.Request)
	interval time.Duration
	log      *slog.Logger
	now      func() time.Time
	// pending pushes, oldest first, kept while the endpoint is down.
	pending [][]byte
}

// maxPending scrapes are kept while the endpoint is down (at 30 s, ten
// minutes of samples); older ones are dropped first.
const maxPending = 20

// New makes a shipper: it reads the secret and the CA now.
func New(cfg *Config, log *slog.Logger) (*Shipper, error) {
	s := &Shipper{cfg: cfg, log: log, now: time.Now, auth: func(*http.Request) {}}
	s.interval = time.Duration(cfg.IntervalSeconds) * time.Second
	if s.interval == 0 {
		s.interval = defaultInterval * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s holds no PEM certificate", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	s.client = &http.Client{Transport: tr, Timeout: s.interval / 3}
	s.local = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: s.interval / 2}
	if cfg.SecretFile != "" {
		b, err := os.ReadFile(cfg.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("secret_file: %w", err)
		}
		secret := strings.TrimRight(string(b), "\r\n")
		if secret == "" {
			return nil, fmt.Errorf("secret_file: %s is empty", cfg.SecretFile)
		}
		if cfg.Bearer {
			s.auth = func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) }
		} else {
			user := cfg.User
			s.auth = func(r *http.Request) { r.SetBasicAuth(user, secret) }
		}
	}
	return s, nil
}

// Run scrapes every interval until ctx ends, the first time at once. With
// no url (a node that ships only traces) it waits for ctx.
func (s *Shipper) Run(ctx context.Context) error {
	if s.cfg.URL == "" {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.Once(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Once scrapes every job and pushes what it got, after what is pending.
func (s *Shipper) Once(ctx context.Context) {
	var series []model.Sample
	for _, j := range s.cfg.Jobs {
		series = append(series, s.scrape(ctx, j)...)
	}
	s.pending = append(s.pending, encode(series))
	if n := len(s.pending) - maxPending; n > 0 {
		s.log.Warn("the metrics endpoint has not taken samples for a while: dropping the oldest", "scrapes", n)
		s.pending = slices.Delete(s.pending, 0, n)
	}
	for len(s.pending) > 0 {
		err := s.push(ctx, s.pending[0])
		var perm permanent
		switch {
		case errors.As(err, &perm):
			// The endpoint refused these samples for good: retrying
			// cannot help.
			s.log.Error("the metrics endpoint refused samples", "err", err)
		case err != nil:
			s.log.Warn("pushing metrics; kept for the next scrape", "err", err, "pending", len(s.pending))
			return
		}
		s.pending = s.pending[1:]
	}
}

// scrape reads one job and returns its samples with the job's labels, and
// the up, scrape_duration_seconds and scrape_samples_scraped series that
// Prometheus adds.
func (s *Shipper) scrape(ctx context.Context, j Job) []model.Sample {
	start := s.now()
	ts := model.TimeFromUnixNano(start.UnixNano())
	samples, err := s.fetch(ctx, j.URL, ts)
	up := 1.0
	if err != nil {
		s.log.Warn("scraping", "job", j.Name, "err", err)
		up, samples = 0, nil
	}
	for i := range samples {
		samples[i].Metric = s.target(samples[i].Metric, j)
	}
	meta := func(name string, v float64) model.Sample {
		return model.Sample{Metric: s.target(model.Metric{model.MetricNameLabel: model.LabelValue(name)}, j), Value: model.SampleValue(v), Timestamp: ts}
	}
	return append(samples,
		meta("up", up),
		meta("scrape_duration_seconds", s.now().Sub(start).Seconds()),
		meta("scrape_samples_scraped", float64(len(samples))))
}

// target sets job and instance (a target's own are kept as exported_job
// and exported_instance, as Prometheus does) and adds the external labels.
func (s *Shipper) target(m model.Metric, j Job) model.Metric {
	for _, l := range []model.LabelName{model.JobLabel, model.InstanceLabel} {
		if v, ok := m[l]; ok {
			m["exported_"+l] = v
		}
	}
	m[model.JobLabel] = model.LabelValue(j.Name)
	m[model.InstanceLabel] = model.LabelValue(s.cfg.Instance)
	for k, v := range s.cfg.Labels {
		if _, ok := m[model.LabelName(k)]; !ok {
			m[model.LabelName(k)] = model.LabelValue(v)
		}
	}
	return m
}

// fetch reads an exporter's text exposition.
func (s *Shipper) fetch(ctx context.Context, u string, ts model.Time) ([]model.Sample, error) {
	return Scrape(ctx, s.local, u, 64<<20, ts)
}

// Scrape GETs the text exposition at u with c and decodes at most limit
// bytes of it into samples at ts (Decode).
func Scrape(ctx context.Context, c *http.Client, u string, limit int64, ts model.Time) ([]model.Sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return Decode(io.LimitReader(resp.Body, limit), ts)
}

// Decode parses a text exposition into samples at ts (a sample's own
// timestamp wins), summaries and histograms spread into their series.
func Decode(r io.Reader, ts model.Time) ([]model.Sample, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []model.Sample
	for _, n := range names {
		v, err := expfmt.ExtractSamples(&expfmt.DecodeOptions{Timestamp: ts}, fams[n])
		if err != nil {
			return nil, err
		}
		for _, smp := range v {
			out = append(out, *smp)
		}
	}
	return out, nil
}

// permanent is an answer that retrying will not change (4xx but 429).
type permanent struct{ error }

func (s *Shipper) push(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	return send(s.client, s.auth, req)
}

// send makes req with the endpoint's credentials. An answer other than 2xx
// is an error, permanent when retrying cannot change it; the error shows
// the URL without its query.
func send(client *http.Client, auth func(*http.Request), req *http.Request) error {
	req.Header.Set("User-Agent", "imgforge-agent")
	auth(req)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode/100 == 4 && resp.StatusCode != http.StatusTooManyRequests:
		return permanent{fmt.Errorf("POST %s: %s: %s", redact(req.URL), resp.Status, strings.TrimSpace(string(msg)))}
	default:
		return fmt.Errorf("POST %s: %s: %s", redact(req.URL), resp.Status, strings.TrimSpace(string(msg)))
	}
}

// encode makes a remote-write 1.0 body: a prometheus.WriteRequest
// (repeated TimeSeries timeseries = 1; TimeSeries: repeated Label labels =
// 1, repeated Sample samples = 2; Label: string name = 1, value = 2;
// Sample: double value = 1, int64 timestamp = 2, in milliseconds),
// snappy-compressed (block format). Labels are sorted by name.
func encode(samples []model.Sample) []byte {
	var req, ts, lb, sm []byte
	for _, s := range samples {
		names := make([]string, 0, len(s.Metric))
		for k := range s.Metric {
			names = append(names, string(k))
		}
		sort.Strings(names)
		ts = ts[:0]
		for _, k := range names {
			lb = lb[:0]
			lb = protowire.AppendTag(lb, 1, protowire.BytesType)
			lb = protowire.AppendString(lb, k)
			lb = protowire.AppendTag(lb, 2, protowire.BytesType)
			lb = protowire.AppendString(lb, string(s.Metric[model.LabelName(k)]))
			ts = protowire.AppendTag(ts, 1, protowire.BytesType)
			ts = protowire.AppendBytes(ts, lb)
		}
		sm = sm[:0]
		sm = protowire.AppendTag(sm, 1, protowire.Fixed64Type)
		sm = protowire.AppendFixed64(sm, math.Float64bits(float64(s.Value)))
		sm = protowire.AppendTag(sm, 2, protowire.VarintType)
		sm = protowire.AppendVarint(sm, uint64(int64(s.Timestamp)))
		ts = protowire.AppendTag(ts, 2, protowire.BytesType)
		ts = protowire.AppendBytes(ts, sm)
		req = protowire.AppendTag(req, 1, protowire.BytesType)
		req = protowire.AppendBytes(req, ts)
	}
	return s2.EncodeSnappy(nil, req)
}
