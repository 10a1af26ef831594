package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/imgforge/imgforge/pkg/build"
)

// Progress modes of --progress.
const (
	progressAuto  = "auto"  // terminal when standard error is one, else plain
	progressPlain = "plain" // log lines, and a heartbeat every 30 s
	progressQuiet = "quiet" // nothing but errors
)

// heartbeat is how long a plain log may stay silent while a stage runs.
const heartbeat = 30 * time.Second

// tickers are how often the displays are refreshed.
const (
	terminalTick = time.Second
	plainTick    = 5 * time.Second
)

func checkProgress(mode string) error {
	switch mode {
	case progressAuto, progressPlain, progressQuiet:
		return nil
	}
	return usage(fmt.Errorf("--progress %q: accepted: auto, plain, quiet", mode))
}

// progress reports a build's events on the command's standard error, as
// log lines or, on a terminal, a redrawn line (what push uses).
func progress(cmd *cobra.Command) *build.Progress {
	p, stop := newProgress(cmd.ErrOrStderr(), progressAuto, nil, nil)
	stop() // no ticking: nothing stops it later
	return p
}

// newProgress reports a build's events on stderr in mode: log lines (with a
// heartbeat), nothing, or, on a terminal, the running stage's line redrawn
// every second with "stage N/M" of stages, the number of stages each role's
// build reports, in build order, and an estimate of the stage's time from
// estimates. stop ends the refreshing.
func newProgress(stderr io.Writer, mode string, stages []roleStages, estimates map[string]map[string]float64) (p *build.Progress, stop func()) {
	if mode == progressQuiet {
		return build.NewProgress(nil, nil), func() {}
	}
	if mode == progressAuto {
		if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			t := &terminal{w: stderr, stages: stages, estimates: estimates}
			return build.NewProgress(t.event, nil), every(terminalTick, t.tick)
		}
	}
	l := &plainLog{w: stderr}
	return build.NewProgress(l.event, nil), every(plainTick, l.tick)
}

// every calls f every d until stop is called.
func every(d time.Duration, f func(time.Time)) (stop func()) {
	done := make(chan struct{})
	var once sync.Once
	t := time.NewTicker(d)
	go func() {
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				f(now)
			}
		}
	}()
	return func() { once.Do(func() { t.Stop(); close(done) }) }
}

// roleStages is how many stages a role's build reports.
type roleStages struct {
	Role   string
	Stages int
}

// plainLog writes events as log lines; while a stage runs and nothing was
// written for a heartbeat, it says so, so that a CI log shows the build is
// alive.
type plainLog struct {
	w       io.Writer
	mu      sync.Mutex
	last    time.Time     // when the last line was written
	running []build.Event // the stages started and not ended, oldest first
}

func (l *plainLog) event(e build.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch e.Kind {
	case build.StageStarted:
		l.running = append(l.running, e)
	case build.StageEnded:
		for i, r := range l.running {
			if r.Role == e.Role && r.Stage == e.Stage {
				l.running = append(l.running[:i], l.running[i+1:]...)
				break
			}
		}
	}
	if line := e.Line(); line != "" {
		fmt.Fprintln(l.w, line)
		l.last = e.Time
	}
	if l.last.IsZero() {
		l.last = e.Time
	}
}

// tick writes a heartbeat line for the newest running stage when nothing
// was written for heartbeat.
func (l *plainLog) tick(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.running) == 0 || now.Sub(l.last) < heartbeat {
		return
	}
	r := l.running[len(l.running)-1]
	fmt.Fprintf(l.w, "%s still running (%.0fs)\n", r.Prefix(), now.Sub(r.Started).Seconds())
	l.last = now
}

// terminal draws events on a terminal: the running stage's line is redrawn
// with its time, what it does and a bar for downloads, and again each
// second by tick; ends and notes get lines of their own.
type terminal struct {
	w io.Writer
	// stages, when known, are the stages of each role's build, in build
	// order: the line then starts with "stage N/M".
	stages []roleStages
	// estimates are how long each role's stages took when they last ran
	// (cache.StageEstimates): the line then says "of ~Ns".
	estimates map[string]map[string]float64

	mu      sync.Mutex
	drawn   bool        // a stage's line is on the screen, without its newline
	current build.Event // the event the drawn line shows
	done    int         // stages of the roles whose build ended
	inRole  int         // stages started in the role being built
}

// maxLine is the longest redrawn line.
const maxLine = 110

func (t *terminal) total() int {
	n := 0
	for _, r := range t.stages {
		n += r.Stages
	}
	return n
}

func (t *terminal) roleTotal(role string) int {
	for _, r := range t.stages {
		if r.Role == role {
			return r.Stages
		}
	}
	return 0
}

func (t *terminal) event(e build.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clear()
	switch e.Kind {
	case build.StageStarted:
		t.inRole++
		t.draw(e, e.Time)
	case build.StageUpdated:
		t.draw(e, e.Time)
	default:
		if e.Kind == build.StageEnded && e.Stage == "outputs" && !e.Failed {
			// A role's build ends with its outputs; stages it did not
			// need to run (an unchanged output folder) count as done.
			t.done += t.roleTotal(e.Role)
			t.inRole = 0
		}
		if l := e.Line(); l != "" {
			fmt.Fprintln(t.w, l)
		}
	}
}

// tick redraws the running stage's line with its elapsed time at now.
func (t *terminal) tick(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.drawn {
		return
	}
	t.clear()
	t.draw(t.current, now)
}

func (t *terminal) clear() {
	if t.drawn {
		fmt.Fprint(t.w, "\r\033[K")
		t.drawn = false
	}
}

func (t *terminal) draw(e build.Event, now time.Time) {
	elapsed := fmt.Sprintf("%5.1fs", now.Sub(e.Started).Seconds())
	if est := t.estimate(e.Role, e.Stage); est >= 1 {
		elapsed += fmt.Sprintf(" of ~%.0fs", est)
	}
	line := fmt.Sprintf("%s %s %s", e.Prefix(), elapsed, e.Message)
	if total := t.total(); total > 0 {
		n := min(t.done+t.inRole, total)
		line = fmt.Sprintf("stage %d/%d ", n, total) + line
	}
	if e.Need > 0 {
		line += " " + bar(e.Got, e.Need)
	}
	if len(line) > maxLine {
		line = line[:maxLine]
	}
	fmt.Fprint(t.w, line)
	t.drawn = true
	t.current = e
}

// estimate is how long role's stage took when it last ran: in that role,
// else in any; 0 when unknown.
func (t *terminal) estimate(role, stage string) float64 {
	if s, ok := t.estimates[role][stage]; ok {
		return s
	}
	return t.estimates[""][stage]
}

func bar(got, total int64) string {
	const width = 20
	if got > total {
		got = total
	}
	n := int(float64(width) * float64(got) / float64(total))
	return fmt.Sprintf("[%s%s] %.1f/%.1f MB", strings.Repeat("=", n), strings.Repeat(" ", width-n), float64(got)/1e6, float64(total)/1e6)
}
