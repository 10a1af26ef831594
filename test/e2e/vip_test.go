//go:build e2e

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/agent/render"
	"github.com/imgforge/imgforge/pkg/imagemeta"
)

// vipServerEnv makes the test binary an HTTP server on the address it
// names (a stand-in for haproxy) that answers every request with the node
// name, in two parts 100 ms apart.
const vipServerEnv = "IMGFORGE_E2E_VIPSERVER"

// trackProcessRE matches keepalived.conf's process tracking blocks.
var trackProcessRE = regexp.MustCompile(`(?s)\n *(vrrp_)?track_process[^{]*\{[^}]*\}`)

func init() {
	if v := os.Getenv(vipServerEnv); v != "" {
		addr, name, _ := strings.Cut(v, ",")
		// The answer comes in two parts 100 ms apart: the client
		// acknowledges the first while the second is still to come, so a
		// VIP that moves in between sends that acknowledgement to the
		// other lb.
		body := name + "\n" + strings.Repeat(" ", 4000) + "\n"
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			io.WriteString(w, body[:len(body)/2])
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
			io.WriteString(w, body[len(body)/2:])
		})
		// HTTPS too, on port 443 (as web_tls passes TLS through to the
		// web nodes): its handshake takes the client two flights, so a
		// VIP that moves in between sends the second one to the other lb.
		go func() {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				panic(err)
			}
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
			if err != nil {
				panic(err)
			}
			host, _, _ := strings.Cut(addr, ":")
			cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
			// The server's flight comes 100 ms after the client's first,
			// as from a loaded node: the client's second flight is due
			// while the VIP may move.
			srvCfg := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
				time.Sleep(100 * time.Millisecond)
				return cfg, nil
			}}
			srv := &http.Server{Addr: host + ":443", Handler: h, TLSConfig: srvCfg}
			fmt.Fprintln(os.Stderr, srv.ListenAndServeTLS("", ""))
			os.Exit(1)
		}()
		fmt.Fprintln(os.Stderr, http.ListenAndServe(addr, h))
		os.Exit(1)
	}
}

// TestVIPMoves runs the lb role's VRRP setup as the image renders it, with
// the host's keepalived (the version Debian 12 ships, as in the image),
// in network namespaces: two lb nodes on one bridge, each with the image's
// sysctl-vip.conf, and nftables.conf, keepalived.conf and the drain file
// rendered by the agent's renderer from the image's templates (less the
// tracking of the haproxy process), and a stand-in haproxy. Eight clients
// send requests (half over HTTPS, whose handshake the server answers 100 ms
// late; each answered in two parts 100 ms apart, so that some are always
// in flight) to the VIP while lb-1 drains
// (the VIP goes to lb-2) and comes back (it takes the VIP again), three
// times: not one request may fail. The drain must not change
// keepalived.conf. Without the VIPs on lo, or without the nftables rules
// (which pass the stray packets of the other lb's connections on to it),
// the moves break requests in flight.
func TestVIPMoves(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"keepalived", "nft", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (hack/setup.sh installs it)", tool)
		}
	}
	// The machine to itself: keepalived's adverts and the clients'
	// requests must not wait for a core (this test ran alone before the
	// suite's tests were all parallel).
	root := roleRoots(t, nSlots, "lb")["lb"]
	ri, err := imagemeta.ReadRoleInfo(filepath.Join(root, imagemeta.RolePath))
	if err != nil {
		t.Fatal(err)
	}
	r := &render.Renderer{Templates: renderTemplates(root), Current: os.DirFS(root), Rand: rand.Reader, Now: time.Now, Role: &ri}
	seg := newSegment(t, "vip", "10.9.0.1/24")
	var srcs []string
	for i := 50; i < 58; i++ {
		seg.addAddr(t, fmt.Sprintf("10.9.0.%d/24", i))
		srcs = append(srcs, fmt.Sprintf("10.9.0.%d", i))
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	lbs := []render.Node{
		{Name: "lb-1", Role: "lb", Address: netip.MustParseAddr("10.9.0.11")},
		{Name: "lb-2", Role: "lb", Address: netip.MustParseAddr("10.9.0.12")},
	}
	web := render.Node{Name: "web-1", Role: "web", Address: netip.MustParseAddr("10.9.0.21")}
	vip := render.VIP{Address: netip.MustParseAddr("10.9.0.100"), Prefix: 24, Interface: "eth0"}
	type lb struct {
		ns, dir, conf, drain string
	}
	nodes := map[string]*lb{}
	renderLB := func(n render.Node, draining bool) (conf, drain, nft []byte) {
		t.Helper()
		c, err := r.Render(context.Background(), render.Input{Self: n, Members: map[string][]render.Node{"lb": lbs, "web": {web}},
			VIPs: []render.VIP{vip}, Draining: draining, MemoryBytes: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range c.Services {
			for _, f := range s.Files {
				switch f.Path {
				case "/etc/keepalived/keepalived.conf":
					conf = f.Data
				case "/etc/keepalived/drain":
					drain = f.Data
				case "/etc/nftables.conf":
					nft = f.Data
				}
			}
		}
		if conf == nil || drain == nil || nft == nil {
			t.Fatalf("%s: keepalived.conf, the drain file or nftables.conf not rendered (waiting: %v)", n.Name, c.Waiting)
		}
		return conf, drain, nft
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for i, n := range lbs {
		l := &lb{ns: fmt.Sprintf("imgf-vip%d-%d", i+1, os.Getpid()%100000), dir: t.TempDir()}
		nodes[n.Name] = l
		run("ip", "netns", "add", l.ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", l.ns).Run() })
		host, peer := fmt.Sprintf("vip%d-%d", i+1, os.Getpid()%100000), fmt.Sprintf("vipp%d", i+1)
		run("ip", "link", "add", "name", host, "type", "veth", "peer", "name", peer)
		run("ip", "link", "set", host, "netns", seg.ns)
		run("ip", "link", "set", peer, "netns", l.ns)
		run("ip", "-n", seg.ns, "link", "set", host, "master", seg.bridge, "up")
		run("ip", "-n", l.ns, "link", "set", peer, "name", "eth0")
		run("ip", "-n", l.ns, "link", "set", "lo", "up")
		run("ip", "-n", l.ns, "link", "set", "eth0", "up")
		run("ip", "-n", l.ns, "addr", "add", n.Address.String()+"/24", "dev", "eth0")
		// What the image applies at boot.
		run("ip", "netns", "exec", l.ns, "sysctl", "-q", "-p", filepath.Join(root, "etc/sysctl.d/60-imgforge-vip.conf"))
		conf, drain, nft := renderLB(n, false)
		nftFile := filepath.Join(l.dir, "nftables.conf")
		if err := os.WriteFile(nftFile, nft, 0o644); err != nil {
			t.Fatal(err)
		}
		run("ip", "netns", "exec", l.ns, "nft", "-f", nftFile)
		// The stand-in haproxy, on every address.
		srv := exec.Command("ip", "netns", "exec", l.ns, self)
		srv.Env = append(os.Environ(), vipServerEnv+"=:80,"+n.Name)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
		l.drain = filepath.Join(l.dir, "drain")
		l.conf = filepath.Join(l.dir, "keepalived.conf")
		if err := os.WriteFile(l.drain, drain, 0o644); err != nil {
			t.Fatal(err)
		}
		// keepalived tracks haproxy through the kernel's process events,
		// which a network namespace other than the host's does not get:
		// here the instances track no process.
		text := strings.ReplaceAll(string(conf), "/etc/keepalived/drain", l.drain)
		text, n1 := trackProcessRE.ReplaceAllString(text, ""), len(trackProcessRE.FindAllString(text, -1))
		if n1 != 2 {
			t.Fatalf("keepalived.conf: %d process tracking blocks, want 2 (vrrp_track_process and track_process):\n%s", n1, conf)
		}
		if err := os.WriteFile(l.conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		var log syncBuffer
		ka := exec.Command("ip", "netns", "exec", l.ns, "keepalived", "--dont-fork", "--log-console", "--log-detail",
			"--use-file", l.conf, "--pid", filepath.Join(l.dir, "k.pid"), "--vrrp_pid", filepath.Join(l.dir, "v.pid"))
		ka.Stdout, ka.Stderr = &log, &log
		if err := ka.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = ka.Process.Signal(os.Interrupt)
			_ = ka.Wait()
			if t.Failed() {
				t.Logf("%s keepalived:\n%s", n.Name, log.String())
			}
		})
	}
	// drain writes lb-1's drain file as the agent does (a new file
	// renamed over it), from a render with draining set; keepalived.conf
	// must render the same.
	conf1, _, _ := renderLB(lbs[0], false)
	drain := func(on bool) {
		t.Helper()
		conf, d, _ := renderLB(lbs[0], on)
		if string(conf) != string(conf1) {
			t.Fatalf("draining %v changed keepalived.conf", on)
		}
		tmp := nodes["lb-1"].drain + ".new"
		if err := os.WriteFile(tmp, d, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, nodes["lb-1"].drain); err != nil {
			t.Fatal(err)
		}
	}
	// Half the clients ask over HTTPS.
	ask := func(src string) (string, error) {
		url := "http://10.9.0.100/"
		if src[len(src)-1]%2 == 1 {
			url = "https://10.9.0.100/"
		}
		resp, err := seg.client(src, false, false).Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b)), err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	served := func(name string) {
		t.Helper()
		err := eventually(ctx, func() error {
			got, err := ask(srcs[0])
			if err == nil && got != name {
				err = fmt.Errorf("answered by %s", got)
			}
			return err
		})
		if err != nil {
			t.Fatalf("the VIP is not %s's: %v", name, err)
		}
	}
	served("lb-1")

	var (
		mu     sync.Mutex
		sent   int
		failed []string
		by     = map[string]int{}
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	for _, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := ask(src)
				mu.Lock()
				sent++
				if err != nil {
					failed = append(failed, fmt.Sprintf("%s from %s: %v", time.Now().Format("15:04:05.000"), src, err))
				} else {
					by[got]++
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	time.Sleep(2 * time.Second)
	for i := 1; i <= 3; i++ {
		drain(true)
		served("lb-2")
		time.Sleep(2 * time.Second)
		drain(false)
		served("lb-1")
		time.Sleep(2 * time.Second)
		t.Logf("cycle %d: the VIP went to lb-2 and back to lb-1", i)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d requests to the VIP while it moved 6 times: %d failed; answered by %v", sent, len(failed), by)
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed: %s", len(failed), sent, strings.Join(failed[:min(len(failed), 10)], "; "))
	}
	if by["lb-1"] == 0 || by["lb-2"] == 0 {
		t.Errorf("the VIP was not served by both lbs: %v", by)
	}
}
