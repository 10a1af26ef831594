package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/discovery"
	"github.com/imgforge/imgforge/pkg/agent/identity"
)

// DefaultControlPort is the control endpoint's port on the node's
// address (imgforge-agent run --control).
const DefaultControlPort = 9443

// The control endpoint's paths.
const (
	ControlStatusPath  = "/v1/status"
	ControlDrainPath   = "/v1/drain"
	ControlUndrainPath = "/v1/undrain"
	ControlUpdatePath  = "/v1/update"
	// ControlSnapshotPath streams the node's snapshot (its role's
	// snapshot command) to a node of its role; see snapshot.go.
	ControlSnapshotPath = "/v1/snapshot"
)

// Image is the image a node runs: its version (the first 12 hex of the
// image digest, from the running slot's partition label), its slot and
// root hash (from the kernel command line).
type Image struct {
	Role     string `json:"role,omitempty"`
	Version  string `json:"version"`
	Slot     string `json:"slot,omitempty"`
	RootHash string `json:"root_hash,omitempty"`
}

// ControlStatus is what GET /v1/status answers.
type ControlStatus struct {
	Node  string `json:"node"`
	Role  string `json:"role"`
	Image Image  `json:"image"`
	// Agent is the agent's own version.
	Agent   string `json:"agent,omitempty"`
	Healthy bool   `json:"healthy"`
	// Ready says the agent runs with valid settings and discovery.
	Ready    bool `json:"ready"`
	Draining bool `json:"draining"`
	// Discovers are the roles this node's configuration holds (role.json's
	// discover): a node of such a role is in service once this node's
	// Rendered lists it healthy.
	Discovers []string      `json:"discovers"`
	Rendered  discovery.Set `json:"rendered"`
	// Discovery is the node's discovery method; with gossip only
	// verified members are rendered.
	Discovery string `json:"discovery,omitempty"`
	// ImageError says why Image could not be read.
	ImageError string `json:"image_error,omitempty"`
	// HoldsVIPs are the cluster's VIPs this node announces now (on a
	// network interface: every lb node has them on lo too). A drained lb
	// node is rebooted once it holds none.
	HoldsVIPs []string `json:"holds_vips,omitempty"`
}

// UpdateRequest is POST /v1/update's body.
type UpdateRequest struct {
	// Source is the image to install: the URL of a set served by
	// imgforge serve, or an OCI reference (imgforge-agent update SOURCE).
	Source string `json:"source"`
	// Reboot boots the new slot once it is written (the default: a
	// missing field reboots).
	Reboot *bool `json:"reboot,omitempty"`
	// Tries is the new slot's boot counter, 1 to MaxTries (0: the
	// agent's default, 3); Trial, a Go duration up to MaxTrial, how long
	// its boot may take to get healthy (empty: 10 minutes). See
	// imgforge-agent update --tries and --trial.
	Tries int    `json:"tries,omitempty"`
	Trial string `json:"trial,omitempty"`
	// Stage writes the inactive slot while the node keeps serving, with
	// no entry that boots it and no reboot: an update from the same
	// source later finds it written and only makes it the next boot
	// (imgforge-agent update --stage).
	Stage bool `json:"stage,omitempty"`
}

// The bounds of UpdateRequest.Tries and Trial.
const (
	MaxTries = 9
	MaxTrial = time.Hour
)

// TrialDuration is r.Trial parsed and checked (0 when empty).
func (r UpdateRequest) TrialDuration() (time.Duration, error) {
	if r.Tries < 0 || r.Tries > MaxTries {
		return 0, fmt.Errorf("tries: %d; accepted: 1 to %d, or 0 for the default", r.Tries, MaxTries)
	}
	if r.Trial == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(r.Trial)
	if err != nil || d < 0 || d > MaxTrial {
		return 0, fmt.Errorf("trial: %q; accepted: a duration from 0s to %s, such as 90s", r.Trial, MaxTrial)
	}
	return d, nil
}

// UpdateResponse is POST /v1/update's answer, sent before the reboot.
type UpdateResponse struct {
	Slot     string `json:"slot"`
	Role     string `json:"role"`
	Version  string `json:"version"`
	RootHash string `json:"root_hash"`
	Reboot   bool   `json:"reboot"`
	// Staged: written, not to be booted yet (UpdateRequest.Stage).
	// Reused: the slot held the image already and was not written again.
	Staged bool `json:"staged,omitempty"`
	Reused bool `json:"reused,omitempty"`
}

// ControlError is the body of every refused request.
type ControlError struct {
	Error string `json:"error"`
}

// ControlOptions configure the control endpoint.
type ControlOptions struct {
	// Identity is the node's (its certificate serves TLS); its CA is the
	// only issuer of client certificates accepted.
	Identity *identity.Node
	// Agent answers status and drains; required.
	Agent *Agent
	// Image reads what the node runs (read once and kept: the running
	// slot changes only with a reboot).
	Image func() (Image, error)
	// Discovers are the roles the node's role discovers (role.json).
	Discovers []string
	// HeldVIPs lists the VIPs the node announces now (HeldVIPs on a node);
	// nil: none.
	HeldVIPs func() []string
	// Update installs source in the inactive slot (update.OnNode on a
	// node).
	Update func(ctx context.Context, req UpdateRequest) (UpdateResponse, error)
	// Reboot reboots the node (systemctl reboot), RebootDelay (default
	// 500ms) after the update's answer, so that the answer gets out.
	Reboot      func() error
	RebootDelay time.Duration
	// Snapshot is the role's snapshot command (role.json's snapshot;
	// empty: the node serves none). With one, the endpoint also accepts
	// the certificates of nodes of its own role, for GET /v1/snapshot
	// alone.
	Snapshot []string
	// Mode is the node's member mode now (config.Config.Mode); a node
	// whose mode is replica serves no snapshot. Nil: none.
	Mode func() string
	// RunSnapshot runs the snapshot command with its output to stdout
	// and its diagnostics to stderr (default: os/exec, no shell).
	RunSnapshot func(ctx context.Context, argv []string, stdout, stderr io.Writer) error
	// SnapshotDir is where each snapshot's private folder is made
	// (default: os.TempDir()).
	SnapshotDir string
	Now         func() time.Time
	Logf        func(format string, args ...any)
}

// Control is the agent's control endpoint: HTTPS with mutual TLS, which
// serves only clients with an operator certificate from the cluster CA
// (identity.OperatorOrg). See docs/agent.md.
type Control struct {
	o        ControlOptions
	verifier *identity.Verifier

	imgOnce sync.Once
	img     Image
	imgErr  error

	updating     sync.Mutex
	snapshotting sync.Mutex
}

// NewControl makes the control endpoint.
func NewControl(o ControlOptions) (*Control, error) {
	if o.Identity == nil {
		return nil, errors.New("control endpoint: the node has no identity (imgforge.identity): without it nothing could prove it commands the node")
	}
	if o.Agent == nil {
		return nil, errors.New("control endpoint: no agent")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.RebootDelay <= 0 {
		o.RebootDelay = 500 * time.Millisecond
	}
	if o.Image == nil {
		o.Image = func() (Image, error) { return Image{}, errors.New("not known") }
	}
	if o.RunSnapshot == nil {
		o.RunSnapshot = execSnapshot
	}
	return &Control{o: o, verifier: identity.NewVerifier(o.Identity.CA)}, nil
}

// TLSConfig is the server's TLS configuration: the node's certificate,
// TLS 1.3, and a client certificate required that the cluster CA issued
// to an operator or, on a node whose role has a snapshot, to a node of
// its role (which the handler lets fetch the snapshot and nothing else);
// any other client fails the handshake.
func (c *Control) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.o.Identity.TLSCertificate()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    identity.Pool(c.o.Identity.CA),
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			_, err := c.verifier.VerifyOperator(cs.PeerCertificates[0], c.o.Now())
			if err != nil && len(c.o.Snapshot) > 0 {
				if _, perr := c.verifier.VerifyPeer(cs.PeerCertificates[0], c.o.Identity.Role, c.o.Now()); perr == nil {
					return nil
				}
			}
			return err
		},
	}
}

// Handler serves the control API. It checks the client certificate again
// (the TLS configuration already did), so that it is safe behind any
// listener: GET /v1/snapshot takes a node of this node's role, every
// other path an operator.
func (c *Control) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+ControlStatusPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, c.Status())
	})
	mux.HandleFunc("POST "+ControlDrainPath, func(w http.ResponseWriter, r *http.Request) {
		c.o.Logf("control: %s: drain", operator(r))
		c.o.Agent.SetDraining(true)
		writeJSON(w, http.StatusOK, c.Status())
	})
	mux.HandleFunc("POST "+ControlUndrainPath, func(w http.ResponseWriter, r *http.Request) {
		c.o.Logf("control: %s: undrain", operator(r))
		c.o.Agent.SetDraining(false)
		writeJSON(w, http.StatusOK, c.Status())
	})
	mux.HandleFunc("POST "+ControlUpdatePath, c.update)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			writeJSON(w, http.StatusUnauthorized, ControlError{"an operator client certificate from the cluster CA is required"})
			return
		}
		if r.URL.Path == ControlSnapshotPath {
			c.snapshot(w, r)
			return
		}
		name, err := c.verifier.VerifyOperator(r.TLS.PeerCertificates[0], c.o.Now())
		if err != nil {
			writeJSON(w, http.StatusForbidden, ControlError{err.Error()})
			return
		}
		r.Header.Set("X-Imgforge-Operator", name)
		mux.ServeHTTP(w, r)
	})
}

func operator(r *http.Request) string { return r.Header.Get("X-Imgforge-Operator") }

// Status is GET /v1/status's answer now.
func (c *Control) Status() ControlStatus {
	c.imgOnce.Do(func() { c.img, c.imgErr = c.o.Image() })
	st := c.o.Agent.Status()
	out := ControlStatus{
		Node: c.o.Identity.Name, Role: c.o.Identity.Role, Image: c.img, Agent: st.Version,
		Healthy: st.Self.Healthy && !st.Draining, Draining: st.Draining, Rendered: st.Rendered,
		Discovers: append([]string{}, c.o.Discovers...), Discovery: st.Discovery,
	}
	select {
	case <-c.o.Agent.Ready():
		out.Ready = true
	default:
		out.Healthy = false
	}
	if c.imgErr != nil {
		out.ImageError = c.imgErr.Error()
	}
	if c.o.HeldVIPs != nil {
		out.HoldsVIPs = c.o.HeldVIPs()
	}
	return out
}

// HeldVIPs are those of vips that sit on a network interface of this
// machine other than the loopback (where an lb node keeps them all).
func HeldVIPs(vips []config.VIP) []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	have := map[netip.Addr]bool{}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					have[ip.Unmap()] = true
				}
			}
		}
	}
	var out []string
	for _, v := range vips {
		if a, err := netip.ParseAddr(v.Address); err == nil && have[a.Unmap()] {
			out = append(out, a.Unmap().String())
		}
	}
	return out
}

func (c *Control) update(w http.ResponseWriter, r *http.Request) {
	var req UpdateRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, ControlError{fmt.Sprintf("reading the update request: %v; accepted: {\"source\": URL or OCI reference}", err)})
		return
	}
	if strings.TrimSpace(req.Source) == "" {
		writeJSON(w, http.StatusBadRequest, ControlError{"source: empty; accepted: the URL of a set served by imgforge serve, or an OCI reference"})
		return
	}
	if _, err := req.TrialDuration(); err != nil {
		writeJSON(w, http.StatusBadRequest, ControlError{err.Error()})
		return
	}
	if c.o.Update == nil {
		writeJSON(w, http.StatusNotImplemented, ControlError{"this agent cannot update its node"})
		return
	}
	if !c.updating.TryLock() {
		writeJSON(w, http.StatusConflict, ControlError{"an update is running on this node"})
		return
	}
	defer c.updating.Unlock()
	c.o.Logf("control: %s: update from %s", operator(r), req.Source)
	res, err := c.o.Update(r.Context(), req)
	if err != nil {
		c.o.Logf("control: update from %s: %v", req.Source, err)
		writeJSON(w, http.StatusInternalServerError, ControlError{fmt.Sprintf("updating from %s: %v", req.Source, err)})
		return
	}
	res.Reboot = (req.Reboot == nil || *req.Reboot) && !req.Stage
	writeJSON(w, http.StatusOK, res)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if res.Reboot && c.o.Reboot != nil {
		c.o.Logf("control: rebooting into slot %s (%s)", res.Slot, res.Version)
		go func() {
			// Let the answer reach the operator before the reboot.
			time.Sleep(c.o.RebootDelay)
			if err := c.o.Reboot(); err != nil {
				c.o.Logf("control: rebooting: %v", err)
			}
		}()
	}
}

// logWriter sends each write to a Logf as one line.
type logWriter func(format string, args ...any)

func (w logWriter) Write(p []byte) (int, error) {
	w("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ServeControl serves c over TLS on l until ctx ends.
func ServeControl(ctx context.Context, l net.Listener, c *Control) error {
	srv := &http.Server{Handler: c.Handler(), TLSConfig: c.TLSConfig(), ReadHeaderTimeout: 5 * time.Second,
		// Refused handshakes go to the agent's log.
		ErrorLog: log.New(logWriter(c.o.Logf), "control endpoint: ", 0)}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("control endpoint: %w", err)
	}
	return nil
}
