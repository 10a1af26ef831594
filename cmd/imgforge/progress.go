package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/imgforge/imgforge/pkg/build"
)

// progress reports a build's events on the command's standard error: as
// log lines, or, on a terminal, with the running stage's line redrawn.
func progress(cmd *cobra.Command) *build.Progress {
	stderr := cmd.ErrOrStderr()
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return build.NewProgress((&terminal{w: stderr}).event, nil)
	}
	return build.NewProgress(build.LogLines(stderr), nil)
}

// terminal draws events on a terminal: the running stage's line is redrawn
// with its time, what it does and a bar for downloads; ends and notes get
// lines of their own.
type terminal struct {
	w     io.Writer
	mu    sync.Mutex
	drawn bool // a stage's line is on the screen, without its newline
}

// maxLine is the longest redrawn line.
const maxLine = 110

func (t *terminal) event(e build.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.drawn {
		fmt.Fprint(t.w, "\r\033[K")
		t.drawn = false
	}
	switch e.Kind {
	case build.StageStarted, build.StageUpdated:
		line := fmt.Sprintf("%s %5.1fs %s", e.Prefix(), e.Elapsed().Seconds(), e.Message)
		if e.Need > 0 {
			line += " " + bar(e.Got, e.Need)
		}
		if len(line) > maxLine {
			line = line[:maxLine]
		}
		fmt.Fprint(t.w, line)
		t.drawn = true
	default:
		if l := e.Line(); l != "" {
			fmt.Fprintln(t.w, l)
		}
	}
}

func bar(got, total int64) string {
	const width = 20
	if got > total {
		got = total
	}
	n := int(float64(width) * float64(got) / float64(total))
	return fmt.Sprintf("[%s%s] %.1f/%.1f MB", strings.Repeat("=", n), strings.Repeat(" ", width-n), float64(got)/1e6, float64(total)/1e6)
}
