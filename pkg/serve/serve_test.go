package serve

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
)

// testRoot makes a root with the PXE sets of lb and web, a root image of
// size bytes of random data in lb's, a secret file beside the root and
// a symbolic link from lb's set to it. It returns the root and the
// sha256 of lb's root image.
func testRoot(t *testing.T, size int) (string, [32]byte) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "out")
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"lb", "web"} {
		pxe := filepath.Join(root, role, "pxe")
		if err := os.MkdirAll(pxe, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{"boot.ipxe": []byte("#!ipxe\necho " + role + "\n"), "vmlinuz": []byte("kernel " + role), "root.img": data} {
			if err := os.WriteFile(filepath.Join(pxe, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Not a PXE set: no boot.ipxe.
	if err := os.MkdirAll(filepath.Join(root, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secret"), []byte("SECRET-OUTSIDE-THE-ROOT"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "lb", "lb.raw"), []byte("SECRET-NOT-A-PXE-FILE"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The output folder's manifest and overlay are served with the set.
	if err := os.WriteFile(filepath.Join(root, "lb", "manifest.json"), []byte(`{"role":"lb"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "web", "overlay.cpio"), []byte("070701 web overlay"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "secret"), filepath.Join(root, "lb", "pxe", "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../secret", filepath.Join(root, "lb", "pxe", "escape-rel")); err != nil {
		t.Fatal(err)
	}
	return root, sha256.Sum256(data)
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start serves cfg on loopback until the test ends, and checks that
// the server then stops cleanly.
func start(t *testing.T, cfg Config) (*Server, *logBuffer) {
	t.Helper()
	log := &logBuffer{}
	cfg.Log = log
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	s, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("the server did not stop")
		}
	})
	return s, log
}

// reply is what get keeps of a response.
type reply struct {
	StatusCode int
	Status     string
	Header     http.Header
}

func get(t *testing.T, url string, hdr ...string) (reply, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Status, resp.Header}, b
}

func writeMachines(t *testing.T, root, text string) string {
	t.Helper()
	p := filepath.Join(root, MachinesFile)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMachineScripts(t *testing.T) {
	root, _ := testRoot(t, 4096)
	seedDir := filepath.Join(root, "seeds", "web-1")
	os.MkdirAll(seedDir, 0o755)
	os.WriteFile(filepath.Join(seedDir, "meta-data"), []byte("instance-id: web-1\n"), 0o644)
	os.WriteFile(filepath.Join(seedDir, "user-data"), []byte("#cloud-config\nhostname: web-1\n"), 0o644)
	m, err := LoadMachines(writeMachines(t, root, `
machines:
  - mac: 52:54:00:00:00:01
    role: lb
    hostname: lb-1
  - mac: 52-54-00-00-00-02
    role: web
    seed: seeds/web-1
`), root)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := start(t, Config{Root: root, Machines: m})
	base := "http://" + s.HTTPAddr().String()

	tests := []struct {
		path   string
		status int
		want   []string
	}{
		{"/boot.ipxe", 200, []string{"#!ipxe", "chain machines/${netX/mac:hexhyp}.ipxe"}},
		{"/machines/52-54-00-00-00-01.ipxe", 200, []string{
			"set imgforge-base " + base + "/sets/lb/\n",
			"set imgforge-args ds=nocloud-net;s=" + base + "/seed/52-54-00-00-00-01/\n",
			"chain ${imgforge-base}boot.ipxe",
		}},
		{"/machines/52-54-00-00-00-02.ipxe", 200, []string{"set imgforge-base " + base + "/sets/web/\n"}},
		// The machine's entry wins over a role asked for.
		{"/machines/52-54-00-00-00-02.ipxe?role=lb", 200, []string{"/sets/web/\n"}},
		// An unknown MAC without a default gets a menu of the sets.
		{"/machines/52-54-00-00-00-99.ipxe", 200, []string{"menu imgforge: machine 52:54:00:00:00:99 is unknown", "item lb lb\nitem web web\n", "chain 52-54-00-00-00-99.ipxe?role=${role}"}},
		{"/machines/52-54-00-00-00-99.ipxe?role=web", 200, []string{"/sets/web/\n", "/seed/52-54-00-00-00-99/"}},
		{"/machines/52-54-00-00-00-99.ipxe?role=db", 404, []string{`role "db" has no PXE set`}},
		{"/machines/52:54:00:00:00:01.ipxe", 404, nil},
		{"/machines/01-00-5e.ipxe", 404, nil},
		{"/seed/52-54-00-00-00-01/meta-data", 200, []string{`instance-id: "imgforge-525400000001"`, `local-hostname: "lb-1"`}},
		{"/seed/52-54-00-00-00-01/user-data", 200, []string{"#cloud-config"}},
		{"/seed/52-54-00-00-00-01/vendor-data", 200, nil},
		{"/seed/52-54-00-00-00-01/network-config", 404, nil},
		{"/seed/52-54-00-00-00-02/meta-data", 200, []string{"instance-id: web-1"}},
		{"/seed/52-54-00-00-00-02/user-data", 200, []string{"hostname: web-1"}},
		{"/seed/52-54-00-00-00-77/meta-data", 200, []string{`local-hostname: "node-000077"`}},
		{"/seed/52-54-00-00-00-02/../../lb/lb.raw", 404, nil},
		{"/sets/web/boot.ipxe", 200, []string{"echo web"}},
		{"/sets/lb/manifest.json", 200, []string{`{"role":"lb"}`}},
		{"/sets/web/overlay.cpio", 200, []string{"web overlay"}},
		{"/sets/web/manifest.json", 404, nil},
		{"/sets/lb/lb.raw", 404, nil},
		{"/nothing", 404, nil},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, base+tt.path)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(body), w) {
					t.Errorf("body lacks %q:\n%s", w, body)
				}
			}
		})
	}
}

func TestDefaultRole(t *testing.T) {
	root, _ := testRoot(t, 4096)
	m, err := LoadMachines(writeMachines(t, root, "default: web\n"), root)
	if err != nil {
		t.Fatal(err)
	}
	s, log := start(t, Config{Root: root, Machines: m, URL: "http://192.0.2.1:8080/"})
	resp, body := get(t, "http://"+s.HTTPAddr().String()+"/machines/52-54-00-ab-cd-ef.ipxe")
	if resp.StatusCode != 200 || !strings.Contains(string(body), "set imgforge-base http://192.0.2.1:8080/sets/web/\n") {
		t.Fatalf("%s: %s", resp.Status, body)
	}
	_, body = get(t, "http://"+s.HTTPAddr().String()+"/seed/52-54-00-ab-cd-ef/meta-data")
	if !strings.Contains(string(body), `local-hostname: "web-abcdef"`) {
		t.Errorf("seed of an unknown machine: %s", body)
	}
	if !strings.Contains(log.String(), "machine 52:54:00:ab:cd:ef boots role web (not in the machines file)") {
		t.Errorf("log:\n%s", log)
	}
}

// rawGet sends a request line as it is, without a client's cleaning.
func rawGet(t *testing.T, addr, target string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestPathTraversal(t *testing.T) {
	root, _ := testRoot(t, 4096)
	s, log := start(t, Config{Root: root})
	addr := s.HTTPAddr().String()
	for _, target := range []string{
		"/sets/../../secret",
		"/sets/lb/../../../secret",
		"/sets/lb/..%2f..%2f..%2fsecret",
		"/sets/lb/%2e%2e/%2e%2e/%2e%2e/secret",
		"/sets/lb%2f..%2f..%2fsecret/x",
		"/sets/..%2flb/lb.raw",
		"/sets/lb/..%2flb.raw",
		"/sets/lb/escape",     // a symbolic link out of the root
		"/sets/lb/escape-rel", // a relative one
		"/sets/lb/%2fetc%2fpasswd",
		"/sets/lb//etc/passwd",
		"/sets/lb/pxe/../lb.raw",
		"/sets/%2e%2e/secret",
		"/sets/lb/..\\..\\..\\secret",
		"/seed/..%2f..%2fsecret/meta-data",
		"/machines/..%2f..%2fsecret",
		"//secret",
		"/../secret",
		"http://x/../../secret",
	} {
		code, body := rawGet(t, addr, target)
		if code == 200 || strings.Contains(body, "SECRET") {
			t.Errorf("GET %s: %d %q", target, code, body)
		}
	}
	// What the root does hold is served.
	if code, body := rawGet(t, addr, "/sets/lb/vmlinuz"); code != 200 || body != "kernel lb" {
		t.Errorf("GET /sets/lb/vmlinuz: %d %q", code, body)
	}
	if !strings.Contains(log.String(), "refused /sets/lb/escape: ") {
		t.Errorf("the symbolic link out of the root was not logged as refused:\n%s", log)
	}
}

func TestHeadAndRange(t *testing.T) {
	root, sum := testRoot(t, 1<<20)
	s, log := start(t, Config{Root: root})
	url := "http://" + s.HTTPAddr().String() + "/sets/lb/root.img"
	resp, err := http.Head(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != 1<<20 || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("HEAD: %s, length %d, Accept-Ranges %q", resp.Status, resp.ContentLength, resp.Header.Get("Accept-Ranges"))
	}
	// The file in four ranges, put together, is the file.
	var whole []byte
	for _, r := range []string{"0-99999", "100000-500000", "500001-1048574", "1048575-"} {
		resp, body := get(t, url, "Range", "bytes="+r)
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("range %s: %s", r, resp.Status)
		}
		whole = append(whole, body...)
	}
	if sha256.Sum256(whole) != sum {
		t.Error("the ranges put together are not the file")
	}
	suffix, body := get(t, url, "Range", "bytes=-10")
	if suffix.StatusCode != http.StatusPartialContent || len(body) != 10 || suffix.Header.Get("Content-Range") != "bytes 1048566-1048575/1048576" {
		t.Errorf("suffix range: %s %q, %d bytes", suffix.Status, suffix.Header.Get("Content-Range"), len(body))
	}
	if past, _ := get(t, url, "Range", "bytes=2000000-"); past.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("range past the end: %s", past.Status)
	}
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Error(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST: %s", resp.Status)
		}
	}
	if !strings.Contains(log.String(), "GET /sets/lb/root.img bytes=0-99999 206 100000 ") || !strings.Contains(log.String(), "HEAD /sets/lb/root.img 200 0 ") {
		t.Errorf("request log:\n%s", log)
	}
}

// TestManyClients has 20 clients download the root image at once and
// checks every copy.
func TestManyClients(t *testing.T) {
	size := 64 << 20
	if testing.Short() {
		size = 16 << 20
	}
	root, sum := testRoot(t, size)
	s, _ := start(t, Config{Root: root})
	url := "http://" + s.HTTPAddr().String() + "/sets/lb/root.img"
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{}} // a connection each
			resp, err := c.Get(url)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			if err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			if n != int64(size) || [32]byte(h.Sum(nil)) != sum {
				errs <- fmt.Errorf("client %d: got %d bytes with another digest", i, n)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestShutdownLetsTransfersFinish cancels the server while a client
// reads slowly: the download completes, new connections are refused.
func TestShutdownLetsTransfersFinish(t *testing.T) {
	root, sum := testRoot(t, 8<<20)
	log := &logBuffer{}
	s, err := Listen(Config{Root: root, HTTPAddr: "127.0.0.1:0", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	resp, err := http.Get("http://" + s.HTTPAddr().String() + "/sets/lb/root.img")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	cancel()
	time.Sleep(200 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", s.HTTPAddr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the server still takes connections after its context ended")
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the running download broke: %v", err)
	}
	if sha256.Sum256(append(first, rest...)) != sum {
		t.Error("the running download is not the file")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return")
	}
	if !strings.Contains(log.String(), "shutting down") || !strings.Contains(log.String(), "stopped") {
		t.Errorf("log:\n%s", log)
	}
}

func TestTFTP(t *testing.T) {
	root, _ := testRoot(t, 300_000)
	loaders := t.TempDir()
	os.WriteFile(filepath.Join(loaders, "ipxe.efi"), []byte("MZ fake loader"), 0o644)
	os.WriteFile(filepath.Join(filepath.Dir(loaders), "outside.efi"), []byte("SECRET"), 0o644)
	s, log := start(t, Config{Root: root, TFTPAddr: "127.0.0.1:0", Loaders: loaders})
	c, fetch := tftpFetch(t, s.TFTPAddr().String())
	if b, err := fetch("ipxe.efi"); err != nil || string(b) != "MZ fake loader" {
		t.Errorf("ipxe.efi: %q %v", b, err)
	}
	if b, err := fetch("autoexec.ipxe"); err != nil || !strings.Contains(string(b), "chain http://127.0.0.1:"+fmt.Sprint(s.HTTPAddr().(*net.TCPAddr).Port)+"/boot.ipxe") {
		t.Errorf("autoexec.ipxe: %q %v", b, err)
	}
	if b, err := fetch("lb/pxe/root.img"); err != nil || len(b) != 300_000 {
		t.Errorf("lb/pxe/root.img: %d bytes, %v", len(b), err)
	}
	for _, name := range []string{"../outside.efi", "/../outside.efi", "lb/pxe/escape", "lb/lb.raw", "lb/pxe/../lb.raw", "../../secret", "nothing.efi"} {
		if b, err := fetch(name); err == nil {
			t.Errorf("%s was served: %q", name, b)
		}
	}
	// Writes are refused.
	if rf, err := c.Send("upload", "octet"); err == nil {
		if _, err := rf.ReadFrom(strings.NewReader("x")); err == nil {
			t.Error("a TFTP write was accepted")
		}
	}
	if !strings.Contains(log.String(), "tftp 127.0.0.1 ipxe.efi sent") {
		t.Errorf("log:\n%s", log)
	}
}

func TestLoadMachinesErrors(t *testing.T) {
	root, _ := testRoot(t, 16)
	tests := []struct{ text, want string }{
		{"default: db\n", `machines.yaml:1:10: field "default": role "db" has no PXE set; accepted: the PXE sets under ` + root + `: lb, web`},
		{"machines:\n  - mac: 52:54:00:00:00:01\n    role: lb\n  - mac: 52:54:00:00:00:01\n    role: web\n", `machines.yaml:4:10: field "machines[1].mac": 52:54:00:00:00:01 is listed twice (also for role lb)`},
		{"machines:\n  - mac: 01:00:5e:00:00:01\n    role: lb\n", `machines.yaml:2:10: field "machines[0].mac": "01:00:5e:00:00:01" is not a unicast Ethernet address`},
		{"machines:\n  - mac: nonsense\n    role: lb\n", `field "machines[0].mac": "nonsense" is not a unicast`},
		{"machines:\n  - mac: 52:54:00:00:00:01\n", `machines.yaml:2:5: field "machines[0]": no role; accepted: the PXE sets under`},
		{"machines:\n  - mac: 52:54:00:00:00:01\n    role: web\n    seed: nowhere\n", `machines.yaml:4:11: field "machines[0].seed": folder ` + root + `/nowhere has no meta-data`},
		{"machines:\n  - mac: 52:54:00:00:00:01\n    role: web\n    hostname: -x\n", `field "machines[0].hostname": "-x" is not a host name`},
		{"machines:\n  - mac: 52:54:00:00:00:01\n    rol: web\n", `machines.yaml:3:5: field "machines[0].rol": unknown field in machines[0]; accepted: hostname, mac, role, seed`},
		{"defaults: lb\n", `field "defaults": unknown field here; accepted: default, machines`},
	}
	for _, tt := range tests {
		_, err := LoadMachines(writeMachines(t, root, tt.text), root)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v\nwant one containing %q", tt.text, err, tt.want)
		}
	}
}

// fakeLoaders is a loaders folder with one made-up ipxe.efi, for tests
// that do not look at the loaders.
func fakeLoaders(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, EFILoader), []byte("MZ fake loader"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTFTPDebianLoaders serves the loaders of Debian's ipxe package as
// they are installed: on Debian 12 /usr/lib/ipxe/ipxe.efi is a symbolic
// link to /boot/ipxe.efi, and it is the file proxyDHCP hands to every
// UEFI x64 client. The links of the PXE sets are still refused.
func TestTFTPDebianLoaders(t *testing.T) {
	if _, err := os.Stat(filepath.Join(DefaultLoaders, EFILoader)); err != nil {
		t.Skipf("Debian's ipxe package is not installed (hack/setup.sh installs it): %v", err)
	}
	if fi, err := os.Lstat(filepath.Join(DefaultLoaders, EFILoader)); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		t.Logf("%s/%s is not a symbolic link here; the test still serves it", DefaultLoaders, EFILoader)
	}
	root, _ := testRoot(t, 4096)
	s, log := start(t, Config{Root: root, TFTPAddr: "127.0.0.1:0", Loaders: DefaultLoaders})
	_, fetch := tftpFetch(t, s.TFTPAddr().String())
	for _, name := range Loaders {
		want, err := os.ReadFile(filepath.Join(DefaultLoaders, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := fetch(name)
		if err != nil {
			t.Errorf("%s: %v\nlog:\n%s", name, err, log)
			continue
		}
		if sha256.Sum256(got) != sha256.Sum256(want) {
			t.Errorf("%s: %d bytes served, the file has %d", name, len(got), len(want))
		}
	}
	if !strings.Contains(log.String(), "(loaders from "+DefaultLoaders+": ipxe.efi, snponly.efi, undionly.kpxe, and ") {
		t.Errorf("the log does not name the loaders:\n%s", log)
	}
	for _, name := range []string{"lb/pxe/escape", "lb/pxe/escape-rel", "qemu", "../../boot/ipxe.efi"} {
		if b, err := fetch(name); err == nil {
			t.Errorf("%s was served: %d bytes", name, len(b))
		}
	}
}

// TestListenLoaders: with TFTP on, Listen fails when the loaders folder
// is missing or holds no loader, and says what is accepted; the folder's
// links are followed, wherever they lead.
func TestListenLoaders(t *testing.T) {
	root, _ := testRoot(t, 16)
	dir := t.TempDir()
	outside := filepath.Join(dir, "boot")
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "ipxe.efi"), []byte("MZ"), 0o644)
	mk := func(files map[string]string) string {
		d, err := os.MkdirTemp(dir, "loaders")
		if err != nil {
			t.Fatal(err)
		}
		for name, target := range files {
			p := filepath.Join(d, name)
			if strings.HasPrefix(target, "->") {
				err = os.Symlink(strings.TrimPrefix(target, "->"), p)
			} else if target == "/" {
				err = os.Mkdir(p, 0o755)
			} else {
				err = os.WriteFile(p, []byte(target), 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	const accepted = "accepted: a folder holding ipxe.efi, snponly.efi or undionly.kpxe, such as /usr/lib/ipxe from Debian's ipxe package (apt-get install ipxe)"
	tests := []struct {
		name    string
		loaders string
		want    string // "": Listen succeeds
	}{
		{"missing", filepath.Join(dir, "nope"), "tftp: reading the loaders folder: open " + filepath.Join(dir, "nope") + ": no such file or directory; " + accepted},
		{"unset", "", "tftp: no loaders folder; " + accepted},
		{"empty", mk(nil), "holds no loader; " + accepted},
		{"other files", mk(map[string]string{"ipxe.iso": "x", "ipxe.efi": "/"}), "holds no loader; " + accepted},
		{"dangling link", mk(map[string]string{"ipxe.efi": "->" + filepath.Join(dir, "gone.efi")}), "holds no loader; " + accepted},
		{"link out", mk(map[string]string{"ipxe.efi": "->" + filepath.Join(outside, "ipxe.efi")}), ""},
		{"relative link out", mk(map[string]string{"ipxe.efi": "->../boot/ipxe.efi"}), ""},
		{"bios only", mk(map[string]string{"undionly.kpxe": "x"}), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Listen(Config{Root: root, HTTPAddr: "127.0.0.1:0", TFTPAddr: "127.0.0.1:0", Loaders: tt.loaders})
			if err == nil {
				s.close()
			}
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Listen: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Listen: error %v\nwant one containing %q", err, tt.want)
			}
			if (CheckLoaders(tt.loaders) == nil) != (tt.want == "") {
				t.Errorf("CheckLoaders(%s) disagrees with Listen", tt.loaders)
			}
		})
	}
	// Without TFTP the loaders are not needed.
	s, err := Listen(Config{Root: root, HTTPAddr: "127.0.0.1:0", Loaders: filepath.Join(dir, "nope")})
	if err != nil {
		t.Fatalf("Listen without TFTP: %v", err)
	}
	s.close()
}

// TestServeWarnsWithoutSets: a root without any PXE set (a wrong --root,
// or a build without --format pxe) is served, with a warning that says
// how to make a set.
func TestServeWarnsWithoutSets(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "lb"), 0o755) // a build without --format pxe
	_, log := start(t, Config{Root: root})
	want := "WARNING: " + root + " holds no PXE set (ROLE/pxe/boot.ipxe), so no machine can boot; make one with imgforge build ROLE --format pxe --output-dir " + root
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(log.String(), want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(log.String(), want) {
		t.Errorf("log:\n%s\nwant a line containing %q", log, want)
	}
	root2, _ := testRoot(t, 16)
	_, log2 := start(t, Config{Root: root2})
	deadline = time.Now().Add(3 * time.Second)
	for !strings.Contains(log2.String(), "serving the PXE sets") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(log2.String(), "WARNING") {
		t.Errorf("a warning with sets:\n%s", log2)
	}
}

// tftpFetch returns a client of the TFTP server at addr and a function
// that reads a file with it.
func tftpFetch(t *testing.T, addr string) (*tftp.Client, func(name string) ([]byte, error)) {
	t.Helper()
	c, err := tftp.NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(2 * time.Second)
	c.SetRetries(2)
	return c, func(name string) ([]byte, error) {
		wt, err := c.Receive(name, "octet")
		if err != nil {
			return nil, err
		}
		var b bytes.Buffer
		_, err = wt.WriteTo(&b)
		return b.Bytes(), err
	}
}
