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
