package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imgforge/imgforge/pkg/build"
)

// clr is what a terminal progress line is erased with.
const clr = "\r\033[K"

// clock is a time source the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

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

func newTerminal() (*bytes.Buffer, *clock, *build.Progress) {
	var out bytes.Buffer
	c := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	return &out, c, build.NewProgress((&terminal{w: &out}).event, c.now)
}

func TestTerminal(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(p *build.Progress, c *clock)
		want string
	}{
		{
			name: "the line is redrawn and ends with a newline",
			run: func(p *build.Progress, c *clock) {
				s := p.Start("web", "packages")
				c.advance(time.Second)
				s.Update("installing haproxy")
				c.advance(time.Second)
				s.Done("done")
			},
			want: "web    packages    0.0s " +
				clr + "web    packages    1.0s installing haproxy" +
				clr + "web    packages  done (2.0s)\n",
		},
		{
			name: "a note erases the running line",
			run: func(p *build.Progress, c *clock) {
				s := p.Start("web", "base")
				p.Note("hello")
				p.Note("again")
				s.Update("")
				s.Fail()
			},
			want: "web    base        0.0s " + clr + "imgforge: hello\nimgforge: again\n" +
				"web    base        0.0s " + clr + "web    base      failed (0.0s)\n",
		},
		{
			name: "long lines are cut",
			run: func(p *build.Progress, c *clock) {
				p.Start("web", "packages").Update("installing " + strings.Repeat("libsomething ", 20))
			},
			want: "web    packages    0.0s " + clr + ("web    packages    0.0s installing " + strings.Repeat("libsomething ", 20))[:maxLine],
		},
		{
			name: "tool output: phases and a download bar",
			run: func(p *build.Progress, c *clock) {
				s := p.Start("web", "base")
				w := s.LogWriter(io.Discard)
				for _, l := range []string{
					"I: running apt-get update...",
					"Need to get 10.0 MB of archives.",
					"Get:1 http://deb.debian.org/debian bookworm/main amd64 a amd64 1 [2,500 kB]",
					"I: extracting archives...",
					"Get:2 http://deb.debian.org/debian bookworm/main amd64 b amd64 1 [20 MB]",
				} {
					c.advance(time.Second)
					fmt.Fprintln(w, l)
				}
			},
			want: "web    base        0.0s " +
				clr + "web    base        1.0s running apt-get update" +
				clr + "web    base        3.0s downloading [=====               ] 2.5/10.0 MB" +
				clr + "web    base        4.0s extracting archives [=====               ] 2.5/10.0 MB" +
				clr + "web    base        5.0s downloading [====================] 10.0/10.0 MB",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, c, p := newTerminal()
			tc.run(p, c)
			if got := out.String(); got != tc.want {
				t.Errorf("terminal\n  got  %q\n  want %q", got, tc.want)
			}
		})
	}
}

func TestBar(t *testing.T) {
	for _, tc := range []struct {
		got, total int64
		want       string
	}{
		{0, 10_000_000, "[                    ] 0.0/10.0 MB"},
		{5_000_000, 10_000_000, "[==========          ] 5.0/10.0 MB"},
		{9_999_999, 10_000_000, "[=================== ] 10.0/10.0 MB"},
		{10_000_000, 10_000_000, "[====================] 10.0/10.0 MB"},
		{30_000_000, 10_000_000, "[====================] 10.0/10.0 MB"},
	} {
		if got := bar(tc.got, tc.total); got != tc.want {
			t.Errorf("bar(%d, %d) = %q, want %q", tc.got, tc.total, got, tc.want)
		}
	}
}

// TestTerminalConcurrent draws stages of several roles at once, as a
// parallel build does; run with -race.
func TestTerminalConcurrent(t *testing.T) {
	out, _, p := newTerminal()
	roles := []string{"web", "dns", "db", "cache", "proxy", "mail"}
	var wg sync.WaitGroup
	for _, r := range roles {
		wg.Go(func() {
			s := p.Start(r, "packages")
			w := s.LogWriter(io.Discard)
			for i := range 50 {
				fmt.Fprintf(w, "Get:%d http://x bookworm/main amd64 p amd64 1 [1 kB]\n", i)
				s.Update("installing")
				p.Note("note from " + r)
			}
			s.Done("ok")
		})
	}
	wg.Wait()
	if n := strings.Count(out.String(), " ok (0.0s)\n"); n != len(roles) {
		t.Errorf("%d end lines, want %d", n, len(roles))
	}
}

// TestTerminalStages: with the stages of each role known, the line starts
// with "stage N/M" over the whole build, a role whose outputs ended
// counts all its stages, and tick redraws the running stage with its
// elapsed time.
func TestTerminalStages(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	term := &terminal{w: &out, stages: []roleStages{{"lb", 4}, {"web", 7}}}
	p := build.NewProgress(term.event, c.now)
	s := p.Start("lb", "base")
	c.advance(2 * time.Second)
	term.tick(c.now())
	c.advance(time.Second)
	term.tick(c.now())
	s.Done("cached")
	p.Start("lb", "packages").Done("cached")
	term.tick(c.now()) // nothing runs: nothing drawn
	p.Start("lb", "overlay").Done("cached")
	p.Start("lb", "outputs").Done("out/lb unchanged") // 4 of 4: the role is done
	p.Start("web", "base")
	want := "stage 1/11 lb     base        0.0s " +
		clr + "stage 1/11 lb     base        2.0s " +
		clr + "stage 1/11 lb     base        3.0s " +
		clr + "lb     base      cached (3.0s)\n" +
		"stage 2/11 lb     packages    0.0s " + clr + "lb     packages  cached (0.0s)\n" +
		"stage 3/11 lb     overlay     0.0s " + clr + "lb     overlay   cached (0.0s)\n" +
		"stage 4/11 lb     outputs     0.0s " + clr + "lb     outputs   out/lb unchanged (0.0s)\n" +
		"stage 5/11 web    base        0.0s "
	if got := out.String(); got != want {
		t.Errorf("terminal\n  got  %q\n  want %q", got, want)
	}
}

// TestPlainHeartbeat: without a terminal, a line says a stage still runs
// when nothing was written for 30 s, and no more often.
func TestPlainHeartbeat(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	l := &plainLog{w: &out}
	p := build.NewProgress(l.event, c.now)
	l.tick(c.now().Add(time.Hour)) // nothing started: no heartbeat
	s := p.Start("web", "base")
	for _, d := range []time.Duration{29, 1, 15, 14, 1} { // ticks at 29, 30, 45, 59, 60 s
		c.advance(d * time.Second)
		l.tick(c.now())
	}
	s.Update("compressing") // a line: the next heartbeat is 30 s after it
	c.advance(20 * time.Second)
	l.tick(c.now())
	c.advance(10 * time.Second)
	l.tick(c.now())
	s.Done("ok")
	c.advance(time.Minute)
	l.tick(c.now())
	want := "web    base      still running (30s)\n" +
		"web    base      still running (60s)\n" +
		"web    base      compressing\n" +
		"web    base      still running (90s)\n" +
		"web    base      ok (90.0s)\n"
	if got := out.String(); got != want {
		t.Errorf("plain log\n  got  %q\n  want %q", got, want)
	}
}

func TestProgressModes(t *testing.T) {
	for _, tc := range []struct {
		mode, want string
	}{
		{progressQuiet, ""},
		{progressPlain, "imgforge: hello\nweb    base      ok (0.0s)\n"},
		{progressAuto, "imgforge: hello\nweb    base      ok (0.0s)\n"}, // a buffer is no terminal
	} {
		var out bytes.Buffer
		p, stop := newProgress(&out, tc.mode, []roleStages{{"web", 4}}, nil)
		p.Note("hello")
		p.Start("web", "base").Done("ok")
		stop()
		stop() // twice is fine
		if got := out.String(); got != tc.want {
			t.Errorf("--progress=%s: %q, want %q", tc.mode, got, tc.want)
		}
	}
	if _, _, err := runCLI(t, nil, "build", "--progress", "fancy", "lb"); err == nil || err.Error() != `--progress "fancy": accepted: auto, plain, quiet` {
		t.Errorf("build --progress fancy: %v", err)
	}
}

// TestTerminalEstimate: a stage's line says how long it took when it last
// ran, in the role or else in any.
func TestTerminalEstimate(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	term := &terminal{w: &out, estimates: map[string]map[string]float64{"lb": {"base": 85.4}, "": {"base": 70, "packages": 20, "overlay": 0.3}}}
	p := build.NewProgress(term.event, c.now)
	p.Start("lb", "base")
	c.advance(2 * time.Second)
	term.tick(c.now())
	p.Start("web", "packages")
	p.Start("web", "overlay") // under a second: no estimate
	want := "lb     base        0.0s of ~85s " + clr + "lb     base        2.0s of ~85s " +
		clr + "web    packages    0.0s of ~20s " + clr + "web    overlay     0.0s "
	if got := out.String(); got != want {
		t.Errorf("terminal\n  got  %q\n  want %q", got, want)
	}
}
