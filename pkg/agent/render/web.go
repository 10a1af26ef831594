package render

import "fmt"

// Where the web role's TLS pair lives on the node.
const (
	TLSCertPath = "/etc/imgforge/tls/tls.crt"
	TLSKeyPath  = "/etc/imgforge/tls/tls.key"
)

// appPort is where php-fpm and uWSGI listen on the app nodes.
const appPort = 9000

type webData struct {
	Self     string
	Runtime  string
	App      []string // address:port of each app node
	CertPath string
	KeyPath  string
}

// web renders nginx.conf (the whole of it: the upstream of app nodes, the
// site with TLS, and the status page for the metrics exporter) and the
// TLS pair: the one given at boot, the self-signed one already on the
// node while it fits, or a new self-signed one.
func (r *Renderer) web(c *Config, in *Input) error {
	pair, err := r.tlsPair(in, TLSCertPath, TLSKeyPath)
	if err != nil {
		return fmt.Errorf("rendering web: %w", err)
	}
	d := webData{Self: in.Self.Name, Runtime: runtime(in), CertPath: TLSCertPath, KeyPath: TLSKeyPath}
	for _, n := range in.members(RoleApp, false) {
		d.App = append(d.App, hostPort(n.Address, appPort))
	}
	conf, err := r.execute("web/nginx.conf.tmpl", d)
	if err != nil {
		return err
	}
	c.Services = append(c.Services, Service{
		Name: "nginx",
		Files: []File{
			{Path: TLSCertPath, Mode: 0o644, Owner: "root", Group: "root", Data: pair.CertPEM},
			{Path: TLSKeyPath, Mode: 0o600, Owner: "root", Group: "root", Data: pair.KeyPEM, Sensitive: true},
			{
				Path: "/etc/nginx/nginx.conf", Mode: 0o644, Owner: "root", Group: "root", Data: conf,
				Check: []string{"nginx", "-t", "-q", "-c", Candidate},
			},
		},
		Then: [][]string{reload("nginx.service")},
	})
	return nil
}

// tlsPair is the node's TLS pair: the one given at boot, the self-signed
// one already on the node (at certPath and keyPath) while it fits, or a
// new self-signed one.
func (r *Renderer) tlsPair(in *Input, certPath, keyPath string) (*TLS, error) {
	if in.TLS != nil {
		return in.TLS, nil
	}
	if r.Now == nil || r.Rand == nil {
		return nil, fmt.Errorf("a self-signed certificate needs Renderer.Rand and Renderer.Now")
	}
	now := r.Now()
	if cur := currentPair(r.Current, certPath, keyPath); cur != nil && fits(cur, now, in.Self.Name, in.Self.Address) {
		return cur, nil
	}
	return SelfSigned(r.Rand, now, in.Self.Name, in.Self.Address)
}

func runtime(in *Input) string {
	if rt := in.Options["runtime"]; rt != "" {
		return rt
	}
	return "php-fpm"
}
