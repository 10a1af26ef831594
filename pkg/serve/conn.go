package serve

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener accepts at most max connections at a time (further ones
// wait in the kernel's listen backlog until one closes) and gives each
// a per-IO deadline (ioConn). It does what golang.org/x/net/netutil's
// LimitListener does, but hands net/http the *ioConn itself, so that
// http.ServeContent still reaches sendfile through ioConn.ReadFrom
// (netutil's wrapper hides the connection's ReadFrom).
type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	ioTimeout time.Duration
	onFull    func(max int) // called when a connection has to wait for a slot
}

func newLimitListener(l net.Listener, max int, ioTimeout time.Duration, onFull func(int)) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, max), done: make(chan struct{}), ioTimeout: ioTimeout, onFull: onFull}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	default:
		if l.onFull != nil {
			l.onFull(cap(l.sem))
		}
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	ic := &ioConn{Conn: c, timeout: l.ioTimeout}
	ic.release = func() { <-l.sem }
	return ic, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// ioConn closes a connection on which no byte moves, either way, for
// timeout: every Read and Write gets a deadline of timeout from its
// start, refreshed whenever bytes move, so a slow but moving download
// of any size goes on while a stalled one ends. Deadlines net/http sets
// (for the header, idle and shutdown) are kept: the earlier one wins.
type ioConn struct {
	net.Conn
	timeout time.Duration

	mu              sync.Mutex // orders deadline changes
	readDL, writeDL time.Time  // the deadlines net/http set
	lastWrite       atomic.Int64

	releaseOnce sync.Once
	release     func()
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func earlier(a, b time.Time) time.Time {
	if !a.IsZero() && a.Before(b) {
		return a
	}
	return b
}

// setRead arms the read deadline.
func (c *ioConn) setRead(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.Conn.SetReadDeadline(earlier(c.readDL, now.Add(c.timeout)))
}

// setWrite arms the write deadline and returns net/http's own one.
func (c *ioConn) setWrite(now time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.Conn.SetWriteDeadline(earlier(c.writeDL, now.Add(c.timeout)))
	return c.writeDL
}

// Read reads with a deadline of the timeout. net/http keeps a read
// pending while a handler writes the response (to see the client go
// away): that read goes on as long as the response moves.
func (c *ioConn) Read(p []byte) (int, error) {
	for {
		start := time.Now()
		c.setRead(start)
		n, err := c.Conn.Read(p)
		if n > 0 || err == nil || !isTimeout(err) {
			return n, err
		}
		c.mu.Lock()
		own := c.readDL
		c.mu.Unlock()
		if !own.IsZero() && !time.Now().Before(own) {
			return n, err // net/http's own deadline
		}
		if c.lastWrite.Load() <= start.UnixNano() {
			return n, err // nothing moved either way
		}
	}
}

func (c *ioConn) Write(p []byte) (int, error) {
	done := 0
	for {
		own := c.setWrite(time.Now())
		n, err := c.Conn.Write(p[done:])
		done += n
		if n > 0 {
			c.lastWrite.Store(time.Now().UnixNano())
		}
		if err == nil || n == 0 || !isTimeout(err) || (!own.IsZero() && !time.Now().Before(own)) {
			return done, err
		}
	}
}

// ReadFrom sends a file with sendfile when the connection can, with the
// same per-IO deadline as Write.
func (c *ioConn) ReadFrom(r io.Reader) (int64, error) {
	rf, ok := c.Conn.(io.ReaderFrom)
	if !ok || !sendfileable(r) {
		return io.Copy(writerOnly{c}, r)
	}
	var total int64
	for {
		own := c.setWrite(time.Now())
		n, err := rf.ReadFrom(r)
		total += n
		if n > 0 {
			c.lastWrite.Store(time.Now().UnixNano())
		}
		if err == nil || n == 0 || !isTimeout(err) || (!own.IsZero() && !time.Now().Before(own)) {
			return total, err
		}
	}
}

// sendfileable says whether a *net.TCPConn sends r with sendfile (and
// so in one call under one deadline) rather than by copying.
func sendfileable(r io.Reader) bool {
	if lr, ok := r.(*io.LimitedReader); ok {
		r = lr.R
	}
	_, ok := r.(*os.File)
	return ok
}

type writerOnly struct{ io.Writer }

func (c *ioConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = t
	return c.Conn.SetReadDeadline(t)
}

func (c *ioConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writeDL = t
	return c.Conn.SetWriteDeadline(t)
}

func (c *ioConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL, c.writeDL = t, t
	return c.Conn.SetDeadline(t)
}

func (c *ioConn) Close() error {
	err := c.Conn.Close()
	c.releaseOnce.Do(func() {
		if c.release != nil {
			c.release()
		}
	})
	return err
}
