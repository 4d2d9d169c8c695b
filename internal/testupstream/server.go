package testupstream

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DigestStyle selects how compact-index responses carry SHA-256 digests.
type DigestStyle int

// Digest styles.
const (
	// DigestRails sends what the Rails app sends: `Digest: sha-256=<b64>`
	// and `Repr-Digest: sha-256=:<b64>:` (the default).
	DigestRails DigestStyle = iota
	// DigestFastly sends the quoted form seen through Fastly/S3 on both
	// headers: `sha-256="<b64>"`.
	DigestFastly
	// DigestNone omits Digest and Repr-Digest entirely.
	DigestNone
)

// DefaultOwner is the owner (user handle/email) of gems published through
// Publish, PublishAll and PublishCorpus when Options.Owner is empty.
const DefaultOwner = "owner@example.com"

// KeyInfo describes one API key accepted by the write endpoints.
type KeyInfo struct {
	// Owner is the user (handle or email) the key belongs to. New gems
	// pushed with the key are owned by Owner.
	Owner string
	// MFA means the owner has MFA at level ui_and_api: every write needs
	// an OTP header equal to Options.OTP.
	MFA bool
	// Scopes lists the scopes the key grants (push_rubygem, yank_rubygem,
	// add_owner, update_owner, remove_owner, index_rubygems,
	// access_webhooks, show_dashboard). nil grants every scope; an empty
	// non-nil slice grants none.
	Scopes []string
	// Gem, when non-empty, restricts the key to that gem.
	Gem string
}

// has reports whether the key grants scope.
func (k KeyInfo) has(scope string) bool {
	if k.Scopes == nil {
		return true
	}
	for _, s := range k.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// Options configures a Server. The zero value is a working rubygems.org
// lookalike with no API keys.
type Options struct {
	// Marshal produces the Ruby Marshal files; nil means Go-encoded specs
	// files and placeholder quick gemspecs (see MarshalFunc, rubyfmt.RubyMarshal).
	Marshal MarshalFunc
	// Keys maps raw API keys (the Authorization header value) to their
	// owner, MFA flag and scopes. Keys created through POST /api/v1/api_key
	// are added at run time. nil means no keys.
	Keys map[string]KeyInfo
	// BasicUsers maps HTTP Basic user names to passwords, for
	// /api/v1/api_key and /api/v1/profile/me. nil means none.
	BasicUsers map[string]string
	// OTP is the one valid OTP code for users with MFA. "" means no code is
	// valid (every MFA-protected write fails with the "incorrect" text when
	// an OTP header is sent).
	OTP string
	// Owner owns gems published through Publish/PublishAll/PublishCorpus;
	// "" means DefaultOwner.
	Owner string
	// Digest selects the digest header style of compact-index responses;
	// zero means DigestRails.
	Digest DigestStyle
	// IgnoreRange makes compact-index and artifact responses ignore Range
	// headers (always 200 with the full body), like servers that do not
	// support ranges. false means ranges are honoured.
	IgnoreRange bool
	// GzipCompactIndex gzips compact-index 200 responses when the request's
	// Accept-Encoding allows gzip and has no Range (as Fastly may do), with
	// Vary: Accept-Encoding. Validators stay those of the identity body.
	// false means identity only.
	GzipCompactIndex bool
	// InfoV1 omits the created_at field from /info lines (compact index
	// format v1, as served before mid-2026). false means format v2.
	InfoV1 bool
	// Now returns the current time for created_at stamps, Last-Modified and
	// the /versions header; nil means time.Now. Times are truncated to
	// seconds and converted to UTC.
	Now func() time.Time
	// MaxStall bounds how long a StallAfter fault blocks when neither the
	// request context ends nor Release is closed; 0 means 30 seconds.
	MaxStall time.Duration
}

// Request is one logged request.
type Request struct {
	// Method is the HTTP method.
	Method string
	// Path is the URL path.
	Path string
	// RawQuery is the encoded query string without '?'.
	RawQuery string
	// Header is a clone of the request headers; Host is stored as "Host".
	Header http.Header
	// BodySHA256 is the lowercase hex SHA-256 of the request body.
	BodySHA256 string
	// BodyLen is the number of body bytes received.
	BodyLen int64
}

// Server is an http.Handler that behaves like rubygems.org. It is safe for
// concurrent use. Create it with New (or Start in tests).
type Server struct {
	opts Options // configuration, read-only after New

	logMu    sync.Mutex        // guards log, counts, faults and latency
	log      []Request         // every request since New or Reset
	counts   map[string]int    // requests per URL path
	faults   map[string]*Fault // installed faults by path prefix
	latency  time.Duration     // added before every response
	closing  chan struct{}     // closed by Close
	closeOne sync.Once         // makes Close idempotent

	mu    sync.RWMutex       // guards st, keys and specs.lastErr
	st    *state             // the gem database
	keys  map[string]*apiKey // API keys by raw value
	specs specsCache         // cached specs files
}

// New returns a Server configured by opts. The /versions file starts with a
// "created_at:" header stamped with opts.Now and no gems.
func New(opts Options) *Server {
	s := &Server{
		opts:    opts,
		counts:  map[string]int{},
		faults:  map[string]*Fault{},
		closing: make(chan struct{}),
		keys:    map[string]*apiKey{},
	}
	for k, info := range opts.Keys {
		s.keys[k] = &apiKey{info: info}
	}
	s.st = newState(s.now())
	return s
}

// Start creates a Server and an httptest.Server serving it, and registers
// cleanups in the right order: Server.Close (which releases stalled and
// sleeping handlers) runs before httptest.Server.Close, so shutdown never
// deadlocks.
func Start(tb testing.TB, opts Options) (*Server, *httptest.Server) {
	tb.Helper()
	s := New(opts)
	ts := httptest.NewServer(s)
	tb.Cleanup(ts.Close)
	tb.Cleanup(s.Close)
	return s, ts
}

// Close releases every handler blocked in a stall or a latency sleep (they
// abort their responses) and makes later stalls and sleeps return at once.
// Call it before httptest.Server.Close when faults or latency are in use.
// It is idempotent; the Server keeps serving non-blocking requests.
func (s *Server) Close() {
	s.closeOne.Do(func() { close(s.closing) })
}

// now returns the server clock, truncated to seconds, in UTC.
func (s *Server) now() time.Time {
	f := s.opts.Now
	if f == nil {
		f = time.Now
	}
	return f().UTC().Truncate(time.Second)
}

// owner returns the owner of gems published through the Go API.
func (s *Server) owner() string {
	if s.opts.Owner != "" {
		return s.opts.Owner
	}
	return DefaultOwner
}

// Requests returns how many requests were received for exactly this URL path
// since New or the last Reset.
func (s *Server) Requests(path string) int {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.counts[path]
}

// Log returns a copy of every request received since New or the last Reset,
// in arrival order.
func (s *Server) Log() []Request {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	out := make([]Request, len(s.log))
	copy(out, s.log)
	return out
}

// Paths returns the logged request paths in arrival order (a convenience
// over Log).
func (s *Server) Paths() []string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	out := make([]string, len(s.log))
	for i, r := range s.log {
		out[i] = r.Path
	}
	return out
}

// Reset clears the request log and the per-path counters. Faults, latency
// and published gems are kept.
func (s *Server) Reset() {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.log = nil
	s.counts = map[string]int{}
}

// SetLatency adds d before every response (0 disables). The sleep ends
// early when the request context ends or Close is called.
func (s *Server) SetLatency(d time.Duration) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.latency = d
}

// ServeHTTP implements http.Handler: it logs and counts the request (body
// read in full), applies latency, then the matching fault, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		_ = r.Body.Close()
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	sum := sha256.Sum256(body)
	h := r.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if r.Host != "" {
		h.Set("Host", r.Host)
	}
	s.logMu.Lock()
	s.log = append(s.log, Request{
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: h, BodySHA256: hex.EncodeToString(sum[:]), BodyLen: int64(len(body)),
	})
	s.counts[r.URL.Path]++
	latency := s.latency
	f := s.takeFaultLocked(r.URL.Path)
	s.logMu.Unlock()

	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-s.closing:
			t.Stop()
			abortResponse(w, false, false)
			return
		}
	}
	if f != nil && f.early() {
		s.applyEarlyFault(w, f)
		return
	}
	if f != nil && f.needsBody() && r.Method != http.MethodHead {
		rec := newRecorder()
		s.route(rec, r, body)
		s.emitWithFault(w, r, rec, f)
		return
	}
	s.route(w, r, body)
}

// route dispatches a request (body already read) to its handler.
func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	p := r.URL.Path
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case strings.HasPrefix(p, "/api/"):
		s.serveAPI(w, r, body)
	case !get:
		notFound(w)
	case p == "/":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=60, public")
		writeBody(w, r, http.StatusOK, []byte("<!DOCTYPE html>\n<html><head><title>RubyGems.org | testupstream</title></head><body>testupstream</body></html>\n"))
	case p == "/versions":
		s.serveCompact(w, r, s.versionsRep())
	case p == "/names":
		s.serveCompact(w, r, s.namesRep())
	case strings.HasPrefix(p, "/info/"):
		rep, ok := s.infoRep(strings.TrimPrefix(p, "/info/"))
		if !ok {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("Cache-Control", "max-age=60, public")
			writeBody(w, r, http.StatusNotFound, []byte(TextInfoNotFound))
			return
		}
		s.serveCompact(w, r, rep)
	case p == "/specs.4.8.gz" || p == "/latest_specs.4.8.gz" || p == "/prerelease_specs.4.8.gz":
		s.serveSpecsFile(w, r, strings.TrimPrefix(p, "/"))
	case strings.HasPrefix(p, "/quick/Marshal.4.8/") && strings.HasSuffix(p, ".gemspec.rz"):
		s.serveQuickSpec(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/quick/Marshal.4.8/"), ".gemspec.rz"))
	case strings.HasPrefix(p, "/gems/") && strings.HasSuffix(p, ".gem"):
		s.serveGem(w, r, strings.TrimSuffix(strings.TrimPrefix(p, "/gems/"), ".gem"))
	case strings.HasPrefix(p, "/downloads/") && strings.HasSuffix(p, ".gem"):
		w.Header().Set("Location", "/gems/"+strings.TrimPrefix(p, "/downloads/"))
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		writeBody(w, r, http.StatusFound, nil)
	default:
		notFound(w)
	}
}

// notFound answers a plain 404 for unknown non-API paths.
func notFound(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", "10")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte("Not Found\n"))
}

// writeBody writes status and body with an exact Content-Length (no body on
// HEAD).
func writeBody(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	w.Header().Set("Content-Length", itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead && len(body) > 0 {
		_, _ = w.Write(body)
	}
}

// itoa formats an int.
func itoa(n int) string { return strconv.Itoa(n) }

// sortedKeys returns the keys of m in sorted order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ServedSize returns the body size of a GET of path as s serves it, served
// in-process (no network). The request log is cleared afterwards (Reset),
// so measuring leaves no trace in request counts.
func (s *Server) ServedSize(path string) int {
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	s.Reset()
	return rec.Body.Len()
}
