package testupstream

import (
	"bytes"
	"compress/gzip"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gemproxy/gemproxy/internal/rubyfmt"
)

// Fault describes a deterministic failure applied to requests whose URL path
// starts with the prefix given to SetFault. Fields combine: Reset and Status
// replace the response; Corrupt, Truncate, LieLength, Stall, Header and
// SendStatus alter the normal response (Corrupt first, then
// ContentEncoding). The zero Fault
// changes nothing.
type Fault struct {
	// Status, when non-zero, answers with this status instead of the normal
	// response, Content-Type text/plain and Body (default "Retry later\n"
	// for 429, as Rack::Attack sends, else the status text + "\n").
	Status int
	// RetryAfter is sent as the Retry-After header with Status; "" sends
	// none (rubygems.org's nginx sends none on 429, Rack::Attack does).
	RetryAfter string
	// Body overrides the body of a Status response.
	Body string
	// Reset hijacks the connection and closes it with a TCP RST without
	// writing any response (HTTP/2: the stream is aborted).
	Reset bool
	// Truncate sends the normal status and headers with the full
	// Content-Length, then only the first half of the body, then closes the
	// connection.
	Truncate bool
	// LieLength, when > 0, declares a Content-Length that many bytes larger
	// than the body, sends the whole body, then closes the connection.
	LieLength int
	// Corrupt flips (XOR 0xFF) the byte at offset len/2 of the body while
	// keeping every header (Content-Length, ETag, digests) unchanged.
	Corrupt bool
	// ContentEncoding, when set, sends the normal response with this
	// Content-Encoding whatever the request's Accept-Encoding: the body is
	// gzipped once per gzip or x-gzip coding listed, and left as it is for
	// identity and for codings the fake does not produce (deflate, br, …:
	// the bytes are then mislabelled, as a broken upstream would send
	// them). Validators (ETag, digests) stay those of the identity body.
	// Meant for identity responses (GzipCompactIndex off).
	ContentEncoding string
	// Header is set on the normal response, replacing the handler's values
	// of the same names (e.g. Set-Cookie, Cache-Control: private, Vary: *).
	Header http.Header
	// SendStatus, when non-zero, sends the normal response (headers and
	// body) with this status instead of the handler's (e.g. 203 or a 206
	// without Content-Range). A 304 or 204 of the handler is kept.
	SendStatus int
	// Stall writes the first StallAfter bytes of the body (0 = none, just
	// the headers), flushes, and blocks until the request context ends
	// (the response is then aborted), Release is closed (the rest of the
	// body is then sent normally), Server.Close is called or
	// Options.MaxStall passes (both abort). StallAfter > 0 implies Stall.
	Stall bool
	// StallAfter is the number of body bytes sent before stalling.
	StallAfter int
	// Release ends a stall when closed; nil means only the request context,
	// Server.Close or MaxStall end it.
	Release <-chan struct{}
	// Count applies the fault to the next Count matching requests only and
	// then removes it; 0 means every matching request.
	Count int

	remaining int // requests left when Count > 0
}

// early reports whether the fault replaces the response entirely.
func (f *Fault) early() bool { return f.Reset || f.Status != 0 }

// stalls reports whether the fault stalls the body.
func (f *Fault) stalls() bool { return f.Stall || f.StallAfter > 0 }

// needsBody reports whether the fault alters the normal response, which
// must then be recorded first.
func (f *Fault) needsBody() bool {
	return f.Truncate || f.LieLength > 0 || f.Corrupt || f.ContentEncoding != "" || f.stalls() ||
		len(f.Header) > 0 || f.SendStatus != 0
}

// encode applies ContentEncoding to body (see Fault.ContentEncoding).
func (f *Fault) encode(body []byte) []byte {
	for _, coding := range strings.Split(f.ContentEncoding, ",") {
		if c := strings.ToLower(strings.TrimSpace(coding)); c == "gzip" || c == "x-gzip" {
			body = rubyfmt.Gzip(body, time.Time{}, gzip.DefaultCompression)
		}
	}
	return body
}

// SetFault installs f for every request whose URL path starts with
// pathPrefix, replacing any fault with the same prefix. When several
// prefixes match, the longest wins. The request is still logged and counted.
func (s *Server) SetFault(pathPrefix string, f Fault) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	f.remaining = f.Count
	s.faults[pathPrefix] = &f
}

// ClearFaults removes every fault. Requests already stalled stay stalled
// until their own end condition (use Close or Release to end them).
func (s *Server) ClearFaults() {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.faults = map[string]*Fault{}
}

// takeFaultLocked returns the fault to apply to path (a copy) and consumes
// one use of a counted fault. s.logMu must be held.
func (s *Server) takeFaultLocked(path string) *Fault {
	best := ""
	var found *Fault
	for p, f := range s.faults {
		if strings.HasPrefix(path, p) && (found == nil || len(p) > len(best)) {
			best, found = p, f
		}
	}
	if found == nil {
		return nil
	}
	if found.Count > 0 {
		found.remaining--
		if found.remaining <= 0 {
			delete(s.faults, best)
		}
	}
	c := *found
	return &c
}

// applyEarlyFault answers a Reset or Status fault.
func (s *Server) applyEarlyFault(w http.ResponseWriter, f *Fault) {
	if f.Reset {
		abortResponse(w, true, false)
		return
	}
	body := f.Body
	if body == "" {
		if f.Status == http.StatusTooManyRequests {
			body = "Retry later\n"
		} else {
			body = http.StatusText(f.Status) + "\n"
		}
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	if f.RetryAfter != "" {
		h.Set("Retry-After", f.RetryAfter)
	}
	h.Set("Content-Length", itoa(len(body)))
	w.WriteHeader(f.Status)
	_, _ = w.Write([]byte(body))
}

// emitWithFault sends the recorded normal response altered by f.
func (s *Server) emitWithFault(w http.ResponseWriter, r *http.Request, rec *recorder, f *Fault) {
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	for k, v := range f.Header {
		w.Header()[http.CanonicalHeaderKey(k)] = v
	}
	status := rec.status
	body := rec.body.Bytes()
	if status == http.StatusNotModified || status == http.StatusNoContent || status < 200 {
		w.WriteHeader(status)
		return
	}
	if f.SendStatus != 0 {
		status = f.SendStatus
	}
	if f.Corrupt && len(body) > 0 {
		body = bytes.Clone(body)
		body[len(body)/2] ^= 0xFF
	}
	if f.ContentEncoding != "" {
		w.Header().Set("Content-Encoding", f.ContentEncoding)
		body = f.encode(body)
	}
	declared := len(body)
	if f.LieLength > 0 {
		declared += f.LieLength
	}
	w.Header().Set("Content-Length", itoa(declared))
	w.WriteHeader(status)
	send := body
	if f.Truncate {
		send = body[:len(body)/2]
	}
	if f.stalls() {
		at := min(f.StallAfter, len(send))
		_, _ = w.Write(send[:at])
		_ = http.NewResponseController(w).Flush()
		if !s.waitStall(r, f) {
			abortResponse(w, false, true)
			return
		}
		send = send[at:]
	}
	_, _ = w.Write(send)
	if f.Truncate || f.LieLength > 0 {
		abortResponse(w, false, true)
	}
}

// waitStall blocks for a stall; it returns true when Release was closed.
func (s *Server) waitStall(r *http.Request, f *Fault) bool {
	d := s.opts.MaxStall
	if d <= 0 {
		d = 30 * time.Second
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.Release:
		return true
	case <-r.Context().Done():
	case <-s.closing:
	case <-t.C:
	}
	return false
}

// abortResponse ends the response without completing it: it flushes what
// was written (when flush is set), then hijacks and closes the connection
// (with SO_LINGER 0, i.e. a TCP RST, when rst is set). Where hijacking is
// impossible (HTTP/2) it panics with http.ErrAbortHandler, which aborts the
// stream.
func abortResponse(w http.ResponseWriter, rst, flush bool) {
	rc := http.NewResponseController(w)
	if flush {
		_ = rc.Flush()
	}
	conn, _, err := rc.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok && rst {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// recorder buffers a handler's response so a fault can alter it.
type recorder struct {
	header http.Header  // headers set by the handler
	status int          // status passed to WriteHeader (200 if none)
	body   bytes.Buffer // body written by the handler
}

// newRecorder returns an empty recorder (status 200).
func newRecorder() *recorder { return &recorder{header: http.Header{}, status: http.StatusOK} }

// Header implements http.ResponseWriter.
func (r *recorder) Header() http.Header { return r.header }

// Write implements http.ResponseWriter.
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

// WriteHeader implements http.ResponseWriter.
func (r *recorder) WriteHeader(code int) { r.status = code }
