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

// Progress turns the stages of a build into a stream of Events for a sink:
// a stage starting, saying what it does, ending; and notes of their own. It
// keeps the time each stage took. How the events are shown (a log, a line
// redrawn on a terminal, JSON) is the sink's business: LogLines writes
// them as plain lines; the CLI draws them on a terminal.
type Progress struct {
	sink func(Event)
	now  func() time.Time

	mu      sync.Mutex
	timings []StageTime
}

// StageTime is how long one stage of one role took.
type StageTime struct {
	Role    string  `json:"role"`
	Stage   string  `json:"stage"`
	Seconds float64 `json:"seconds"`
	Result  string  `json:"result"`
}

// EventKind says what an Event reports.
type EventKind string

// The kinds of Event.
const (
	StageStarted EventKind = "stage-started"
	StageUpdated EventKind = "stage-updated"
	StageEnded   EventKind = "stage-ended"
	Noted        EventKind = "note"
)

// Event is one thing a build reports.
type Event struct {
	Kind    EventKind `json:"kind"`
	Time    time.Time `json:"time"`
	Role    string    `json:"role,omitempty"`
	Stage   string    `json:"stage,omitempty"`
	Started time.Time `json:"started,omitzero"` // when the stage started (stage events)
	// Message is what the stage does now (StageUpdated), its result
	// (StageEnded: "failed" when it failed), or the note (Noted).
	Message string `json:"message,omitempty"`
	// Live marks an update that only a live display shows: a tool's phase
	// or a download, too frequent for a log.
	Live   bool  `json:"live,omitempty"`
	Failed bool  `json:"failed,omitempty"`
	Got    int64 `json:"got,omitempty"`  // package bytes downloaded so far by the stage
	Need   int64 `json:"need,omitempty"` // package bytes it has to download, once apt said
}

// Elapsed is how long the stage had run at the event.
func (e Event) Elapsed() time.Duration { return e.Time.Sub(e.Started) }

// Prefix is the role and stage, padded so that a log's columns line up.
func (e Event) Prefix() string { return fmt.Sprintf("%-6s %-9s", e.Role, e.Stage) }

// Line is the event as a line of a log, without its newline, or "" for an
// event a log leaves out (a start, a live or empty update).
func (e Event) Line() string {
	switch {
	case e.Kind == Noted:
		return "imgforge: " + e.Message
	case e.Kind == StageUpdated && !e.Live && e.Message != "":
		return e.Prefix() + " " + e.Message
	case e.Kind == StageEnded:
		return fmt.Sprintf("%s %s (%.1fs)", e.Prefix(), e.Message, e.Elapsed().Seconds())
	}
	return ""
}

// LogLines is a sink that writes each event's Line to w.
func LogLines(w io.Writer) func(Event) {
	return func(e Event) {
		if l := e.Line(); l != "" {
			fmt.Fprintln(w, l)
		}
	}
}

// NewProgress sends events to sink (nil discards them), timed by now (nil:
// time.Now).
func NewProgress(sink func(Event), now func() time.Time) *Progress {
	if now == nil {
		now = time.Now
	}
	if sink == nil {
		sink = func(Event) {}
	}
	return &Progress{sink: sink, now: now}
}

// Timings lists the stages that ended so far.
func (p *Progress) Timings() []StageTime {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]StageTime(nil), p.timings...)
}

// emit stamps e and hands it to the sink, one event at a time.
func (p *Progress) emit(e Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.Time = p.now()
	if e.Kind == StageEnded {
		p.timings = append(p.timings, StageTime{Role: e.Role, Stage: e.Stage, Seconds: e.Elapsed().Seconds(), Result: e.Message})
	}
	p.sink(e)
}

// Note reports a line of its own.
func (p *Progress) Note(msg string) { p.emit(Event{Kind: Noted, Message: msg}) }

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
	s.emit(StageStarted, "", false)
	return s
}

func (s *Stage) emit(kind EventKind, msg string, live bool) {
	s.p.emit(Event{Kind: kind, Role: s.role, Stage: s.name, Started: s.start, Message: msg, Live: live, Failed: kind == StageEnded && msg == "failed", Got: s.got, Need: s.needed})
}

// Update says what the stage is doing now.
func (s *Stage) Update(msg string) { s.emit(StageUpdated, msg, false) }

// Done reports that the stage ended well.
func (s *Stage) Done(result string) { s.emit(StageEnded, result, false) }

// Fail reports that the stage failed; the error is reported by the caller.
func (s *Stage) Fail() { s.emit(StageEnded, "failed", false) }

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
	case strings.HasPrefix(line, "I: "):
		s.emit(StageUpdated, strings.TrimSuffix(strings.TrimPrefix(line, "I: "), "..."), true)
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
		s.emit(StageUpdated, "downloading", true)
	}
}

// StagesOf is how many stages a build of one role into formats reports:
// base, packages, overlay and outputs, and for a bootable format the
// initramfs, the root and the overlay image too. A display shows
// "stage N/M" with it.
func StagesOf(formats []string) (int, error) {
	_, needs, err := planOutputs(formats)
	if err != nil {
		return 0, err
	}
	if needs&needBootable != 0 {
		return 7, nil
	}
	return 4, nil
}
