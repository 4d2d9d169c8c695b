// Package accesslog writes gemproxy's access log: one line per request,
// formatted without allocating into a reused buffer, in the layout of
// log/slog's text or JSON handler, and written through a buffered writer
// that is flushed at least every FlushInterval and on Close.
//
// Lines wait in the buffer for up to FlushInterval, so they can reach the
// output after unbuffered log lines written later, and a process killed
// with SIGKILL loses at most the last FlushInterval of them.
package accesslog

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// Format selects the layout of the lines.
type Format int

const (
	// Text writes key=value pairs, as slog.TextHandler does.
	Text Format = iota
	// JSON writes one JSON object per line, as slog.JSONHandler does.
	JSON
)

// Defaults of Options.
const (
	// DefaultFlushInterval is the longest a line waits in the buffer.
	DefaultFlushInterval = time.Second
	// DefaultBufferSize is the size of the write buffer in bytes.
	DefaultBufferSize = 64 << 10
)

// Options configures New. Zero values select the defaults.
type Options struct {
	// Format is the layout of the lines. Default Text.
	Format Format
	// FlushInterval is the longest a line waits in the buffer before it is
	// written out. Default DefaultFlushInterval (1s).
	FlushInterval time.Duration
	// BufferSize is the size of the write buffer in bytes; a line that
	// does not fit flushes it. Default DefaultBufferSize (64 KiB).
	BufferSize int
}

// Entry is what one access line reports.
type Entry struct {
	// Time is when the request finished (the line's time field).
	Time time.Time
	// Method is the request method.
	Method string
	// Endpoint is the route-table name of the request.
	Endpoint string
	// Status is the response status code.
	Status int
	// Bytes is the response body size.
	Bytes int64
	// Duration is the time from request to end of response, written in
	// seconds as duration_s.
	Duration time.Duration
	// Cache is how the cache answered (hit, miss, ...), empty when it was
	// not consulted.
	Cache string
}

// Logger writes access lines. It is safe for concurrent use; a nil
// *Logger discards every line.
type Logger struct {
	format Format
	// stop ends the flusher goroutine, which closes done when it returns.
	stop, done chan struct{}

	mu sync.Mutex
	w  *bufio.Writer
	// line is the reused buffer one line is formatted into.
	line []byte
	// closed is set by Close: later lines are written out at once.
	closed bool
}

// New returns a Logger writing to w and starts its flusher; Close stops it
// and writes out what is buffered.
func New(w io.Writer, opts Options) *Logger {
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.BufferSize <= 0 {
		opts.BufferSize = DefaultBufferSize
	}
	l := &Logger{
		format: opts.Format,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		w:      bufio.NewWriterSize(w, opts.BufferSize),
		line:   make([]byte, 0, 512),
	}
	go l.flushEvery(opts.FlushInterval)
	return l
}

// Log writes the line of e. Write errors are kept by the buffer and
// returned by Flush or Close.
func (l *Logger) Log(e Entry) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.format == JSON {
		l.line = appendJSON(l.line[:0], &e)
	} else {
		l.line = appendText(l.line[:0], &e)
	}
	_, _ = l.w.Write(l.line)
	if l.closed {
		_ = l.w.Flush()
	}
}

// Flush writes out the buffered lines.
func (l *Logger) Flush() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Flush()
}

// Close stops the flusher and writes out the buffered lines. Lines logged
// after Close are written out at once. Close may be called more than once.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	first := !l.closed
	l.closed = true
	l.mu.Unlock()
	if first {
		close(l.stop)
		<-l.done
	}
	return l.Flush()
}

// flushEvery flushes the buffer every interval until stop is closed.
func (l *Logger) flushEvery(interval time.Duration) {
	defer close(l.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			_ = l.Flush()
		}
	}
}
