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

// find looks for re in the lines of the output from the absolute offset
// from on, each line without its end and cleaned (see Clean). Only
// complete lines count, those ended by '\n' ("\r\n" is the same end, as
// Clean drops the '\r'), unless tail is set: then the unfinished last
// line counts too, as it is so far. It returns the first line that
// matches, or where to search from next time (the start of the unfinished
// last line) and a channel closed at the next write.
//
// A line is matched only once it is complete because the output arrives
// in pieces of any size: in an unfinished line a pattern such as
// `ROW: .*` would match "ROW: ke" of what becomes "ROW: kept".
func (c *Console) find(re *regexp.Regexp, from int64, tail bool) (line string, ok bool, next int64, changed <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := max(from-c.dropped, 0) // a line's start: drops end after a '\n'
	b := c.buf[start:]
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		if l := Clean(string(b[:i])); re.MatchString(l) {
			return l, true, 0, nil
		}
		b = b[i+1:]
		start += int64(i + 1)
	}
	if tail && len(b) > 0 {
		if l := Clean(string(b)); re.MatchString(l) {
			return l, true, 0, nil
		}
	}
	return "", false, c.dropped + start, c.changed
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
