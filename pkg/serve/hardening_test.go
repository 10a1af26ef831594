package serve

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"
)

// seededRoot is a root with the PXE sets and a machines file whose
// machine 52:54:00:00:00:02 has a seed folder with secrets.
func seededRoot(t *testing.T) (string, *Machines) {
	t.Helper()
	root, _ := testRoot(t, 4096)
	dir := filepath.Join(root, "seeds", "web-1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"meta-data":      "instance-id: web-1\n",
		"user-data":      "#cloud-config\nimgforge:\n  discovery:\n    gossip:\n      key: SECRET-GOSSIP-KEY\n",
		"vendor-data":    "#cloud-config\npassword: SECRET-VENDOR-PASSWORD\n",
		"network-config": "version: 2\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m, err := LoadMachines(writeMachines(t, root, "machines:\n  - mac: 52:54:00:00:00:01\n    role: lb\n  - mac: 52:54:00:00:00:02\n    role: web\n    seed: seeds/web-1\n"), root)
	if err != nil {
		t.Fatal(err)
	}
	return root, m
}

// getFrom GETs (or HEADs) url from the local address ip.
func getFrom(t *testing.T, ip, method, url string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}}
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSeedsHandedOutOnce: a machine's user-data and vendor-data from its
// seed folder go out once; a second fetch gets no secret, is logged as a
// WARNING naming the MAC address and the client, and Rearm lets the
// machine fetch them again. Its meta-data and network-config, and the
// default seed of other machines, are served every time.
func TestSeedsHandedOutOnce(t *testing.T) {
	root, m := seededRoot(t)
	s, log := start(t, Config{Root: root, Machines: m, SeedGrace: -1, RearmHint: "kill -HUP 4242"})
	base := "http://" + s.HTTPAddr().String() + "/seed/52-54-00-00-00-02/"
	secret := map[string]string{"user-data": "SECRET-GOSSIP-KEY", "vendor-data": "SECRET-VENDOR-PASSWORD"}
	for _, file := range []string{"user-data", "vendor-data"} {
		// HEAD does not take it.
		if code, _ := getFrom(t, "127.0.0.1", http.MethodHead, base+file); code != 200 {
			t.Errorf("HEAD %s: %d", file, code)
		}
		if code, body := getFrom(t, "127.0.0.1", http.MethodGet, base+file); code != 200 || !strings.Contains(body, secret[file]) {
			t.Fatalf("first GET %s: %d %q", file, code, body)
		}
		for _, ip := range []string{"127.0.0.1", "127.0.0.3"} {
			code, body := getFrom(t, ip, http.MethodGet, base+file)
			if code != http.StatusGone || strings.Contains(body, "SECRET") {
				t.Errorf("second GET %s from %s: %d %q", file, ip, code, body)
			}
		}
		if code, _ := getFrom(t, "127.0.0.3", http.MethodHead, base+file); code != http.StatusGone {
			t.Errorf("HEAD %s after it was handed out: %d", file, code)
		}
		want := "WARNING: refused " + file + " of machine 52:54:00:00:00:02 to 127.0.0.3:"
		if !strings.Contains(log.String(), want) || !strings.Contains(log.String(), "kill -HUP 4242") {
			t.Errorf("the log lacks %q and the re-arm hint:\n%s", want, log)
		}
	}
	for range 3 {
		for _, file := range []string{"meta-data", "network-config"} {
			if code, _ := getFrom(t, "127.0.0.3", http.MethodGet, base+file); code != 200 {
				t.Errorf("%s: %d", file, code)
			}
		}
		if code, body := getFrom(t, "127.0.0.3", http.MethodGet, "http://"+s.HTTPAddr().String()+"/seed/52-54-00-00-00-01/user-data"); code != 200 || !strings.Contains(body, "default seed") {
			t.Errorf("the default seed's user-data: %d %q", code, body)
		}
	}
	if strings.Contains(log.String(), "SECRET") {
		t.Errorf("the log holds a secret:\n%s", log)
	}
	s.Rearm()
	if code, body := getFrom(t, "127.0.0.1", http.MethodGet, base+"user-data"); code != 200 || !strings.Contains(body, "SECRET-GOSSIP-KEY") {
		t.Errorf("GET after Rearm: %d %q", code, body)
	}
	if code, _ := getFrom(t, "127.0.0.1", http.MethodGet, base+"user-data"); code != http.StatusGone {
		t.Errorf("second GET after Rearm: %d", code)
	}
	if !strings.Contains(log.String(), "seeds re-armed: 2 handed-out seed file(s)") {
		t.Errorf("the log lacks the re-arm:\n%s", log)
	}
}

// TestSeedGrace: within the grace time the client that took a seed file
// may fetch it again (cloud-init's retry after a broken transfer);
// another client may not.
func TestSeedGrace(t *testing.T) {
	root, m := seededRoot(t)
	s, log := start(t, Config{Root: root, Machines: m, SeedGrace: time.Minute})
	url := "http://" + s.HTTPAddr().String() + "/seed/52-54-00-00-00-02/user-data"
	for i, c := range []struct {
		ip   string
		code int
	}{{"127.0.0.1", 200}, {"127.0.0.1", 200}, {"127.0.0.4", http.StatusGone}, {"127.0.0.1", 200}} {
		if code, body := getFrom(t, c.ip, http.MethodGet, url); code != c.code || (code != 200 && strings.Contains(body, "SECRET")) {
			t.Errorf("fetch %d from %s: %d, want %d", i, c.ip, code, c.code)
		}
	}
	if !strings.Contains(log.String(), "user-data of machine 52:54:00:00:00:02 sent again to 127.0.0.1:") {
		t.Errorf("log:\n%s", log)
	}
}

// dialIdle opens a connection, makes one request on it and reads the
// response, leaving it open.
func dialIdle(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET /boot.ipxe HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c, br
}

// closedWithin says whether the server closes c within d.
func closedWithin(c net.Conn, r io.Reader, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, r)
	return err == nil // EOF: closed by the server; a timeout: still open
}

func TestIdleConnectionsClosed(t *testing.T) {
	root, _ := testRoot(t, 4096)
	s, _ := start(t, Config{Root: root, IdleTimeout: 300 * time.Millisecond, IOTimeout: 10 * time.Second})
	start := time.Now()
	var conns []net.Conn
	var readers []*bufio.Reader
	for range 5 {
		c, br := dialIdle(t, s.HTTPAddr().String())
		conns, readers = append(conns, c), append(readers, br)
	}
	for i, c := range conns {
		if !closedWithin(c, readers[i], 3*time.Second) {
			t.Errorf("idle connection %d still open after %s", i, time.Since(start))
		}
	}
}

func TestStalledClientsDropped(t *testing.T) {
	root, _ := testRoot(t, 64<<20)
	s, log := start(t, Config{Root: root, IOTimeout: 300 * time.Millisecond, ReadHeaderTimeout: 20 * time.Second, IdleTimeout: 20 * time.Second})
	addr := s.HTTPAddr().String()

	t.Run("half a request", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /boot.ipxe HTTP/1.1\r\nHost: x\r\n") // no blank line
		if !closedWithin(c, c, 3*time.Second) {
			t.Error("a connection with half a request is still open")
		}
	})
	t.Run("not reading", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(16 << 10)
		fmt.Fprintf(c, "GET /sets/lb/root.img HTTP/1.1\r\nHost: x\r\n\r\n")
		// Read nothing: the server fills the socket buffers, then stalls.
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(log.String(), "GET /sets/lb/root.img 200 ") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(log.String(), "GET /sets/lb/root.img 200 ") {
			t.Fatalf("the download to a client that stopped reading did not end:\n%s", log)
		}
		if strings.Contains(log.String(), fmt.Sprintf("200 %d ", 64<<20)) {
			t.Errorf("the whole file went to a client that read nothing:\n%s", log)
		}
	})
}

// TestSlowDownloadNotCut reads a file slowly, in small steps, for many
// times the IO timeout: it must arrive whole.
func TestSlowDownloadNotCut(t *testing.T) {
	size := 3 << 20
	root, sum := testRoot(t, size)
	const ioTimeout = 500 * time.Millisecond
	s, _ := start(t, Config{Root: root, IOTimeout: ioTimeout})
	c, err := net.Dial("tcp", s.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(16 << 10)
	fmt.Fprintf(c, "GET /sets/lb/root.img HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got bytes.Buffer
	began := time.Now()
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes in %s: %v", got.Len(), time.Since(began), err)
		}
		time.Sleep(20 * time.Millisecond) // about 3 MiB/s at most
	}
	took := time.Since(began)
	if got.Len() != size || sha256.Sum256(got.Bytes()) != sum {
		t.Fatalf("got %d bytes", got.Len())
	}
	t.Logf("%d bytes in %s with an IO timeout of %s", got.Len(), took, ioTimeout)
	if took < 4*ioTimeout {
		t.Logf("the download took only %s; the test proves less than it should", took)
	}
}

func TestConnectionCap(t *testing.T) {
	root, _ := testRoot(t, 4096)
	s, log := start(t, Config{Root: root, MaxConns: 2, IdleTimeout: 20 * time.Second})
	addr := s.HTTPAddr().String()
	c1, _ := dialIdle(t, addr)
	dialIdle(t, addr)
	// The third connects (the kernel's backlog) but is not served.
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	fmt.Fprintf(c3, "GET /boot.ipxe HTTP/1.1\r\nHost: x\r\n\r\n")
	c3.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	br := bufio.NewReader(c3)
	if _, err := br.Peek(1); err == nil {
		t.Fatal("a third connection was served with a cap of two")
	}
	// When one closes, the third is served.
	c1.Close()
	c3.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the waiting connection was not served after a slot freed: %v", err)
	}
	resp.Body.Close()
	if !strings.Contains(log.String(), "http: 2 connections open, the most allowed") {
		t.Errorf("log:\n%s", log)
	}
}

// TestLogEscapesClientStrings: a TFTP name or HTTP header holding a
// newline or an ANSI escape sequence is escaped in the log.
func TestLogEscapesClientStrings(t *testing.T) {
	root, _ := testRoot(t, 4096)
	s, log := start(t, Config{Root: root, TFTPAddr: "127.0.0.1:0", Loaders: fakeLoaders(t)})
	c, err := tftp.NewClient(s.TFTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(time.Second)
	c.SetRetries(1)
	name := "evil\n2026-01-01T00:00:00.000Z tftp 10.0.0.1 forged sent\x1b[31mred"
	if _, err := c.Receive(name, "octet"); err == nil {
		t.Error("a made-up name was served")
	}
	rawGetHeader(t, s.HTTPAddr().String(), "/sets/lb/vmlinuz", "Range: bytes=0-1\x1b[2J")
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(log.String(), "forged") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	l := log.String()
	if !strings.Contains(l, `"evil\n2026-01-01T00:00:00.000Z tftp 10.0.0.1 forged sent\x1b[31mred"`) {
		t.Errorf("the TFTP name is not quoted in the log:\n%s", l)
	}
	if strings.Contains(l, "\x1b") {
		t.Errorf("the log holds an escape character:\n%q", l)
	}
	for _, line := range strings.Split(strings.TrimSuffix(l, "\n"), "\n") {
		if !strings.HasPrefix(line, "20") || strings.HasPrefix(line, "2026-01-01T00:00:00.000Z") {
			t.Errorf("a forged log line: %q", line)
		}
	}
}

// rawGetHeader sends a request with one extra header line as it is.
func rawGetHeader(t *testing.T, addr, target, header string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n%s\r\nConnection: close\r\n\r\n", target, header)
	io.Copy(io.Discard, c)
}

func TestMachinesFileTooLarge(t *testing.T) {
	root, _ := testRoot(t, 16)
	big := "machines:\n" + strings.Repeat("# padding padding padding padding padding padding padding\n", MaxMachinesFile/40)
	p := writeMachines(t, root, big)
	_, err := LoadMachines(p, root)
	if err == nil || !strings.Contains(err.Error(), p+": the machines file is larger than its limit of 1048576 bytes") {
		t.Fatalf("error %v", err)
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"ipxe.efi":          "ipxe.efi",
		"/sets/lb/root.img": "/sets/lb/root.img",
		"a\nb":              `"a\nb"`,
		"\x1b[31m":          `"\x1b[31m"`,
		"two words":         `"two words"`,
		`quo"te`:            `"quo\"te"`,
		"caf\u00e9\u202e":   `"café\u202e"`,
		"":                  "",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %s, want %s", in, got, want)
		}
	}
	if got := escapeControls("line\none\x1b"); got != `line\none\x1b` {
		t.Errorf("escapeControls: %s", got)
	}
}
