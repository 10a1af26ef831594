package build

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a time source the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// step is one call on a Progress; stage indexes the stages started so far.
type step struct {
	start   [2]string // role, stage
	stage   int
	update  *string
	advance time.Duration
	done    *string
	fail    bool
	note    *string
}

func str(s string) *string { return &s }

func run(p *Progress, c *clock, steps []step) {
	var stages []*Stage
	for _, s := range steps {
		switch {
		case s.start[0] != "":
			stages = append(stages, p.Start(s.start[0], s.start[1]))
		case s.advance != 0:
			c.advance(s.advance)
		case s.update != nil:
			stages[s.stage].Update(*s.update)
		case s.done != nil:
			stages[s.stage].Done(*s.done)
		case s.fail:
			stages[s.stage].Fail()
		case s.note != nil:
			p.Note(*s.note)
		}
	}
}

func TestProgress(t *testing.T) {
	for _, tc := range []struct {
		name    string
		steps   []step
		want    string
		timings []StageTime
	}{
		{
			name: "log: one line per message and per end",
			steps: []step{
				{start: [2]string{"web", "packages"}},
				{update: str("installing haproxy")},
				{advance: 1500 * time.Millisecond},
				{update: str("diffing against the base")},
				{advance: 250 * time.Millisecond},
				{done: str("sha256:0123456789ab, 12.3 MB compressed")},
			},
			want: "web    packages  installing haproxy\n" +
				"web    packages  diffing against the base\n" +
				"web    packages  sha256:0123456789ab, 12.3 MB compressed (1.8s)\n",
			timings: []StageTime{{Role: "web", Stage: "packages", Seconds: 1.75, Result: "sha256:0123456789ab, 12.3 MB compressed"}},
		},
		{
			name: "log: start and empty updates print nothing",
			steps: []step{
				{start: [2]string{"dns", "base"}},
				{update: str("")},
				{advance: 2 * time.Second},
				{fail: true},
			},
			want:    "dns    base      failed (2.0s)\n",
			timings: []StageTime{{Role: "dns", Stage: "base", Seconds: 2, Result: "failed"}},
		},
		{
			name: "log: interleaved stages, timings in the order they end",
			steps: []step{
				{start: [2]string{"web", "base"}},
				{advance: time.Second},
				{start: [2]string{"database", "overlay"}},
				{note: str("using the cache in /var/cache/imgforge")},
				{advance: 3 * time.Second},
				{done: str("cached"), stage: 1},
				{advance: time.Second},
				{fail: true, stage: 0},
			},
			want: "imgforge: using the cache in /var/cache/imgforge\n" +
				"database overlay   cached (3.0s)\n" +
				"web    base      failed (5.0s)\n",
			timings: []StageTime{
				{Role: "database", Stage: "overlay", Seconds: 3, Result: "cached"},
				{Role: "web", Stage: "base", Seconds: 5, Result: "failed"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			c := newClock()
			p := NewProgress(LogLines(&out), c.now)
			run(p, c, tc.steps)
			if got := out.String(); got != tc.want {
				t.Errorf("output\n  got  %q\n  want %q", got, tc.want)
			}
			if got := p.Timings(); !reflect.DeepEqual(got, tc.timings) {
				t.Errorf("Timings = %+v, want %+v", got, tc.timings)
			}
		})
	}
}

func TestTimingsIsACopy(t *testing.T) {
	c := newClock()
	p := NewProgress(nil, c.now)
	p.Start("web", "base").Done("ok")
	ts := p.Timings()
	ts[0].Result = "changed"
	if p.Timings()[0].Result != "ok" {
		t.Error("changing what Timings returned changed the Progress")
	}
}

func TestNewProgressDefaultClock(t *testing.T) {
	p := NewProgress(nil, nil)
	before := time.Now()
	s := p.Start("web", "base")
	if s.start.Before(before) || s.start.After(time.Now()) {
		t.Errorf("start %v is not now", s.start)
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		num, unit string
		want      int64
	}{
		{"512", "B", 512},
		{"1,234", "B", 1234},
		{"151", "kB", 151_000},
		{"2,345", "kB", 2_345_000},
		{"12.3", "MB", 12_300_000},
		{"8.2", "MB", 8_200_000},
		{"4.1", "MB", 4_100_000},
		{"1.005", "kB", 1005},
		{"1.5", "GB", 1_500_000_000},
		{"0", "B", 0},
		{"1", "TB", 0},
		{"x", "MB", 0},
	} {
		if got := parseSize(tc.num, tc.unit); got != tc.want {
			t.Errorf("parseSize(%q, %q) = %d, want %d", tc.num, tc.unit, got, tc.want)
		}
	}
}

// aptLog is mmdebstrap output with apt's download lines.
var aptLog = []string{
	"I: chroot architecture amd64 is equal to the host's architecture",
	"Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]",
	"Hit:2 http://deb.debian.org/debian bookworm-updates InRelease",
	"Reading package lists...",
	"Need to get 12.3 MB/98.7 MB of archives.",
	"After this operation, 412 MB of additional disk space will be used.",
	"Get:12 http://deb.debian.org/debian bookworm/main amd64 haproxy amd64 2.6.12-1+deb12u1 [2,345 kB]",
	"Get:13 http://deb.debian.org/debian-security bookworm-security/main amd64 libssl3 amd64 3.0.15-1~deb12u1 [8.2 MB]",
	"Get:14 file:/var/cache/apt/archives/x.deb [512 B]",
	"Get:15 http://deb.debian.org/debian bookworm/main amd64 y amd64 1 [1 kB] (trailing)",
	"Fetched 10.7 MB in 2s (5,350 kB/s)",
	"Need to get 4,567 kB of archives.",
	"Need to get 0 B/1,000 kB of archives.",
	"E: Unable to locate package nosuch",
}

const (
	aptGot    = 151_000 + 2_345_000 + 8_200_000 + 512
	aptNeeded = 12_300_000 + 4_567_000
)

func chunks(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func TestLogWriter(t *testing.T) {
	whole := strings.Join(aptLog, "\n") + "\n"
	for _, tc := range []struct {
		name       string
		writes     []string
		got, need  int64
		unfinished string
	}{
		{name: "one write", writes: []string{whole}, got: aptGot, need: aptNeeded},
		{name: "a line a write", writes: strings.SplitAfter(whole, "\n"), got: aptGot, need: aptNeeded},
		{name: "a byte a write", writes: chunks(whole, 1), got: aptGot, need: aptNeeded},
		{name: "seven bytes a write", writes: chunks(whole, 7), got: aptGot, need: aptNeeded},
		{name: "CRLF and indentation", writes: []string{strings.ReplaceAll("  "+strings.Join(aptLog, "\n  ")+"\n", "\n", "\r\n")}, got: aptGot, need: aptNeeded},
		{
			name:   "split in the middle of a size",
			writes: []string{"Get:12 http://deb.debian.org/debian bookworm/main amd64 haproxy amd64 2.6.12-1+deb12u1 [2,3", "45 kB]\nNeed to get 1", "2.3 MB/98.7 MB of archives.\n"},
			got:    2_345_000, need: 12_300_000,
		},
		{
			name:   "a line without its newline waits",
			writes: []string{"Get:1 http://x bookworm InRelease [151 kB]\n", "Get:2 http://x bookworm/main amd64 a amd64 1 [1 MB]"},
			got:    151_000, unfinished: "Get:2 http://x bookworm/main amd64 a amd64 1 [1 MB]",
		},
		{name: "nothing", writes: []string{"", "\n", "\n\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, log bytes.Buffer
			c := newClock()
			p := NewProgress(LogLines(&out), c.now)
			s := p.Start("web", "packages")
			w := s.LogWriter(&log)
			for _, b := range tc.writes {
				n, err := w.Write([]byte(b))
				if err != nil || n != len(b) {
					t.Fatalf("Write(%q) = %d, %v", b, n, err)
				}
			}
			if s.got != tc.got || s.needed != tc.need {
				t.Errorf("got %d of %d bytes, want %d of %d", s.got, s.needed, tc.got, tc.need)
			}
			if want := strings.Join(tc.writes, ""); log.String() != want {
				t.Errorf("log has %q, want every byte written: %q", log.String(), want)
			}
			if out.Len() != 0 {
				t.Errorf("tool output reached the non-terminal progress: %q", out.String())
			}
			if got := string(w.(*stageLog).buf); got != tc.unfinished {
				t.Errorf("buffered %q, want %q", got, tc.unfinished)
			}
		})
	}
}

// TestProgressConcurrent runs stages of several roles at once, as a
// parallel build would; run with -race.
func TestProgressConcurrent(t *testing.T) {
	var out bytes.Buffer
	c := newClock()
	p := NewProgress(LogLines(&out), c.now)
	roles := []string{"web", "dns", "db", "cache", "proxy", "mail"}
	var wg sync.WaitGroup
	for _, r := range roles {
		wg.Go(func() {
			s := p.Start(r, "packages")
			var log bytes.Buffer
			w := s.LogWriter(&log)
			for i := 0; i < 50; i++ {
				fmt.Fprintf(w, "Get:%d http://x bookworm/main amd64 p amd64 1 [1 kB]\n", i)
				s.Update("installing")
				p.Note("note from " + r)
			}
			s.Done("ok")
		})
	}
	wg.Wait()
	var got []string
	for _, st := range p.Timings() {
		got = append(got, st.Role)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(roles))
	if !slices.Equal(got, want) {
		t.Errorf("timings for %q, want %q", got, want)
	}
	if n := strings.Count(out.String(), " ok (0.0s)\n"); n != len(roles) {
		t.Errorf("%d end lines, want %d", n, len(roles))
	}
}

// TestEvents checks the stream a sink sees: kinds, times, the stage's
// start, and tool output as live updates with the download counts.
func TestEvents(t *testing.T) {
	var got []Event
	c := newClock()
	p := NewProgress(func(e Event) { got = append(got, e) }, c.now)
	start := c.now()
	s := p.Start("web", "base")
	c.advance(time.Second)
	w := s.LogWriter(io.Discard)
	fmt.Fprintln(w, "I: running apt-get update...")
	fmt.Fprintln(w, "Need to get 10.0 MB of archives.")
	fmt.Fprintln(w, "Get:1 http://deb.debian.org/debian bookworm/main amd64 a amd64 1 [2,500 kB]")
	s.Update("diffing")
	p.Note("hello")
	c.advance(time.Second)
	s.Fail()
	at := func(d time.Duration) time.Time { return start.Add(d) }
	want := []Event{
		{Kind: StageStarted, Time: at(0), Role: "web", Stage: "base", Started: start},
		{Kind: StageUpdated, Time: at(time.Second), Role: "web", Stage: "base", Started: start, Message: "running apt-get update", Live: true},
		{Kind: StageUpdated, Time: at(time.Second), Role: "web", Stage: "base", Started: start, Message: "downloading", Live: true, Got: 2_500_000, Need: 10_000_000},
		{Kind: StageUpdated, Time: at(time.Second), Role: "web", Stage: "base", Started: start, Message: "diffing", Got: 2_500_000, Need: 10_000_000},
		{Kind: Noted, Time: at(time.Second), Message: "hello"},
		{Kind: StageEnded, Time: at(2 * time.Second), Role: "web", Stage: "base", Started: start, Message: "failed", Failed: true, Got: 2_500_000, Need: 10_000_000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events\n  got  %+v\n  want %+v", got, want)
	}
	var lines []string
	for _, e := range got {
		lines = append(lines, e.Line())
	}
	if w := []string{"", "", "", "web    base      diffing", "imgforge: hello", "web    base      failed (2.0s)"}; !slices.Equal(lines, w) {
		t.Errorf("lines %q, want %q", lines, w)
	}
}
