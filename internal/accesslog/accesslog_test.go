package accesslog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// sampleEntry is a typical cache hit.
var sampleEntry = Entry{
	Time:     time.Date(2025, 3, 4, 5, 6, 7, 891234567, time.FixedZone("CET", 3600)),
	Method:   "GET",
	Endpoint: "info",
	Status:   200,
	Bytes:    12345,
	Duration: 79238 * time.Nanosecond,
	Cache:    "hit",
}

// trickyStrings are values a client could smuggle into a field: they must
// be quoted or escaped exactly as slog does.
var trickyStrings = []string{
	"", "GET", `a"b`, `back\slash`, "sp ace", "eq=ual", "new\nline", "tab\t", "nul\x00", "del\x7f",
	"caf\u00e9", "bad\xffutf8", "line\u2028sep", "para\u2029sep", "nbsp\u00a0", "<html>&", "emoji\U0001F600",
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// String returns everything written so far.
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// slogLine is the line slog's handler h writes for e, with duration_s
// given as its already formatted value.
func slogLine(t *testing.T, format Format, e Entry) string {
	t.Helper()
	var out bytes.Buffer
	var h slog.Handler = slog.NewTextHandler(&out, nil)
	seconds := slog.String("duration_s", strconv.FormatFloat(e.Duration.Seconds(), 'f', durationDigits, 64))
	if format == JSON {
		h = slog.NewJSONHandler(&out, nil)
		seconds = slog.Any("duration_s", json.Number(seconds.Value.String()))
	}
	r := slog.NewRecord(e.Time, slog.LevelInfo, "request", 0)
	r.AddAttrs(slog.String("method", e.Method), slog.String("endpoint", e.Endpoint),
		slog.Int("status", e.Status), slog.Int64("bytes", e.Bytes), seconds, slog.String("cache", e.Cache))
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// TestLinesMatchSlog checks that both formats write, byte for byte, the
// line slog's handler writes for the same fields, whatever bytes the
// string fields hold.
func TestLinesMatchSlog(t *testing.T) {
	formats := []struct {
		name   string
		format Format
		append func([]byte, *Entry) []byte
	}{
		{"text", Text, appendText},
		{"json", JSON, appendJSON},
	}
	for _, f := range formats {
		for _, s := range trickyStrings {
			t.Run(f.name+"/"+strconv.Quote(s), func(t *testing.T) {
				e := sampleEntry
				e.Method, e.Endpoint, e.Cache = s, s+"x", "y"+s
				got := string(f.append(nil, &e))
				if want := slogLine(t, f.format, e); got != want {
					t.Errorf("got  %q\nwant %q", got, want)
				}
			})
		}
	}
}

// TestZeroAllocsPerLine checks that logging a line allocates nothing, in
// both formats.
func TestZeroAllocsPerLine(t *testing.T) {
	for _, format := range []Format{Text, JSON} {
		t.Run(strconv.Itoa(int(format)), func(t *testing.T) {
			l := New(io.Discard, Options{Format: format})
			defer l.Close()
			e := sampleEntry
			e.Time = time.Now() // the local zone, as in production
			if n := testing.AllocsPerRun(1000, func() { l.Log(e) }); n != 0 {
				t.Errorf("%v allocations per line, want 0", n)
			}
		})
	}
}

// jsonLine is the decoded form of a JSON access line.
type jsonLine struct {
	Time      time.Time `json:"time"`
	Level     string    `json:"level"`
	Msg       string    `json:"msg"`
	Method    string    `json:"method"`
	Endpoint  string    `json:"endpoint"`
	Status    int       `json:"status"`
	Bytes     int64     `json:"bytes"`
	DurationS float64   `json:"duration_s"`
	Cache     string    `json:"cache"`
}

// TestJSONLinesParse logs lines from many goroutines, closes the logger
// and decodes every line with encoding/json: all are there, whole, with
// their fields.
func TestJSONLinesParse(t *testing.T) {
	var out syncBuffer
	l := New(&out, Options{Format: JSON, BufferSize: 4096, FlushInterval: time.Hour})
	const writers, perWriter = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				e := sampleEntry
				e.Endpoint = fmt.Sprintf("ep%d \"%d\"\n", w, i)
				e.Bytes = int64(w*perWriter + i)
				l.Log(e)
			}
		})
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != writers*perWriter {
		t.Fatalf("%d lines, want %d", len(lines), writers*perWriter)
	}
	seen := make(map[int64]bool)
	for _, line := range lines {
		var got jsonLine
		if err := json.Unmarshal([]byte(line), &got); err != nil {
			t.Fatalf("%v: %q", err, line)
		}
		w, i := got.Bytes/perWriter, got.Bytes%perWriter
		want := jsonLine{Time: sampleEntry.Time, Level: "INFO", Msg: "request", Method: "GET",
			Endpoint: fmt.Sprintf("ep%d \"%d\"\n", w, i), Status: 200, Bytes: got.Bytes, DurationS: 0.000079, Cache: "hit"}
		if !got.Time.Equal(want.Time) {
			t.Fatalf("time %v, want %v", got.Time, want.Time)
		}
		got.Time = want.Time
		if got != want || seen[got.Bytes] {
			t.Fatalf("decoded %+v (seen before: %v), want %+v", got, seen[got.Bytes], want)
		}
		seen[got.Bytes] = true
	}
}

// TestFlushedWithinASecond checks that a line reaches the output within
// about a second without Flush or Close, and not synchronously.
func TestFlushedWithinASecond(t *testing.T) {
	var out syncBuffer
	l := New(&out, Options{})
	defer l.Close()
	logged := time.Now()
	l.Log(sampleEntry)
	if out.String() != "" {
		t.Fatalf("line written at once, not buffered: %q", out.String())
	}
	deadline := logged.Add(DefaultFlushInterval + 500*time.Millisecond)
	for out.String() == "" {
		if time.Now().After(deadline) {
			t.Fatalf("line not flushed %v after it was logged", time.Since(logged))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCloseFlushes checks that Close writes out every buffered line, that
// a line logged after Close is written at once, and that a second Close
// is harmless.
func TestCloseFlushes(t *testing.T) {
	var out syncBuffer
	l := New(&out, Options{FlushInterval: time.Hour})
	const n = 100
	for range n {
		l.Log(sampleEntry)
	}
	if out.String() != "" {
		t.Fatalf("%d bytes written before Close with a 64 KiB buffer", len(out.String()))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "msg=request"); got != n {
		t.Fatalf("%d lines after Close, want %d", got, n)
	}
	l.Log(sampleEntry)
	if got := strings.Count(out.String(), "msg=request"); got != n+1 {
		t.Fatalf("%d lines after a line logged after Close, want %d", got, n+1)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestNilLoggerDiscards checks that a nil Logger can be used and does
// nothing.
func TestNilLoggerDiscards(t *testing.T) {
	var l *Logger
	l.Log(sampleEntry)
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkLine compares one access line through slog (the attributes the
// proxy used to log) with this package, in both formats. The output is
// /dev/null, a file like stderr: slog makes one write system call per
// line, this package one per buffer.
func BenchmarkLine(b *testing.B) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	e := sampleEntry
	e.Time = time.Now()
	handlers := []struct {
		name string
		h    slog.Handler
	}{
		{"slog/text", slog.NewTextHandler(devNull, nil)},
		{"slog/json", slog.NewJSONHandler(devNull, nil)},
	}
	for _, h := range handlers {
		b.Run(h.name, func(b *testing.B) {
			log := slog.New(h.h)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				log.LogAttrs(ctx, slog.LevelInfo, "request",
					slog.String("method", e.Method), slog.String("endpoint", e.Endpoint),
					slog.Int("status", e.Status), slog.Int64("bytes", e.Bytes),
					slog.Duration("duration", e.Duration), slog.String("cache", e.Cache))
			}
		})
	}
	for _, f := range []struct {
		name   string
		format Format
	}{{"accesslog/text", Text}, {"accesslog/json", JSON}} {
		b.Run(f.name, func(b *testing.B) {
			l := New(devNull, Options{Format: f.format})
			defer l.Close()
			b.ReportAllocs()
			for b.Loop() {
				l.Log(e)
			}
		})
		// Requests on every core logging at once: what the lock costs.
		b.Run(f.name+"/parallel", func(b *testing.B) {
			l := New(devNull, Options{Format: f.format})
			defer l.Close()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l.Log(e)
				}
			})
		})
	}
}

// stalledWriter is an output whose writes wait until release is closed,
// as a disk that stalls; it keeps what is written.
type stalledWriter struct {
	release chan struct{}
	out     syncBuffer
}

// Write waits for release, then keeps p.
func (w *stalledWriter) Write(p []byte) (int, error) {
	<-w.release
	return w.out.Write(p)
}

// TestLogDoesNotWaitForAStalledOutput checks that requests do not wait
// for an output that stalls while the buffers in flight hold their lines,
// and that every line is written out, in order, once it answers again.
func TestLogDoesNotWaitForAStalledOutput(t *testing.T) {
	w := &stalledWriter{release: make(chan struct{})}
	const size = 1 << 10
	l := New(w, Options{BufferSize: size, FlushInterval: time.Hour})
	perBuffer := size / len(appendText(nil, &sampleEntry))
	n := perBuffer * (bufferCount - 2) // a few buffers, all handed to the stalled writer
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		for i := range n {
			e := sampleEntry
			e.Bytes = int64(i)
			l.Log(e)
		}
	}()
	select {
	case <-logged:
	case <-time.After(10 * time.Second):
		t.Fatal("Log waits for a stalled output")
	}
	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(w.out.String(), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("%d lines written, want %d", len(lines), n)
	}
	for i, line := range lines {
		if !strings.Contains(line, fmt.Sprintf(" bytes=%d ", i)) {
			t.Fatalf("line %d out of order: %s", i, line)
		}
	}
}
