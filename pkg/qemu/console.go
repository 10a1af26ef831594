package qemu

import (
	"bytes"
	"io"
	"regexp"
	"strings"
	"sync"
)

// maxConsole is how much serial output a Console keeps; older output is
// dropped a line at a time.
const maxConsole = 16 << 20

// Console is the serial output of a machine, kept as it arrives. It is
// safe for concurrent use.
type Console struct {
	mu      sync.Mutex
	buf     []byte
	dropped int64         // bytes dropped from the front of buf
	changed chan struct{} // closed and replaced on every write
	tees    []io.Writer
}

func newConsole() *Console {
	return &Console{changed: make(chan struct{})}
}

// Write appends p and copies it to the writers given to Tee.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	if len(c.buf) > maxConsole {
		cut := len(c.buf) - maxConsole/2
		if i := bytes.IndexByte(c.buf[cut:], '\n'); i >= 0 {
			cut += i + 1
		}
		c.dropped += int64(cut)
		c.buf = append([]byte(nil), c.buf[cut:]...)
	}
	for _, w := range c.tees {
		_, _ = w.Write(p) // a failing terminal must not stop the machine
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return len(p), nil
}

// Tee writes the output so far to w, and every later output as it comes.
func (c *Console) Tee(w io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = w.Write(c.buf)
	c.tees = append(c.tees, w)
}

// String returns the output kept so far, as it arrived.
func (c *Console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.buf)
}

// Tail returns the last n lines of the output, without terminal escape
// sequences and carriage returns; a last line without its newline yet
// counts.
func (c *Console) Tail(n int) []string {
	c.mu.Lock()
	text := string(c.buf)
	c.mu.Unlock()
	text = strings.TrimSuffix(text, "\n")
	if text == "" || n <= 0 {
		return nil
	}
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		lines[i] = Clean(l)
	}
	return lines
}

// find looks for re in the output from the absolute offset from on. It
// returns the line holding the match, or where to search from next time
// (the start of the last, unfinished line) and a channel closed at the
// next write.
func (c *Console) find(re *regexp.Regexp, from int64) (line string, ok bool, next int64, changed <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := max(from-c.dropped, 0)
	b := c.buf[start:]
	if loc := re.FindIndex(b); loc != nil {
		ls := bytes.LastIndexByte(b[:loc[0]], '\n') + 1
		le := len(b)
		if i := bytes.IndexByte(b[loc[1]:], '\n'); i >= 0 {
			le = loc[1] + i
		}
		return Clean(string(b[ls:le])), true, 0, nil
	}
	return "", false, c.dropped + start + int64(bytes.LastIndexByte(b, '\n')+1), c.changed
}

var escapeRE = regexp.MustCompile(`\x1b(\[[0-9;?=]*[ -/]*[@-~]|[@-Z\\-_]|\][^\x07]*\x07)`)

// Clean removes terminal escape sequences, carriage returns, backspaces
// with the character before them, and other control characters from a
// line of console output.
func Clean(s string) string {
	var out []rune
	for _, r := range escapeRE.ReplaceAllString(s, "") {
		switch {
		case r == '\b':
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		case r == '\t' || r >= 0x20 && r != 0x7f:
			out = append(out, r)
		}
	}
	return string(out)
}
