package agent

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/imgforge/imgforge/pkg/agent/config"
	"github.com/imgforge/imgforge/pkg/agent/discovery"
	"github.com/imgforge/imgforge/pkg/agent/identity"
	metricspkg "github.com/imgforge/imgforge/pkg/agent/metrics"
	"github.com/imgforge/imgforge/pkg/agent/render"
)

const testKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// recorder is a Renderer that keeps every snapshot it was given.
type recorder struct {
	mu    sync.Mutex
	snaps []Snapshot
	fail  error
	seen  chan struct{}
}

func newRecorder() *recorder { return &recorder{seen: make(chan struct{}, 1)} }

func (r *recorder) Render(ctx context.Context, s Snapshot) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.snaps = append(r.snaps, s)
	select {
	case r.seen <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) last() (Snapshot, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.snaps) == 0 {
		return Snapshot{}, 0
	}
	return r.snaps[len(r.snaps)-1], len(r.snaps)
}

// waitRender waits until the renderer's last snapshot satisfies ok.
func (r *recorder) waitRender(t *testing.T, what string, ok func(Snapshot) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.After(30 * time.Second)
	for {
		if s, n := r.last(); n > 0 && ok(s) {
			return time.Since(start)
		}
		select {
		case <-r.seen:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			s, _ := r.last()
			t.Fatalf("timed out waiting for %s; last render had %s", what, describe(s.Members))
		}
	}
}

func describe(s discovery.Set) string {
	var parts []string
	for _, m := range s.All() {
		parts = append(parts, m.Name)
	}
	return strings.Join(parts, " ")
}

func names(ms []discovery.Member) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return strings.Join(out, ",")
}

const gossipPort = 17946

func userData(t *testing.T, role, name string, n int, extra string) string {
	return fmt.Sprintf(`#cloud-config
imgforge:
  cluster: shop
  role: %s
  node: {name: %s, address: 127.0.3.%d/8}
  discovery:
    method: gossip
    gossip: {port: %d, join: [127.0.3.1, 127.0.3.2], key: %q}
%s%s`, role, name, n, gossipPort, testKey, identityBlock(t, shopCA(t), role, name), extra)
}

var (
	shopOnce sync.Once
	shop     *testCA
)

// testCA is a cluster CA for tests.
type testCA struct {
	ca      *identity.CA
	certPEM []byte
}

func newTestCA(t *testing.T, cluster string) *testCA {
	certPEM, keyPEM, err := identity.NewCA(rand.Reader, cluster, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := identity.ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{ca: ca, certPEM: certPEM}
}

// shopCA is the CA of cluster shop, the same for every test.
func shopCA(t *testing.T) *testCA {
	shopOnce.Do(func() { shop = newTestCA(t, "shop") })
	return shop
}

func (c *testCA) issue(t *testing.T, role, name string) (certPEM, keyPEM []byte) {
	certPEM, keyPEM, err := c.ca.Issue(rand.Reader, role, name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

func (c *testCA) node(t *testing.T, role, name string) *identity.Node {
	certPEM, keyPEM := c.issue(t, role, name)
	n, err := identity.ParseNode(c.certPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// identityBlock is the identity: section for a node, as imgforge seed writes it.
func identityBlock(t *testing.T, c *testCA, role, name string) string {
	certPEM, keyPEM := c.issue(t, role, name)
	ind := func(b []byte) string {
		return "      " + strings.ReplaceAll(strings.TrimSpace(string(b)), "\n", "\n      ") + "\n"
	}
	return "  identity:\n    ca: |\n" + ind(c.certPEM) + "    cert: |\n" + ind(certPEM) + "    key: |\n" + ind(keyPEM)
}

func roleExtra(role string, n int) string {
	switch role {
	case "lb":
		return fmt.Sprintf("  vips: [{address: 127.0.3.%d, prefix: 8, interface: lo}]\n", 200+n)
	case "app":
		return "  database: {user: shop, password: app-password}\n"
	case "db":
		return "  database: {user: shop, password: app-password, replication_user: repl, replication_password: repl-password}\n"
	}
	return ""
}

type node struct {
	name   string
	agent  *Agent
	rec    *recorder
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t *testing.T, role, name string, n int) *node {
	t.Helper()
	ud := userData(t, role, name, n, roleExtra(role, n))
	rec := newRecorder()
	snapFile := &SnapshotFile{Path: filepath.Join(t.TempDir(), "snapshot.json")}
	ri := repoRole(t, role)
	a := New(Options{
		// As the daemon loads: the settings, checked against and
		// completed from the image's role.json.
		Load: func() (*config.Config, error) {
			c, src, err := config.Parse("user-data", []byte(ud))
			if err != nil {
				return nil, err
			}
			if err := c.Complete(src, config.InstanceData{InstanceID: name}, nil); err != nil {
				return nil, err
			}
			if err := CheckRole(c, *ri); err != nil {
				return nil, err
			}
			CompleteFromRole(c, *ri)
			return c, nil
		},
		Renderer: Renderers{rec, snapFile},
		Debounce: 50 * time.Millisecond,
		Logf:     func(f string, args ...any) { t.Logf(name+": "+f, args...) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	nd := &node{name: name, agent: a, rec: rec, cancel: cancel, done: make(chan error, 1)}
	go func() { nd.done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-nd.done:
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(nd.stop)
	return nd
}

func (n *node) stop() {
	n.cancel()
	<-n.done
	n.done <- nil // later stops return at once
}

func TestMultiAgentGossip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 9 gossip agents on loopback (a few seconds)")
	}
	layout := []struct {
		role string
		n    int
	}{{"lb", 2}, {"web", 3}, {"app", 2}, {"db", 1}}
	nodes := map[string]*node{}
	i := 1
	for _, l := range layout {
		for k := 1; k <= l.n; k++ {
			name := fmt.Sprintf("%s-%d", l.role, k)
			nodes[name] = startAgent(t, l.role, name, i)
			i++
		}
	}
	full := func(s Snapshot) bool {
		m := s.Members
		return names(m.Role("lb")) == "lb-1,lb-2" && names(m.Role("web")) == "web-1,web-2,web-3" &&
			names(m.Role("app")) == "app-1,app-2" && names(m.Role("db")) == "db-1"
	}
	for name, nd := range nodes {
		nd.rec.waitRender(t, name+" sees the whole cluster", full)
	}
	if s, _ := nodes["db-1"].rec.last(); s.Self.Mode != "primary" || s.Members.Role("db")[0].Mode != "primary" {
		t.Errorf("db-1 is not advertised as the primary: %+v", s.Members.Role("db"))
	}

	// A new web node: both lb renders get it.
	start := time.Now()
	web4 := startAgent(t, "web", "web-4", 20)
	for _, lb := range []string{"lb-1", "lb-2"} {
		nodes[lb].rec.waitRender(t, lb+" renders web-4", func(s Snapshot) bool { return names(s.Members.Role("web")) == "web-1,web-2,web-3,web-4" })
	}
	t.Logf("web-4 in both lb renders %v after it started", time.Since(start).Round(time.Millisecond))

	// It stops: both lb renders drop it.
	start = time.Now()
	web4.stop()
	for _, lb := range []string{"lb-1", "lb-2"} {
		nodes[lb].rec.waitRender(t, lb+" drops web-4", func(s Snapshot) bool { return names(s.Members.Role("web")) == "web-1,web-2,web-3" })
	}
	t.Logf("web-4 gone from both lb renders %v after it stopped", time.Since(start).Round(time.Millisecond))

	// Forged and malformed members are not rendered: each holds the
	// gossip key, and none can prove with a certificate from the cluster
	// CA the name and role it claims.
	key, _ := config.DecodeGossipKey(testKey)
	forge := func(name, ip string, meta []byte, key []byte) error {
		c := discovery.LANConfig()
		c.Name, c.BindAddr, c.AdvertiseAddr, c.BindPort, c.AdvertisePort = name, ip, ip, gossipPort, gossipPort
		c.SecretKey, c.Label = key, "imgforge/shop"
		c.Delegate = rawMeta(meta)
		c.Logger = log.New(io.Discard, "", 0)
		ml, err := memberlist.Create(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ml.Shutdown() })
		_, err = ml.Join([]string{fmt.Sprintf("127.0.3.1:%d", gossipPort)})
		return err
	}
	meta := func(role string, id *identity.Node, ip string) []byte {
		b, err := discovery.EncodeMeta(id, discovery.Meta{Role: role, Address: netip.MustParseAddr(ip), Port: gossipPort, Healthy: true})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	webMeta := func(id *identity.Node, ip string) []byte { return meta("web", id, ip) }
	otherCA, otherCluster := newTestCA(t, "shop"), newTestCA(t, "shop2")
	// A stolen web-1 identity, signing as web-63.
	asOther := shopCA(t).node(t, "web", "web-1")
	asOther.Name = "web-63"
	badSig := webMeta(shopCA(t).node(t, "web", "web-65"), "127.0.3.65")
	badSig[len(badSig)-1] ^= 1
	forgeries := map[string][]byte{
		"web-60": []byte(`{"c":"shop","r":"web","a":"127.0.3.60","h":true}`),    // no certificate (the old metadata)
		"web-61": webMeta(otherCA.node(t, "web", "web-61"), "127.0.3.61"),       // another CA
		"web-62": webMeta(otherCluster.node(t, "web", "web-62"), "127.0.3.62"),  // another cluster
		"web-63": webMeta(asOther, "127.0.3.63"),                                // a stolen web-1 identity signing as web-63
		"web-64": meta("app", shopCA(t).node(t, "app", "web-64"), "127.0.3.64"), // a stolen app identity: the envelope has no role, so it is an app member, never a web backend
		"web-65": badSig,                                                        // a bad signature
		"web-66": []byte(`{"c":"shop","r":"web","a":"not-an-address","h":true}`),
	}
	for name, meta := range forgeries {
		_ = forge(name, "127.0.3."+strings.TrimPrefix(name, "web-"), meta, key)
	}
	if err := forge("web-68", "127.0.3.68", webMeta(shopCA(t).node(t, "web", "web-68"), "127.0.3.68"), []byte("ffffffffffffffffffffffffffffffff")); err == nil {
		t.Error("a member with the wrong key joined")
	}
	// A good member joining after them proves gossip went round.
	startAgent(t, "web", "web-5", 21)
	for _, lb := range []string{"lb-1", "lb-2"} {
		nodes[lb].rec.waitRender(t, lb+" renders web-5", func(s Snapshot) bool {
			return strings.Contains(names(s.Members.Role("web")), "web-5")
		})
		nodes[lb].rec.mu.Lock()
		snaps := slices.Clone(nodes[lb].rec.snaps)
		nodes[lb].rec.mu.Unlock()
		for _, s := range snaps {
			for _, m := range s.Members.All() {
				if _, forged := forgeries[m.Name]; forged && (m.Name != "web-64" || m.Role != "app") || m.Name == "web-68" {
					t.Errorf("%s rendered forged member %+v", lb, m)
				}
			}
			in, err := RenderInput(s, 0, repoRole(t, "lb"))
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range in.Members["web"] {
				if _, forged := forgeries[n.Name]; forged || !strings.HasPrefix(n.Address.String(), "127.0.3.") || n.Address.As4()[3] >= 60 && n.Address.As4()[3] <= 68 {
					t.Errorf("%s's haproxy backends include forged member %+v", lb, n)
				}
			}
		}
	}

	// The status endpoint of lb-1 shows the members and the snapshot file.
	srv := httptest.NewServer(nodes["lb-1"].agent.Handler())
	defer srv.Close()
	var st Status
	getJSON(t, srv.URL+"/status", &st)
	if st.Role != "lb" || st.Node.Name != "lb-1" || len(st.Members.Role("web")) != 4 || len(st.Files) != 1 || len(st.Files[0].SHA256) != 64 || st.Renders == 0 {
		t.Errorf("status %+v", st)
	}
	metrics := get(t, srv.URL+"/metrics")
	for _, want := range []string{
		`imgforge_agent_info{cluster="shop",role="lb",node="lb-1",discovery="gossip",version=""} 1`,
		`imgforge_agent_members{role="web"} 4`,
		`imgforge_agent_members{role="lb"} 2`,
		`imgforge_agent_rendered_files 1`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	// The agent's own use of the node: this test process's, here.
	for _, re := range []string{`(?m)^process_resident_memory_bytes [1-9][0-9]{5,}$`, `(?m)^process_cpu_seconds_total [0-9.]+$`, `(?m)^go_memstats_heap_inuse_bytes [1-9][0-9]*$`, `(?m)^go_goroutines [1-9][0-9]*$`} {
		if !regexp.MustCompile(re).MatchString(metrics) {
			t.Errorf("metrics lack %s:\n%s", re, metrics)
		}
	}
	// All of it parses as the shipper parses it.
	if _, err := metricspkg.Decode(strings.NewReader(metrics), 0); err != nil {
		t.Errorf("the metrics do not parse: %v", err)
	}
}

type rawMeta []byte

func (d rawMeta) NodeMeta(int) []byte                  { return []byte(d) }
func (rawMeta) NotifyMsg([]byte)                       {}
func (rawMeta) GetBroadcasts(int, int) [][]byte        { return nil }
func (rawMeta) LocalState(bool) []byte                 { return nil }
func (rawMeta) MergeRemoteState(buf []byte, join bool) {}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(get(t, url)), v); err != nil {
		t.Fatal(err)
	}
}

func staticUserData(members string) string {
	return `#cloud-config
imgforge:
  cluster: shop
  role: web
  node: {name: web-1, address: 10.0.0.21/24}
  discovery:
    method: static
    static:
      members:
` + members
}

func TestInvalidSettingsTouchNothing(t *testing.T) {
	rec := newRecorder()
	a := New(Options{
		Load: func() (*config.Config, error) {
			c, _, err := config.Parse("user-data", []byte(staticUserData("        - {name: app-1, role: ca_che, address: 10.0.0.31}\n")))
			return c, err
		},
		Renderer: rec,
	})
	err := a.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), `user-data:10:31: field "imgforge.discovery.static.members[0].role": "ca_che" is not a role name`) {
		t.Fatalf("got %v", err)
	}
	if _, n := rec.last(); n != 0 {
		t.Errorf("rendered %d times with invalid settings", n)
	}
	if st := a.Status(); st.ConfigErrors != 1 {
		t.Errorf("config errors %d", st.ConfigErrors)
	}
}

func TestReloadKeepsLastGood(t *testing.T) {
	var mu sync.Mutex
	ud := staticUserData("        - {name: app-1, role: app, address: 10.0.0.31}\n")
	setUD := func(s string) { mu.Lock(); ud = s; mu.Unlock() }
	rec := newRecorder()
	var logs []string
	var logMu sync.Mutex
	a := New(Options{
		Load: func() (*config.Config, error) {
			mu.Lock()
			defer mu.Unlock()
			c, src, err := config.Parse("user-data", []byte(ud))
			if err != nil {
				return nil, err
			}
			return c, c.Complete(src, config.InstanceData{InstanceID: "i"}, nil)
		},
		Renderer: rec,
		Logf:     func(f string, a ...any) { logMu.Lock(); logs = append(logs, fmt.Sprintf(f, a...)); logMu.Unlock() },
		Debounce: 10 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	rec.waitRender(t, "first render", func(s Snapshot) bool { return names(s.Members.Role("app")) == "app-1" })
	first, _ := rec.last()

	setUD(strings.Replace(ud, "web-1", "Web_1", 1))
	a.Reload()
	waitFor(t, "the config error", func() bool { return a.Status().ConfigErrors == 1 })
	if st := a.Status(); !strings.Contains(st.LastError, `field "imgforge.node.name": "Web_1" is not a node name`) || st.Node.Name != "web-1" {
		t.Errorf("status after a bad reload: %+v", st)
	}
	if s, n := rec.last(); n != 1 || s.Config != first.Config {
		t.Errorf("a bad reload rendered (%d renders)", n)
	}

	// A valid change that needs no restart is applied and rendered.
	setUD(staticUserData("        - {name: app-1, role: app, address: 10.0.0.31}\n") + "  tls: self-signed\n")
	a.Reload()
	rec.waitRender(t, "the reloaded settings", func(s Snapshot) bool { return s.Config.TLS != nil && s.Config.TLS.SelfSigned })

	// Changing discovery needs a restart: kept as it was.
	setUD(staticUserData("        - {name: app-2, role: app, address: 10.0.0.32}\n"))
	a.Reload()
	waitFor(t, "the refusal", func() bool { return a.Status().ConfigErrors == 2 })
	if s, _ := rec.last(); names(s.Members.Role("app")) != "app-1" {
		t.Errorf("members changed without a restart: %v", describe(s.Members))
	}
	// So does changing the identity (gossip runs with the one it started with).
	setUD(staticUserData("        - {name: app-1, role: app, address: 10.0.0.31}\n") + "  tls: self-signed\n" + identityBlock(t, shopCA(t), "web", "web-1"))
	a.Reload()
	waitFor(t, "the refusal of another identity", func() bool { return a.Status().ConfigErrors == 3 })
	if st := a.Status(); !strings.Contains(st.LastError, "change the node, cluster, discovery or identity") {
		t.Errorf("last error %q", st.LastError)
	}
	logMu.Lock()
	for _, l := range logs {
		if strings.Contains(l, "\n") {
			t.Errorf("multi-line log %q", l)
		}
	}
	logMu.Unlock()
}

func TestRenderErrorRetries(t *testing.T) {
	rec := newRecorder()
	rec.fail = errors.New("haproxy -c: config invalid")
	a := New(Options{
		Load: func() (*config.Config, error) {
			c, src, err := config.Parse("user-data", []byte(staticUserData("        - {name: app-1, role: app, address: 10.0.0.31}\n")))
			if err != nil {
				return nil, err
			}
			return c, c.Complete(src, config.InstanceData{InstanceID: "i"}, nil)
		},
		Renderer:      rec,
		RetryInterval: 20 * time.Millisecond,
		Debounce:      time.Millisecond,
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "two failed renders", func() bool { return a.Status().RenderErrors >= 2 })
	if st := a.Status(); st.LastError != "rendering: haproxy -c: config invalid" || st.Renders != 0 {
		t.Errorf("status %+v", st)
	}
	rec.mu.Lock()
	rec.fail = nil
	rec.mu.Unlock()
	rec.waitRender(t, "a render after the failure", func(Snapshot) bool { return true })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSnapshotFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "run", "snapshot.json")
	tick := time.Unix(1700000000, 0)
	f := &SnapshotFile{Path: p, Now: func() time.Time { return tick }}
	c, _, err := config.Parse("user-data", []byte(staticUserData("        - {name: app-1, role: app, address: 10.0.0.31}\n")+identityBlock(t, shopCA(t), "web", "web-1")))
	if err != nil {
		t.Fatal(err)
	}
	c.Discovery.Static.Members[0].Name = "app-1"
	s := Snapshot{Config: c, Self: discovery.Member{Name: "web-1", Role: "web"}, Members: discovery.Set{}}
	if err := f.Render(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	r1 := f.Report()
	tick = tick.Add(time.Hour)
	if err := f.Render(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	if r2 := f.Report(); r2.Files[0] != r1.Files[0] {
		t.Errorf("an unchanged render changed the report: %+v %+v", r1, r2)
	}
	b, _ := os.ReadFile(p)
	if strings.Contains(string(b), testKey) || strings.Contains(string(b), "PRIVATE KEY") || !strings.Contains(string(b), `"role": "web"`) || !strings.Contains(string(b), `"subject": "CN=web-1,OU=web"`) {
		t.Errorf("snapshot file:\n%s", b)
	}
}

type retryErr struct{ after time.Duration }

func (e retryErr) Error() string             { return "reload failed" }
func (e retryErr) RetryAfter() time.Duration { return e.after }

// TestRetryAfterAndResync: a renderer's error says when to retry (here
// sooner than RetryInterval), and Resync renders again without a change.
func TestRetryAfterAndResync(t *testing.T) {
	load := func() (*config.Config, error) {
		c, src, err := config.Parse("user-data", []byte(staticUserData("        - {name: app-1, role: app, address: 10.0.0.31}\n")))
		if err != nil {
			return nil, err
		}
		return c, c.Complete(src, config.InstanceData{InstanceID: "i"}, nil)
	}
	var mu sync.Mutex
	calls := 0
	a := New(Options{
		Load: load,
		Renderer: RendererFunc(func(context.Context, Snapshot) error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			return fmt.Errorf("applying: %w", retryErr{after: time.Millisecond})
		}),
		RetryInterval: time.Hour,
		Debounce:      time.Millisecond,
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	waitFor(t, "retries paced by RetryAfter, not RetryInterval", func() bool { return a.Status().RenderErrors >= 3 })
	cancel()
	<-done

	renders := 0
	a = New(Options{
		Load: load,
		Renderer: RendererFunc(func(context.Context, Snapshot) error {
			mu.Lock()
			defer mu.Unlock()
			renders++
			return nil
		}),
		Resync:   time.Millisecond,
		Debounce: time.Millisecond,
	})
	ctx, cancel = context.WithCancel(t.Context())
	go func() { done <- a.Run(ctx) }()
	waitFor(t, "renders without a change", func() bool { mu.Lock(); defer mu.Unlock(); return renders >= 3 })
	cancel()
	<-done
}

// TestCompleteFromRole: the mode a db node advertises comes from its
// role's data (the mode option's default, the image's choice), not from
// the agent's code; the user-data's choice wins.
func TestCompleteFromRole(t *testing.T) {
	db := repoRole(t, "db")
	for _, tt := range []struct {
		name    string
		options map[string]string
		def     string
		want    string
	}{
		{"default", nil, "primary", "primary"},
		{"image built as replica", nil, "replica", "replica"},
		{"user-data", map[string]string{"mode": "replica"}, "primary", "replica"},
	} {
		ri := *db
		ri.BootOptions = slices.Clone(ri.BootOptions)
		ri.BootOptions[0].Default = tt.def
		ri.Options = map[string]string{"mode": tt.def}
		c := &config.Config{Role: "db", Options: tt.options, Node: config.Node{Name: "db-2", Address: "10.0.0.42/24"},
			Database: &config.Database{User: "shop", Password: "app-password-1", ReplicationUser: "repl", ReplicationPassword: "repl-password-1"}}
		if err := CheckRole(c, ri); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		CompleteFromRole(c, ri)
		if self, err := SelfMember(c, true); err != nil || self.Mode != tt.want {
			t.Errorf("%s: self %+v, %v: want it to advertise %s", tt.name, self, err, tt.want)
		}
	}
	web := repoRole(t, "web")
	c := &config.Config{Role: "web", Node: config.Node{Name: "web-1", Address: "10.0.0.21/24"}}
	CompleteFromRole(c, *web)
	if self, err := SelfMember(c, true); err != nil || self.Mode != "" || c.Options["runtime"] != "php-fpm" {
		t.Errorf("web: self %+v, options %v, %v: want no mode and the runtime's default", self, c.Options, err)
	}
}

// The metrics shipper scrapes the agent where it listens.
func TestAgentMetricsURL(t *testing.T) {
	if want := "http://" + DefaultListen + "/metrics"; render.AgentMetricsURL != want {
		t.Errorf("render.AgentMetricsURL = %s, want %s", render.AgentMetricsURL, want)
	}
}
