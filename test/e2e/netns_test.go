//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// segment is an Ethernet segment for VMs: a bridge inside a network
// namespace the test makes, with a tap device per VM and an address of its
// own, so that the test reaches the guests (and a virtual IP) while no
// packet leaves this machine. The namespace goes away with the test.
type segment struct {
	ns     string
	bridge string
	addr   string // the test's own address on the bridge, e.g. 10.10.0.1/24
}

func newSegment(t *testing.T, name, addr string) *segment {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a bridge in a network namespace needs root")
	}
	s := &segment{ns: fmt.Sprintf("imgf-%s-%d", name, os.Getpid()%100000), bridge: "br0", addr: addr}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", s.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", s.ns).Run() })
	run("-n", s.ns, "link", "set", "lo", "up")
	run("-n", s.ns, "link", "add", s.bridge, "type", "bridge")
	run("-n", s.ns, "addr", "add", addr, "dev", s.bridge)
	run("-n", s.ns, "link", "set", s.bridge, "up")
	return s
}

// tap makes a tap device on the bridge for one VM.
func (s *segment) tap(t *testing.T, name string) string {
	t.Helper()
	for _, args := range [][]string{
		{"-n", s.ns, "tuntap", "add", "dev", name, "mode", "tap"},
		{"-n", s.ns, "link", "set", name, "master", s.bridge},
		{"-n", s.ns, "link", "set", name, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return name
}

// do runs fn on an OS thread inside the namespace: sockets fn makes belong
// to the namespace for their whole life. The thread goes back to the
// test's namespace afterwards: a thread that ended instead would take the
// children it started with it (QEMU runs with a parent-death signal, which
// Linux ties to the thread).
func (s *segment) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		f, err := os.Open("/run/netns/" + s.ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace %s: %w", s.ns, err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and ends with this goroutine
		errc <- err
	}()
	return <-errc
}

// listen opens a TCP listener inside the namespace.
func (s *segment) listen(addr string) (net.Listener, error) {
	var l net.Listener
	err := s.do(func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// addAddr gives the test one more address on the bridge (addr with its
// prefix), to send from: HAProxy keeps a client on one web node by its
// source address.
func (s *segment) addAddr(t *testing.T, addr string) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", s.ns, "addr", "add", addr, "dev", s.bridge).CombinedOutput(); err != nil {
		t.Fatalf("ip addr add %s: %v: %s", addr, err, out)
	}
}

// dial connects from inside the namespace, from the local address src
// when it is not empty.
func (s *segment) dial(network, src, addr string) (net.Conn, error) {
	var c net.Conn
	err := s.do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second}
		if src != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
		}
		var err error
		c, err = d.Dial(network, addr)
		return err
	})
	return c, err
}

// client is an HTTP client that dials from src (empty: the namespace's own
// address) inside the segment's namespace, one connection per request. It
// follows redirects when follow is set, offers HTTP/2 on TLS when h2 is,
// and takes the nodes' self-signed pairs as they are.
func (s *segment) client(src string, follow, h2 bool) *http.Client {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:       func(_ context.Context, network, addr string) (net.Conn, error) { return s.dial(network, src, addr) },
		DisableKeepAlives: true,
		ForceAttemptHTTP2: h2,
		// Self-signed pairs the agents made, inside the test's namespace.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // see above
	}}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}
