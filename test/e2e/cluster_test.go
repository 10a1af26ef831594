//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"golang.org/x/sync/semaphore"

	"github.com/imgforge/imgforge/pkg/agent/metrics"
	"github.com/imgforge/imgforge/pkg/qemu"
)

// The cluster the test boots: every node on one bridge in a network
// namespace, the test itself at .1 (gateway, and the monitoring service).
const clusterFile = `cluster: e2e
network:
  subnet: 10.10.0.0/24
  gateway: 10.10.0.1
  interface: eth0
vips:
  - address: 10.10.0.100
  - address: 10.10.0.101
discovery:
  method: gossip
  gossip:
    # Seven TCG guests (eight since db-2) on two cores are members short
    # of CPU: with lan's 500 ms probes, web-2 was suspected, dropped and
    # re-admitted over and over, each time a render and an HAProxy reload
    # on both lbs, and got no request (docs/agent.md, "Gossip profiles").
    profile: large
monitoring:
  metrics_url: https://10.10.0.1:9443/api/v1/write
  logs_url: https://10.10.0.1:9443
  traces_url: https://10.10.0.1:9443/v1/traces
  username: e2e
  password: e2e-monitoring-secret
  ca: |
%s
  logs_cert_file: logs.crt
  logs_key_file: logs.key
nodes:
  - {name: lb-1, role: lb, address: 10.10.0.11}
  - {name: lb-2, role: lb, address: 10.10.0.12}
  - {name: web-1, role: web, address: 10.10.0.21}
  - {name: web-2, role: web, address: 10.10.0.22}
  - {name: app-1, role: app, address: 10.10.0.31}
  - {name: app-2, role: app, address: 10.10.0.32, options: {runtime: uwsgi}}
  - {name: db-1, role: db, address: 10.10.0.41, id: 1, options: {mode: primary}}
  - {name: db-2, role: db, address: 10.10.0.42, id: 2, options: {mode: replica}}
`

type seedNode struct {
	Name    string `json:"name"`
	Role    string `json:"role"`
	Address string `json:"address"`
	MAC     string `json:"mac"`
	Seed    string `json:"seed"`
}

// receiver stands in for the monitoring service: Prometheus remote_write,
// systemd-journal-remote's /upload and OTLP/HTTP traces, over TLS. It
// records which addresses sent what.
type receiver struct {
	mu      sync.Mutex
	metrics map[string]int
	logs    map[string]int
	// names are the request counters of each tier (tierCounters) seen in
	// an address's pushes.
	names map[string]map[string]bool
	// traces are the trace ids of the spans an address sent.
	traces map[string]map[string]bool
	// agent is the agent's own use of the node (job "agent"), the last
	// pushed by an address: resident memory (bytes), CPU time (s).
	agentRSS, agentCPU map[string]float64
	// replicaLag and replicaRunning are a db replica's reports, the last
	// pushed by an address (job "agent", as the agent's /metrics gives
	// them): imgforge_db_replica_lag_seconds, imgforge_db_replica_running.
	replicaLag, replicaRunning map[string]float64
	badAuth                    int
}

// tierCounters are the request counters of the lb and web tiers, which
// their exporters give and the shipper pushes: QPS per tier is their rate.
var tierCounters = map[string][]string{
	"lb":  {"haproxy_frontend_http_requests_total", "haproxy_backend_http_requests_total"},
	"web": {"nginx_http_requests_total"},
}

func (r *receiver) auth(w http.ResponseWriter, req *http.Request) bool {
	if u, p, ok := req.BasicAuth(); !ok || u != "e2e" || p != "e2e-monitoring-secret" {
		r.mu.Lock()
		r.badAuth++
		r.mu.Unlock()
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return false
	}
	return true
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	host, _, _ := net.SplitHostPort(req.RemoteAddr)
	switch {
	case req.Method == http.MethodPost && req.URL.Path == "/api/v1/write":
		if !r.auth(w, req) {
			return
		}
		// A remote-write body: snappy (block format) around a protobuf
		// WriteRequest. It counts when it holds the node exporter's
		// samples, which the node's metrics shipper scraped.
		b, _ := io.ReadAll(io.LimitReader(req.Body, 32<<20))
		raw, err := s2.Decode(nil, b)
		if err != nil || req.Header.Get("Content-Encoding") != "snappy" {
			http.Error(w, "not a snappy-compressed remote-write body", http.StatusBadRequest)
			return
		}
		samples, err := metrics.DecodeWrite(b)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, s := range samples {
			if s.Metric["job"] != "agent" {
				continue
			}
			switch s.Metric["__name__"] {
			case "process_resident_memory_bytes":
				r.agentRSS[host] = float64(s.Value)
			case "process_cpu_seconds_total":
				r.agentCPU[host] = float64(s.Value)
			case "imgforge_db_replica_lag_seconds":
				r.replicaLag[host] = float64(s.Value)
			case "imgforge_db_replica_running":
				r.replicaRunning[host] = float64(s.Value)
			}
		}
		if bytes.Contains(raw, []byte("node_cpu_seconds_total")) {
			r.metrics[host]++
		}
		for _, names := range tierCounters {
			for _, n := range names {
				if bytes.Contains(raw, []byte(n)) {
					if r.names[host] == nil {
						r.names[host] = map[string]bool{}
					}
					r.names[host][n] = true
				}
			}
		}
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case req.Method == http.MethodPost && req.URL.Path == "/v1/traces":
		// An OTLP/HTTP export, as the apps sent it to their node's agent
		// (JSON), forwarded by the agent.
		if !r.auth(w, req) {
			return
		}
		var export struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Spans []struct {
						TraceID string `json:"traceId"`
					} `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		if req.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "this receiver reads OTLP/JSON", http.StatusUnsupportedMediaType)
			return
		}
		if err := json.NewDecoder(io.LimitReader(req.Body, 4<<20)).Decode(&export); err != nil {
			http.Error(w, "not an OTLP/JSON export: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range export.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					if r.traces[host] == nil {
						r.traces[host] = map[string]bool{}
					}
					r.traces[host][sp.TraceID] = true
				}
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{}")
	case req.Method == http.MethodPost && req.URL.Path == "/upload":
		// journal-upload streams entries in one long request: count the
		// sender at its first bytes.
		if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
			http.Error(w, "client certificate required", http.StatusUnauthorized)
			return
		}
		buf := make([]byte, 32<<10)
		counted := false
		// With IMGFORGE_E2E_LOGS, each node's journal is kept there (in
		// the journal export format) for a person reading a run.
		keep := io.Discard
		if d := os.Getenv("IMGFORGE_E2E_LOGS"); d != "" {
			if f, err := os.OpenFile(filepath.Join(d, host+".journal"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
				defer f.Close()
				keep = f
			}
		}
		for {
			n, err := req.Body.Read(buf)
			_, _ = keep.Write(buf[:n])
			if n > 0 && !counted {
				counted = true
				r.mu.Lock()
				r.logs[host]++
				r.mu.Unlock()
			}
			if err != nil {
				break
			}
		}
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "OK.\n")
	default:
		http.NotFound(w, req)
	}
}

func (r *receiver) seen(addrs []string) (missingMetrics, missingLogs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range addrs {
		if r.metrics[a] == 0 {
			missingMetrics = append(missingMetrics, a)
		}
		if r.logs[a] == 0 {
			missingLogs = append(missingLogs, a)
		}
	}
	return
}

// testPKI makes a CA, the receiver's certificate (10.10.0.1) and a client
// certificate for the nodes' log uploads, as PEM files in dir.
// qcow2Node is the cluster's machine that boots the qcow2 image (through
// an overlay), not a copy of the raw disk.
const qcow2Node = "lb-2"

func testPKI(t *testing.T, dir string) (caPEM []byte, server tls.Certificate) {
	t.Helper()
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "imgforge e2e CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	issue := func(serial int64, cn string, ips []net.IP, usage x509.ExtKeyUsage) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, IPAddresses: ips,
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage},
			KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	sc, sk := issue(2, "10.10.0.1", []net.IP{net.ParseIP("10.10.0.1")}, x509.ExtKeyUsageServerAuth)
	server, err = tls.X509KeyPair(sc, sk)
	if err != nil {
		t.Fatal(err)
	}
	lc, lk := issue(3, "imgforge-e2e-logs", nil, x509.ExtKeyUsageClientAuth)
	if err := os.WriteFile(filepath.Join(dir, "logs.crt"), lc, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "logs.key"), lk, 0o600); err != nil {
		t.Fatal(err)
	}
	return caPEM, server
}

// TestCluster boots 2 lb, 1 web, 1 app (PHP-FPM) and 1 db primary from `imgforge
// seed` seeds on one bridge: a request to the VIP returns the page the app
// made from a database row, and nginx redirects, caches and serves static
// files as designed (checkNginx); a second web node and a second app node,
// on uWSGI (a build with --set runtime=uwsgi), join; the web node gets
// requests, and the VIP answers with the row from app nodes of both
// runtimes, whose spans reach the monitoring receiver; db-2, a replica,
// seeds itself from the primary's snapshot and replicates: a row's text
// written on the primary is read on the replica through the VIP (/replica)
// by both app nodes within replicaBound, and db-2 pushes its
// imgforge_db_replica_running (1) and lag (replicaSteps);
// with IMGFORGE_E2E_ROLLOUT=1, imgforge rollout moves both lbs and both
// web nodes to v2 under a steady stream of requests, none of which may
// fail, then tries v3 on the web nodes, which fails its health check: web-1
// comes back on v2 by itself and the rollout stops, naming it
// (rolloutSteps); each lb holds one of the two VIPs, clients keep their
// web node through either lb, and the lb holding the first VIP stops under
// a stream of requests to both, within stated bounds (activeActive). The
// monitoring receiver must have metrics and logs from every node, and
// replication reports from the replica alone.
//
// It is also the suite's boot test of the roles: every node must reach
// multi-user with no failed unit and with the state file system its disk
// shipped, and qcow2Node boots the lb's qcow2 image.
func TestCluster(t *testing.T) {
	needBootToServices(t)
	t.Parallel()
	// The cluster takes every slot (its machines must run at once), and
	// asks before it waits for the first cold build: the other tests ask
	// after it, so the cluster boots first, once that build is there.
	hostSlots(t, nSlots)
	f := cold(t, 0)
	dir := t.TempDir()
	// app-2 runs uWSGI: the app role built with runtime=uwsgi (its own
	// packages stage), while the first machines boot.
	uwsgiOut := filepath.Join(dir, "uwsgi")
	uwsgiBuilt := make(chan result, 1)
	buildCtx, stopBuild := context.WithCancel(context.Background())
	buildDone := make(chan struct{})
	t.Cleanup(func() { stopBuild(); <-buildDone }) // before dir goes
	go func() {
		defer close(buildDone)
		cmd := exec.CommandContext(buildCtx, binary, "build", "--output-dir", uwsgiOut, "--format", "raw", "--set", "runtime=uwsgi", "app")
		cmd.Dir = workdir
		cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+f.cache)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		start := time.Now()
		err := cmd.Run()
		r := result{stderr: errb.String(), elapsed: time.Since(start)}
		if err != nil {
			r.code = -1
			r.stderr = fmt.Sprintf("%v\n%s", err, r.stderr)
		}
		uwsgiBuilt <- r
	}()
	seg := newSegment(t, "cl", "10.10.0.1/24")

	caPEM, serverCert := testPKI(t, dir)
	indented := "    " + strings.ReplaceAll(strings.TrimSpace(string(caPEM)), "\n", "\n    ")
	if err := os.WriteFile(filepath.Join(dir, "cluster.yaml"), fmt.Appendf(nil, clusterFile, indented), 0o644); err != nil {
		t.Fatal(err)
	}
	seeds := filepath.Join(dir, "seeds")
	if r := imgforge(t, f.cache, dir, "seed", "--cluster", "cluster.yaml", "--out", seeds); r.code != 0 {
		t.Fatalf("imgforge seed: %s", r.stderr)
	}
	var nodes []seedNode
	b, err := os.ReadFile(filepath.Join(seeds, "nodes.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &nodes); err != nil {
		t.Fatalf("nodes.json: %v", err)
	}
	byName := map[string]seedNode{}
	for _, n := range nodes {
		byName[n.Name] = n
	}

	// The monitoring service, inside the namespace.
	rec := &receiver{metrics: map[string]int{}, logs: map[string]int{}, names: map[string]map[string]bool{}, traces: map[string]map[string]bool{}, agentRSS: map[string]float64{}, agentCPU: map[string]float64{},
		replicaLag: map[string]float64{}, replicaRunning: map[string]float64{}}
	l, err := seg.listen("10.10.0.1:9443")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	srv := &http.Server{Handler: rec, TLSConfig: &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}}
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() { srv.Close() })

	// Images v2 and v3 for the rollouts (step 3): template edits, so the
	// builds make only the overlay image again.
	rollouts := os.Getenv("IMGFORGE_E2E_ROLLOUT") == "1"
	var v2, v3 string
	if rollouts {
		v2, v3 = buildVersion(t, f, "v2", rolloutV2), buildVersion(t, f, "v3", rolloutV3)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	vms := map[string]*qemu.VM{}
	// A boot under TCG takes a core, a settled node little: at most
	// nSlots of the cluster's machines boot (to multi-user) at once, and
	// start waits for its turn. Five boots at once each crawled at a
	// seventh of a lone boot's pace (the kernel's module loading at 420 s
	// of uptime against 63 s), past the services' start timeouts.
	booting := semaphore.NewWeighted(nSlots)
	var stopMu sync.Mutex
	stopped := map[string]bool{} // machines the test stops on purpose
	start := func(name string) {
		t.Helper()
		n, ok := byName[name]
		if !ok {
			t.Fatalf("nodes.json has no %s", name)
		}
		// lb-2 boots the lb's qcow2 image, through an overlay of its
		// own; the others a copy of their role's raw disk.
		disk := qemu.Disk{Path: filepath.Join(dir, name+".raw")}
		image := filepath.Join(f.out, n.Role, n.Role+".raw")
		if name == "app-2" {
			image = filepath.Join(uwsgiOut, "app", "app.raw")
		}
		cmd := exec.Command("cp", "--sparse=always", image, disk.Path)
		if name == qcow2Node {
			disk = qemu.Disk{Path: filepath.Join(dir, name+".qcow2"), Format: qemu.FormatQCOW2}
			cmd = exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", filepath.Join(f.out, n.Role, n.Role+".qcow2"), disk.Path)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		fw, err := qemu.FindFirmware()
		if err != nil {
			t.Fatal(err)
		}
		if err := booting.Acquire(ctx, 1); err != nil {
			t.Fatalf("%s: waiting for a machine to finish booting: %v", name, context.Cause(ctx))
		}
		vm, err := qemu.Start(ctx, &qemu.Machine{
			Name: name, MemoryMiB: 1024, CPUs: testCPUs, Firmware: fw, Netns: seg.ns,
			Disks: []qemu.Disk{disk, {Path: filepath.Join(seeds, name, "seed.iso"), Media: qemu.MediaCDROM}},
			Nets:  []qemu.Net{{Tap: seg.tap(t, "t-"+name), MAC: n.MAC}},
		})
		if err != nil {
			booting.Release(1)
			t.Fatal(err)
		}
		go func() {
			_, _ = vm.WaitFor(ctx, multiUser)
			booting.Release(1)
		}()
		vms[name] = vm
		if d := os.Getenv("IMGFORGE_E2E_LOGS"); d != "" {
			if f, err := os.Create(filepath.Join(d, name+".console")); err == nil {
				vm.ConsoleTo(f)
			}
		}
		// A machine that ends by itself ends the test, with its reason.
		go func() {
			err := vm.Wait()
			select {
			case <-ctx.Done():
			default:
				stopMu.Lock()
				onPurpose := stopped[name]
				stopMu.Unlock()
				if !onPurpose {
					t.Errorf("%s ended: %v\n%s", name, err, strings.Join(vm.Console.Tail(20), "\n"))
					cancel()
				}
			}
		}()
		t.Cleanup(func() {
			vm.Kill()
			if t.Failed() {
				t.Logf("%s console (last lines):\n%s", name, strings.Join(vm.Console.Tail(40), "\n"))
			}
		})
	}
	// Clients at several addresses: HAProxy keeps each source on one web
	// node (stick on src) for 30 minutes, so a new web node gets requests
	// from new clients. Each call of fresh adds 8 addresses never used.
	next := 0
	fresh := func() []string {
		var srcs []string
		for range 8 {
			src := fmt.Sprintf("10.10.%d.%d", 1+next/250, 1+next%250)
			next++
			seg.addAddr(t, src+"/16")
			srcs = append(srcs, src)
		}
		return srcs
	}
	// The web nodes redirect plain HTTP to HTTPS (the web role's https
	// option, redirect by default) and answer HTTPS with their own
	// self-signed pairs (the cluster file gives none): a request to the
	// VIP's port 80 follows the redirect back through the VIP on 443.
	// follow false gives the redirect itself; h2 offers HTTP/2 on TLS.
	request := func(src, url string, follow, h2 bool) (reply, error) {
		resp, err := seg.client(src, follow, h2).Get(url)
		if err != nil {
			return reply{}, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return reply{}, fmt.Errorf("GET %s: %w", url, err)
		}
		return reply{Status: resp.Status, StatusCode: resp.StatusCode, Header: resp.Header, Body: string(body),
			Scheme: resp.Request.URL.Scheme, TLS: resp.TLS != nil, Proto: resp.Proto, ProtoMajor: resp.ProtoMajor}, nil
	}
	get := func(src, url string) (string, string, error) {
		resp, err := request(src, url, true, false)
		if err != nil {
			return "", "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", "", fmt.Errorf("GET %s: %s %q", url, resp.Status, resp.Body)
		}
		return resp.Body, resp.Header.Get("X-Imgforge-Web"), nil
	}
	vip := "http://10.10.0.100/"

	t0 := time.Now()
	for _, n := range []string{"db-1", "app-1", "web-1", "lb-1", "lb-2"} {
		start(n)
	}
	err = eventually(ctx, func() error {
		body, _, err := get("", vip)
		if err != nil {
			return err
		}
		if !strings.Contains(body, "hello from the imgforge database (served by app-1)") {
			return fmt.Errorf("the VIP answered %q", body)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the VIP never answered with the database's row: %v", err)
	}
	t.Logf("step 1: 5 nodes booted, the VIP answers with the row from the database after %.0fs", time.Since(t0).Seconds())
	checkNginx(t, request, vip)
	for _, n := range []string{"db-1", "app-1", "web-1", "lb-1", "lb-2"} {
		line, err := vms[n].WaitFor(ctx, multiUser)
		if err != nil {
			t.Fatalf("%s did not reach multi-user: %v", n, err)
		}
		if !strings.HasSuffix(strings.TrimSpace(line), "failed units:") {
			t.Errorf("%s: %s", n, line)
		}
		// The disk ships its state file system made (issue 14): the
		// initramfs mounts it and makes none on the critical path.
		if strings.Contains(vms[n].Console.String(), "imgforge: making the state file system") {
			t.Errorf("%s: the initramfs made a state file system; the disk should ship one", n)
		}
	}
	t.Logf("all 5 reached multi-user.target, no failed units, after %.0fs (%s from the lb's qcow2 image)", time.Since(t0).Seconds(), qcow2Node)

	t1 := time.Now()
	start("web-2")
	r := <-uwsgiBuilt
	if r.code != 0 {
		t.Fatalf("imgforge build --set runtime=uwsgi app: %s", r.stderr)
	}
	t.Logf("the uWSGI app built in %.0fs", r.elapsed.Seconds())
	start("app-2")
	// db-2, the replica, boots as soon as web-2 or app-2 is up (at most
	// nSlots boot at once): it needs only db-1, and its boot then
	// overlaps the web and app tiers' checks (replicaSteps, below).
	t2 := time.Now()
	start("db-2")
	// Both load balancers list web-2 among their servers once its agent
	// has joined and it is healthy; then new clients reach it.
	err = eventually(ctx, func() error {
		for _, lb := range []string{"10.10.0.11", "10.10.0.12"} {
			csv, _, err := get("", "http://"+lb+":8404/stats;csv")
			if err != nil {
				return err
			}
			if !regexp.MustCompile(`(?m)^web,web-2,`).MatchString(csv) {
				return fmt.Errorf("lb %s does not list web-2 yet", lb)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the load balancers never listed web-2: %v", err)
	}
	t.Logf("step 2: both lb list web-2 after %.0fs", time.Since(t1).Seconds())
	err = eventually(ctx, func() error {
		seen := map[string]int{}
		for _, src := range fresh() {
			if _, web, err := get(src, vip); err == nil {
				seen[web]++
			}
		}
		if seen["web-2"] == 0 {
			return fmt.Errorf("no request went to web-2 yet (answers by web node: %v)", seen)
		}
		t.Logf("requests from 8 new clients by web node: %v", seen)
		return nil
	})
	if err != nil {
		t.Fatalf("the load balancer never sent requests to web-2: %v", err)
	}
	t.Logf("step 2: web-2 booted and got requests through the VIP after %.0fs", time.Since(t1).Seconds())

	// Step 2, the app tier: app-2 (uWSGI) answers through the VIP with
	// the database's row, and so does app-1 (PHP-FPM); the web nodes
	// speak FastCGI to both.
	err = eventually(ctx, func() error {
		served := map[string]int{}
		for range 8 {
			body, _, err := get("", vip)
			if err != nil {
				return err
			}
			served[servedBy(body)]++
		}
		if served["app-1"] == 0 || served["app-2"] == 0 {
			return fmt.Errorf("8 requests through the VIP, answered with the row by app node: %v", served)
		}
		t.Logf("8 requests through the VIP, answered with the row by app node: %v", served)
		return nil
	})
	if err != nil {
		t.Fatalf("app-2 (uWSGI) and app-1 (PHP-FPM) did not both answer: %v", err)
	}
	for _, n := range []string{"web-2", "app-2"} {
		line, err := vms[n].WaitFor(ctx, multiUser)
		if err != nil {
			t.Fatalf("%s did not reach multi-user: %v", n, err)
		}
		if !strings.HasSuffix(strings.TrimSpace(line), "failed units:") {
			t.Errorf("%s: %s", n, line)
		}
	}
	t.Logf("step 2: app-2 (uWSGI) booted and answered through the VIP after %.0fs; web-2 and app-2 reached multi-user, no failed units", time.Since(t1).Seconds())

	// Step 2, the db tier: db-2, a replica, seeds itself from db-1's
	// snapshot, replicates, reports its lag, and the apps' /replica
	// route reads from it (replicaSteps).
	replicaSteps(ctx, t, t2, seg, filepath.Join(seeds, "secrets.yaml"), byName, rec, get)
	line, err := vms["db-2"].WaitFor(ctx, multiUser)
	if err != nil {
		t.Fatalf("db-2 did not reach multi-user: %v", err)
	}
	if !strings.HasSuffix(strings.TrimSpace(line), "failed units:") {
		t.Errorf("db-2: %s", line)
	}
	if strings.Contains(vms["db-2"].Console.String(), "imgforge: making the state file system") {
		t.Errorf("db-2: the initramfs made a state file system; the disk should ship one")
	}
	t.Logf("step 2: db-2 (replica) booted, replicated db-1's write and reached multi-user, no failed units, after %.0fs", time.Since(t2).Seconds())

	// Step 3, with IMGFORGE_E2E_ROLLOUT=1: rollouts of the live
	// cluster (rolloutSteps).
	if rollouts {
		rolloutSteps(ctx, t, seg, filepath.Join(dir, "cluster.yaml"), filepath.Join(seeds, "secrets.yaml"), v2, v3, get, fresh)
	}

	// Step 4: active-active (activeActive).
	activeActive(ctx, t, seg, byName, fresh, get, func(name string) {
		stopMu.Lock()
		stopped[name] = true
		stopMu.Unlock()
		vms[name].Kill()
	})

	// Every node pushed metrics and logs (the stopped lb did while it ran).
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.Address)
	}
	err = eventually(ctx, func() error {
		m, l := rec.seen(addrs)
		if len(m)+len(l) > 0 {
			return fmt.Errorf("no metrics from %v, no logs from %v", m, l)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("monitoring: %v", err)
	}
	t.Logf("monitoring: metrics and logs from all %d nodes", len(addrs))

	// QPS per tier: every lb and web node pushed its request counters
	// (the stopped lb did while it ran).
	err = eventually(ctx, func() error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, n := range nodes {
			for _, name := range tierCounters[n.Role] {
				if !rec.names[n.Address][name] {
					return fmt.Errorf("%s pushed no %s", n.Name, name)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("monitoring: %v", err)
	}
	t.Logf("monitoring: the lb nodes pushed %v, the web nodes %v", tierCounters["lb"], tierCounters["web"])

	// Traces: requests through the VIP with a traceparent of their own,
	// until each app node (PHP and Python) has answered some; the span of
	// each reaches the receiver, forwarded by the agent of the app node
	// that answered it, with the request's trace id.
	traceIDs := map[string]string{} // trace id -> the app node that answered
	answered := map[string]int{}
	for i := 0; i < 40 && (len(traceIDs) < 3 || answered["app-1"] == 0 || answered["app-2"] == 0); i++ {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		id := fmt.Sprintf("%x", b)
		req, _ := http.NewRequest(http.MethodGet, "https://"+clusterVIPs[1]+"/", nil)
		req.Header.Set("traceparent", "00-"+id+"-00f067aa0ba902b7-01")
		resp, err := seg.client("", true, false).Do(req)
		if err != nil {
			t.Fatalf("traces: GET %s: %v", req.URL, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("traces: GET %s: %s", req.URL, resp.Status)
		}
		app := servedBy(string(body))
		if app == "" {
			t.Fatalf("traces: GET %s: %q names no app node", req.URL, body)
		}
		traceIDs[id] = app
		answered[app]++
	}
	if answered["app-1"] == 0 || answered["app-2"] == 0 {
		t.Fatalf("traces: %d requests answered by app node: %v; want both", len(traceIDs), answered)
	}
	err = eventually(ctx, func() error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for id, app := range traceIDs {
			if addr := byName[app].Address; !rec.traces[addr][id] {
				return fmt.Errorf("no span of trace %s from %s (%d trace ids from it so far)", id, app, len(rec.traces[addr]))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("traces: %v", err)
	}
	rec.mu.Lock()
	bad := rec.badAuth
	rec.mu.Unlock()
	if bad > 0 {
		t.Errorf("monitoring: %d pushes with wrong credentials", bad)
	}
	// The agents' own use of their nodes (issue 14 asks for it measured),
	// pushed by the metrics shippers as job "agent".
	rec.mu.Lock()
	var use []string
	for _, n := range nodes {
		rss, ok := rec.agentRSS[n.Address]
		if !ok {
			t.Errorf("monitoring: %s pushed no process_resident_memory_bytes of its agent", n.Name)
			continue
		}
		use = append(use, fmt.Sprintf("%s %.1f MiB %.1fs", n.Name, rss/(1<<20), rec.agentCPU[n.Address]))
	}
	// Only a replica reports its replication (db.yaml's reports are
	// when: {mode: replica}); db-2's were checked in step 2.
	for _, n := range nodes {
		_, lag := rec.replicaLag[n.Address]
		_, running := rec.replicaRunning[n.Address]
		if n.Name != "db-2" && (lag || running) {
			t.Errorf("monitoring: %s, not a replica, pushed imgforge_db_replica_lag_seconds (%v) or imgforge_db_replica_running (%v)", n.Name, lag, running)
		}
	}
	rec.mu.Unlock()
	t.Logf("monitoring: each agent's resident memory and CPU time, last pushed: %s", strings.Join(use, ", "))
	t.Logf("traces: the spans of all %d requests arrived with their trace ids, from the app node that answered each (%v)", len(traceIDs), answered)
}

var servedByRE = regexp.MustCompile(`^hello from the imgforge database \(served by ([a-z0-9-]+)\)`)

// servedBy is the app node named in the default app's answer with the
// database's row, "" for another answer.
func servedBy(body string) string {
	m := servedByRE.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// reply is what a request through the VIP got, its body read and closed.
type reply struct {
	Status, Body, Proto string
	StatusCode          int
	ProtoMajor          int
	Header              http.Header
	Scheme              string // the last request's, after redirects
	TLS                 bool
}

// checkNginx checks, through the VIP, what the web node's nginx does with
// the default app (one web node, so every request meets the same cache):
// plain HTTP is redirected to HTTPS, which carries HSTS and speaks HTTP/2;
// the app's cacheable route (/cached) is a HIT the second time, its
// uncacheable one (/) never; a file under /static/ is kept a year. A few
// requests, no waiting: the VIP has just answered with the database's row.
func checkNginx(t *testing.T, request func(src, url string, follow, h2 bool) (reply, error), vip string) {
	t.Helper()
	host := strings.TrimSuffix(strings.TrimPrefix(vip, "http://"), "/")
	resp, err := request("", vip, false, false)
	switch {
	case err != nil:
		t.Errorf("nginx: %v", err)
	case resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "https://"+host+"/":
		t.Errorf("nginx: GET %s: %s, Location %q; want 301 to https://%s/", vip, resp.Status, resp.Header.Get("Location"), host)
	}

	// The cacheable route: the first answer may be a MISS, the second
	// is the cache's.
	var statuses []string
	for i := range 2 {
		resp, err := request("", vip+"cached", true, false)
		if err != nil {
			t.Errorf("nginx: /cached, request %d: %v", i+1, err)
			return
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Body, "hello from the imgforge database") {
			t.Errorf("nginx: /cached, request %d: %s %q", i+1, resp.Status, resp.Body)
		}
		if !resp.TLS || resp.Scheme != "https" {
			t.Errorf("nginx: /cached, request %d: answered over %s, want HTTPS after the redirect", i+1, resp.Scheme)
		}
		if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
			t.Errorf("nginx: /cached over HTTPS: Strict-Transport-Security %q, want max-age=...", resp.Header.Get("Strict-Transport-Security"))
		}
		statuses = append(statuses, resp.Header.Get("X-Cache-Status")+" (Cache-Control "+resp.Header.Get("Cache-Control")+")")
	}
	if !strings.HasPrefix(statuses[1], "HIT ") {
		t.Errorf("nginx: /cached twice: X-Cache-Status %q, want HIT the second time", statuses)
	}

	// The uncacheable route: the cache is asked (a status), never a HIT.
	for i := range 3 {
		resp, err := request("", vip, true, false)
		if err != nil {
			t.Errorf("nginx: /, request %d: %v", i+1, err)
			return
		}
		if st := resp.Header.Get("X-Cache-Status"); resp.StatusCode != http.StatusOK || st == "" || st == "HIT" {
			t.Errorf("nginx: /, request %d: %s %q, X-Cache-Status %q (Cache-Control %q); want 200 and a status but HIT", i+1, resp.Status, resp.Body, st, resp.Header.Get("Cache-Control"))
		}
	}

	// A static file, over HTTP/2.
	resp, err = request("", "https://"+host+"/static/index.html", true, true)
	switch {
	case err != nil:
		t.Errorf("nginx: /static/index.html: %v", err)
	case resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age=31536000"):
		t.Errorf("nginx: /static/index.html: %s, Cache-Control %q, want max-age=31536000", resp.Status, resp.Header.Get("Cache-Control"))
	case resp.ProtoMajor != 2:
		t.Errorf("nginx: /static/index.html over TLS: %s, want HTTP/2", resp.Proto)
	}
	if !t.Failed() {
		t.Logf("nginx: HTTP redirected to HTTPS with HSTS; /cached %v; / never a HIT; /static/ kept a year, over HTTP/2", statuses)
	}
}
