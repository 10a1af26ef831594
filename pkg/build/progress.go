package build

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Progress reports stages on a terminal or in a log: one line when a stage
// starts and one when it ends, with its time. On a terminal, the running
// stage's line is redrawn with what it is doing and a bar for downloads.
type Progress struct {
	w   io.Writer
	tty bool
	now func() time.Time

	mu      sync.Mutex
	timings []StageTime
	drawn   bool
}

// StageTime is how long one stage of one role took.
type StageTime struct {
	Role    string  `json:"role"`
	Stage   string  `json:"stage"`
	Seconds float64 `json:"seconds"`
	Result  string  `json:"result"`
}

// NewProgress reports to w; tty says w is a terminal.
func NewProgress(w io.Writer, tty bool, now func() time.Time) *Progress {
	if now == nil {
		now = time.Now
	}
	return &Progress{w: w, tty: tty, now: now}
}

// Timings lists the stages that ended so far.
func (p *Progress) Timings() []StageTime {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]StageTime(nil), p.timings...)
}

// Note prints a line of its own.
func (p *Progress) Note(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(p.w, "imgforge: %s\n", msg)
}

func (p *Progress) clear() {
	if p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

// Stage is one running stage.
type Stage struct {
	p           *Progress
	role, name  string
	start       time.Time
	got, needed int64
}

// Start reports that a stage began.
func (p *Progress) Start(role, stage string) *Stage {
	s := &Stage{p: p, role: role, name: stage, start: p.now()}
	if p.tty {
		s.Update("")
	}
	return s
}

func (s *Stage) prefix() string { return fmt.Sprintf("%-6s %-9s", s.role, s.name) }

// Update says what the stage is doing now.
func (s *Stage) Update(msg string) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.tty {
		if msg != "" {
			fmt.Fprintf(p.w, "%s %s\n", s.prefix(), msg)
		}
		return
	}
	p.clear()
	line := fmt.Sprintf("%s %5.1fs %s", s.prefix(), p.now().Sub(s.start).Seconds(), msg)
	if s.needed > 0 {
		line += " " + bar(s.got, s.needed)
	}
	if len(line) > 110 {
		line = line[:110]
	}
	fmt.Fprint(p.w, line)
	p.drawn = true
}

func bar(got, total int64) string {
	const width = 20
	if got > total {
		got = total
	}
	n := int(float64(width) * float64(got) / float64(total))
	return fmt.Sprintf("[%s%s] %.1f/%.1f MB", strings.Repeat("=", n), strings.Repeat(" ", width-n), float64(got)/1e6, float64(total)/1e6)
}

func (s *Stage) end(result string) {
	p := s.p
	secs := p.now().Sub(s.start).Seconds()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(p.w, "%s %s (%.1fs)\n", s.prefix(), result, secs)
	p.timings = append(p.timings, StageTime{Role: s.role, Stage: s.name, Seconds: secs, Result: result})
}

// Done reports that the stage ended well.
func (s *Stage) Done(result string) { s.end(result) }

// Fail reports that the stage failed; the error is reported by the caller.
func (s *Stage) Fail() { s.end("failed") }

var (
	getRe  = regexp.MustCompile(`^Get:\d+ .* \[([\d,.]+) (B|kB|MB|GB)\]$`)
	needRe = regexp.MustCompile(`^Need to get (?:([\d,.]+) (B|kB|MB|GB)/)?([\d,.]+) (B|kB|MB|GB) of archives`)
)

func parseSize(num, unit string) int64 {
	f, err := strconv.ParseFloat(strings.ReplaceAll(num, ",", ""), 64)
	if err != nil {
		return 0
	}
	mult := map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
	return int64(math.Round(f * mult))
}

// LogWriter returns a writer for the stage's tool output: lines go to log,
// and mmdebstrap's phases and apt's downloads update the stage.
func (s *Stage) LogWriter(log io.Writer) io.Writer {
	return &stageLog{s: s, log: log}
}

type stageLog struct {
	s   *Stage
	log io.Writer
	buf []byte
}

func (l *stageLog) Write(b []byte) (int, error) {
	_, _ = l.log.Write(b)
	l.buf = append(l.buf, b...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.line(strings.TrimSpace(string(l.buf[:i])))
		l.buf = l.buf[i+1:]
	}
	return len(b), nil
}

func (l *stageLog) line(line string) {
	s := l.s
	switch {
	case strings.HasPrefix(line, "I: ") && s.p.tty:
		s.Update(strings.TrimSuffix(strings.TrimPrefix(line, "I: "), "..."))
	case needRe.MatchString(line):
		m := needRe.FindStringSubmatch(line)
		if m[1] != "" {
			s.needed += parseSize(m[1], m[2])
		} else {
			s.needed += parseSize(m[3], m[4])
		}
	case getRe.MatchString(line):
		m := getRe.FindStringSubmatch(line)
		s.got += parseSize(m[1], m[2])
		if s.p.tty {
			s.Update("downloading")
		}
	}
}
