package prefetch

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Refresh periods of the progress.
const (
	// redrawEvery is how often the terminal line is redrawn when no fetch
	// finishes, so that rate and time left stay current.
	redrawEvery = time.Second
	// plainEvery is how often a progress line is written when the output
	// is not a terminal.
	plainEvery = 5 * time.Second
)

// Widths of the terminal line.
const (
	// defaultWidth is the terminal width assumed when neither the terminal
	// nor $COLUMNS tells it.
	defaultWidth = 80
	// maxBarWidth and minBarWidth bound the cells between the brackets of
	// the bar; narrower than minBarWidth, the bar is left out.
	maxBarWidth, minBarWidth = 30, 10
)

// Progress writes prefetch's stderr: lines of text, and the progress of a
// run. On a terminal the progress is one line fitted to its width and
// redrawn in place under the text; elsewhere it is a plain line every few
// seconds. It is safe for concurrent use; as an io.Writer it takes whole
// lines (a logger's output).
type Progress struct {
	// mu guards the fields below and the writes to w.
	mu sync.Mutex
	// w is where everything is written (stderr).
	w io.Writer
	// width is the terminal's width; 0 when w is not a terminal.
	width int
	// now is the clock.
	now func() time.Time
	// started is when the run started.
	started time.Time
	// done and total are the files finished and to do; bytes is the size
	// of those finished.
	done, total int
	bytes       int64
	// drawn is set while the terminal line is on the screen.
	drawn bool
	// running is set between start and finish.
	running bool
	// lastPlain is when the last plain progress line was written.
	lastPlain time.Time
}

// NewProgress returns a Progress writing to w, drawing its line in place
// when w is a terminal.
func NewProgress(w io.Writer) *Progress {
	return newProgress(w, terminalWidth(w), time.Now)
}

// newProgress returns a Progress writing to w, a terminal width columns
// wide when width > 0, with the clock now.
func newProgress(w io.Writer, width int, now func() time.Time) *Progress {
	return &Progress{w: w, width: width, now: now}
}

// terminalWidth returns the width of w when it is a terminal (its own
// size, else $COLUMNS, else defaultWidth), or 0.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	cols, isTerminal := terminalColumns(f)
	switch {
	case !isTerminal:
		return 0
	case cols > 0:
		return cols
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	return defaultWidth
}

// start begins a run of total files.
func (p *Progress) start(total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.started, p.lastPlain, p.total, p.running = p.now(), p.now(), total, true
	p.draw()
}

// startTicks calls tick periodically, every redrawEvery on a terminal and
// every plainEvery otherwise, until the returned function is called.
func (p *Progress) startTicks() (stop func()) {
	every := plainEvery
	if p.width > 0 {
		every = redrawEvery
	}
	t := time.NewTicker(every)
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-t.C:
				p.tick()
			case <-done:
				return
			}
		}
	}()
	return func() {
		t.Stop()
		close(done)
		<-stopped
	}
}

// addTotal adds n files to do.
func (p *Progress) addTotal(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total += n
	p.draw()
}

// step counts one finished file of n bytes and redraws the terminal line.
func (p *Progress) step(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.bytes += n
	p.draw()
}

// tick redraws the terminal line, or writes a plain line when plainEvery
// has passed since the last one.
func (p *Progress) tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.width > 0 {
		p.draw()
		return
	}
	if now := p.now(); p.running && now.Sub(p.lastPlain) >= plainEvery {
		p.lastPlain = now
		_, _ = io.WriteString(p.w, "prefetch: "+p.status(", ")+"\n")
	}
}

// finish ends the run: the terminal line stays on the screen, and later
// lines are written under it.
func (p *Progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw()
	if p.drawn {
		_, _ = io.WriteString(p.w, "\n")
		p.drawn = false
	}
	p.running = false
}

// printf writes a formatted line above the progress line.
func (p *Progress) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(p, format, args...)
}

// Write writes b, which should end with a newline, above the progress
// line.
func (p *Progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		_, _ = io.WriteString(p.w, "\r\x1b[K") // erase the progress line
		p.drawn = false
	}
	n, err := p.w.Write(b)
	p.draw()
	return n, err
}

// draw draws the terminal line over the current line during a run on a
// terminal. p.mu is held.
func (p *Progress) draw() {
	if p.width == 0 || !p.running || p.total == 0 {
		return
	}
	_, _ = io.WriteString(p.w, "\r"+p.line()+"\x1b[K")
	p.drawn = true
}

// line renders the terminal line: a bar when there is room, then the
// status, cut to the width (the last column stays free, so the cursor
// never wraps).
func (p *Progress) line() string {
	status := p.status("  ")
	room := p.width - 1
	if bar := min(maxBarWidth, room-len(status)-3); bar >= minBarWidth {
		return renderBar(p.done, p.total, bar) + " " + status
	}
	if len(status) > room {
		status = status[:max(room, 0)]
	}
	return status
}

// status renders "12/51 files, 3.4 MiB, 1.2 MiB/s, 8s left" with sep
// between the parts; the time left is shown once something is done.
func (p *Progress) status(sep string) string {
	elapsed := p.now().Sub(p.started)
	parts := []string{fmt.Sprintf("%d/%d files", p.done, p.total), formatBytes(p.bytes)}
	if elapsed >= time.Second/10 {
		parts = append(parts, formatBytes(int64(float64(p.bytes)/elapsed.Seconds()))+"/s")
	}
	if p.done > 0 && p.done < p.total {
		left := time.Duration(float64(elapsed) * float64(p.total-p.done) / float64(p.done))
		parts = append(parts, left.Round(time.Second).String()+" left")
	}
	return strings.Join(parts, sep)
}

// renderBar renders "[=====>    ]" with width cells between the brackets.
func renderBar(done, total, width int) string {
	filled := width
	if total > 0 && done < total {
		filled = done * width / total
	}
	var b strings.Builder
	b.WriteByte('[')
	b.WriteString(strings.Repeat("=", filled))
	if filled < width {
		b.WriteByte('>')
		b.WriteString(strings.Repeat(" ", width-filled-1))
	}
	b.WriteByte(']')
	return b.String()
}

// formatBytes renders n with a binary unit and one decimal: "512 B",
// "3.4 MiB".
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
