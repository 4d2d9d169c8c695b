package prefetch

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// TestRenderBar checks the progress bar's shape.
func TestRenderBar(t *testing.T) {
	tests := []struct {
		done, total, width int
		want               string
	}{
		{0, 51, 10, "[>         ]"},
		{12, 51, 10, "[==>       ]"},
		{26, 51, 10, "[=====>    ]"},
		{50, 51, 10, "[=========>]"},
		{51, 51, 10, "[==========]"},
	}
	for _, tt := range tests {
		if got := renderBar(tt.done, tt.total, tt.width); got != tt.want {
			t.Errorf("renderBar(%d, %d, %d) = %q, want %q", tt.done, tt.total, tt.width, got, tt.want)
		}
	}
}

// TestProgressOnTerminal checks the line is redrawn in place with files,
// bytes, rate and time left, and lines are written above it.
func TestProgressOnTerminal(t *testing.T) {
	clock := testupstream.NewClock(time.Unix(1e9, 0))
	var tty bytes.Buffer
	p := newProgress(&tty, 80, clock.Now)
	p.start(4)
	clock.Advance(2 * time.Second)
	p.step(3 << 20)
	p.printf("x.gem: %s\n", "broken")
	p.finish()
	p.printf("after\n")

	first := "\r[>                             ] 0/4 files  0 B\x1b[K"
	second := "\r[=======>                      ] 1/4 files  3.0 MiB  1.5 MiB/s  6s left\x1b[K"
	want := first + second + "\r\x1b[Kx.gem: broken\n" + second + second + "\nafter\n"
	if tty.String() != want {
		t.Errorf("terminal output\n%q\nwant\n%q", tty.String(), want)
	}
}

// TestProgressFitsTheWidth checks the terminal line never reaches the last
// column: the bar narrows, then goes, then the status is cut.
func TestProgressFitsTheWidth(t *testing.T) {
	clock := testupstream.NewClock(time.Unix(1e9, 0))
	for _, width := range []int{200, 80, 60, 40, 20, 5} {
		p := newProgress(&bytes.Buffer{}, width, clock.Now)
		p.start(1234)
		clock.Advance(time.Minute)
		p.done, p.bytes = 567, 890<<20
		line := p.line()
		if len(line) > width-1 {
			t.Errorf("width %d: line %q is %d long", width, line, len(line))
		}
		hasBar := strings.HasPrefix(line, "[")
		if wantBar := width >= 80; hasBar != wantBar {
			t.Errorf("width %d: line %q: bar %v, want %v", width, line, hasBar, wantBar)
		}
		if width >= 60 && !strings.HasSuffix(line, "567/1234 files  890.0 MiB  14.8 MiB/s  1m11s left") {
			t.Errorf("width %d: line %q lacks the whole status", width, line)
		}
	}
}

// TestProgressPlain checks that without a terminal the progress is a plain
// line every plainEvery, and lines are written as they come.
func TestProgressPlain(t *testing.T) {
	clock := testupstream.NewClock(time.Unix(1e9, 0))
	var out bytes.Buffer
	p := newProgress(&out, 0, clock.Now)
	p.start(10)
	p.step(100)
	p.printf("x.gem: broken\n")
	clock.Advance(plainEvery - time.Second)
	p.tick()
	clock.Advance(time.Second)
	p.tick()
	p.tick()
	p.finish()
	p.tick()
	want := "x.gem: broken\nprefetch: 1/10 files, 100 B, 20 B/s, 45s left\n"
	if out.String() != want {
		t.Errorf("plain output %q\nwant %q", out.String(), want)
	}
}

// TestFormatBytes checks the binary units.
func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3<<20 + 1<<19: "3.5 MiB", 10 << 30: "10.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
