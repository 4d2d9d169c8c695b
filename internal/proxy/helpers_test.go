package proxy

import (
	"bufio"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gemproxy/gemproxy/internal/accesslog"
	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// countingUpstream is an httptest upstream that counts requests per path
// and records the last request headers per path.
type countingUpstream struct {
	*httptest.Server
	mu      sync.Mutex
	counts  map[string]int
	headers map[string]http.Header
	handler http.HandlerFunc
}

// newCountingUpstream starts an upstream serving h.
func newCountingUpstream(t *testing.T, h http.HandlerFunc) *countingUpstream {
	t.Helper()
	u := &countingUpstream{counts: map[string]int{}, headers: map[string]http.Header{}, handler: h}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.counts[r.URL.Path]++
		u.headers[r.URL.Path] = r.Header.Clone()
		u.mu.Unlock()
		u.handler(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// count is the number of requests received for path.
func (u *countingUpstream) count(path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.counts[path]
}

// total is the number of requests received.
func (u *countingUpstream) total() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, c := range u.counts {
		n += c
	}
	return n
}

// header is the last request header received for path.
func (u *countingUpstream) header(path string) http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.headers[path]
}

// testProxy bundles a proxy with its store and metrics.
type testProxy struct {
	*Proxy
	store *cache.Store
	m     *metrics.Metrics
	reg   *prometheus.Registry
	dir   string
	clock *testupstream.Clock
	// addr is the loopback address once listen was called.
	addr string
}

// newTestProxy builds a proxy in front of upstreamURL on a fresh data dir.
func newTestProxy(t *testing.T, upstreamURL string, tweak ...func(*Options)) *testProxy {
	t.Helper()
	dir := t.TempDir()
	store, err := cache.Open(dir, cache.Options{MemoryClasses: []string{string(ClassVersions), string(ClassNames)}})
	if err != nil {
		t.Fatal(err)
	}
	var p *Proxy
	t.Cleanup(func() {
		if p != nil {
			p.Wait()
		}
		problems, err := store.Verify()
		if err != nil || len(problems) > 0 {
			t.Errorf("cache verify after test: %v %v", problems, err)
		}
		store.Close()
	})
	u, err := url.Parse(upstreamURL)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	eps := MetricEndpoints()
	m := metrics.New(reg, metrics.Options{Endpoints: eps, Version: "test"})
	// Every request's access line is formatted, as in production.
	access := accesslog.New(io.Discard, accesslog.Options{})
	t.Cleanup(func() { _ = access.Close() })
	opts := Options{
		Upstream:  UpstreamOptions{URL: u},
		Metrics:   m,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		AccessLog: access,
		Version:   "test",
	}
	for _, f := range tweak {
		f(&opts)
	}
	p, err = New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	clock := testupstream.NewClock(time.Now())
	p.now = clock.Now
	return &testProxy{Proxy: p, store: store, m: m, reg: reg, dir: dir, clock: clock}
}

// do sends one request through the Fiber app.
func (tp *testProxy) do(t *testing.T, method, target string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := tp.App().Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return resp, body
}

// compactHeaders sets the validators rubygems.org sends on a compact-index body.
func compactHeaders(w http.ResponseWriter, body []byte) {
	m := md5.Sum(body)
	s := sha256.Sum256(body)
	b64 := base64.StdEncoding.EncodeToString(s[:])
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("ETag", `"`+hex.EncodeToString(m[:])+`"`)
	w.Header().Set("Repr-Digest", "sha-256=:"+b64+":")
	w.Header().Set("Digest", "sha-256="+b64)
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Cache-Control", "max-age=60, public")
}

// sha256Hex is the hex SHA-256 of b.
func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// infoLine renders an /info line for version with the gem's checksum.
func infoLine(version string, gem []byte) string {
	return version + " |checksum:" + sha256Hex(gem) + "\n"
}

// mustContain fails unless s contains sub.
func mustContain(t *testing.T, s, sub string) {
	t.Helper()
	if !strings.Contains(s, sub) {
		t.Fatalf("%q does not contain %q", s, sub)
	}
}

// listen serves the app on a loopback port for the rest of the test and
// returns its address.
func (tp *testProxy) listen(t *testing.T) string {
	t.Helper()
	if tp.addr != "" {
		return tp.addr
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go tp.App().Listener(ln)
	t.Cleanup(func() { tp.App().ShutdownWithTimeout(5 * time.Second) })
	tp.addr = ln.Addr().String()
	return tp.addr
}

// doRaw writes a raw HTTP request on a new connection and returns the
// response status and body.
func (tp *testProxy) doRaw(t *testing.T, raw string) (int, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", tp.listen(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", raw, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}
