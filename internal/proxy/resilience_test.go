package proxy

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gemproxy/gemproxy/internal/metrics"
)

// switchable is an upstream whose failure mode can be changed mid-test.
type switchable struct {
	mu     sync.Mutex
	status int // 0 = healthy
	body   string
	calls  atomic.Int64
}

// set changes the answer: status 0 serves body with 200.
func (s *switchable) set(status int, body string) {
	s.mu.Lock()
	s.status, s.body = status, body
	s.mu.Unlock()
}

// ServeHTTP answers according to the current mode.
func (s *switchable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.calls.Add(1)
	s.mu.Lock()
	status, body := s.status, s.body
	s.mu.Unlock()
	if status == -1 { // connection reset
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
		return
	}
	if status == 429 {
		w.Header().Set("Retry-After", "7")
	}
	if status != 0 {
		w.WriteHeader(status)
		io.WriteString(w, "upstream trouble")
		return
	}
	w.Header().Set("Cache-Control", "max-age=60, public")
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, body)
}

func TestStaleIfError(t *testing.T) {
	for name, mode := range map[string]int{"500": 500, "503": 503, "reset": -1} {
		t.Run(name, func(t *testing.T) {
			up := &switchable{body: `{"v":1}`}
			srv := newCountingUpstream(t, up.ServeHTTP)
			tp := newTestProxy(t, srv.URL)
			tp.do(t, "GET", "/api/v1/gems/rack.json")
			up.set(mode, "")
			tp.clock.Advance(2 * time.Minute)
			resp, body := tp.do(t, "GET", "/api/v1/gems/rack.json")
			if string(body) != `{"v":1}` || resp.Header.Get("X-Cache") != "STALE" || resp.Header.Get("Warning") == "" {
				t.Fatalf("got %d %q X-Cache=%q Warning=%q", resp.StatusCode, body, resp.Header.Get("X-Cache"), resp.Header.Get("Warning"))
			}
			// Past max_stale (one day for API JSON) the error reaches the client.
			tp.clock.Advance(25 * time.Hour)
			resp, body = tp.do(t, "GET", "/api/v1/gems/rack.json")
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "upstream") {
				t.Fatalf("past max_stale: %d %q", resp.StatusCode, body)
			}
			// A later clean request succeeds and is stored.
			up.set(0, `{"v":2}`)
			_, body = tp.do(t, "GET", "/api/v1/gems/rack.json")
			if string(body) != `{"v":2}` {
				t.Fatalf("after recovery: %q", body)
			}
		})
	}
}

func TestMissWithoutCopyNamesTheFailure(t *testing.T) {
	up := &switchable{}
	up.set(503, "")
	srv := newCountingUpstream(t, up.ServeHTTP)
	tp := newTestProxy(t, srv.URL)
	resp, body := tp.do(t, "GET", "/api/v1/gems/rack.json")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "503") {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
}

func TestRateLimitPassedOnWithRetryAfter(t *testing.T) {
	up := &switchable{}
	up.set(429, "")
	srv := newCountingUpstream(t, up.ServeHTTP)
	tp := newTestProxy(t, srv.URL)
	resp, _ := tp.do(t, "GET", "/api/v1/gems/rack.json")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" {
		t.Fatalf("got %d Retry-After=%q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	iu := &indexUpstream{files: map[string][]byte{"/versions": []byte(testVersions)}}
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	var blocking atomic.Bool
	srv := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if blocking.Load() {
			arrived <- struct{}{}
			<-release
		}
		iu.ServeHTTP(w, r)
	})
	tp := newTestProxy(t, srv.URL, func(o *Options) {
		o.TunePolicy(ClassVersions, func(pol *Policy) { pol.StaleWhileRevalidate = 30 * time.Second })
	})
	tp.do(t, "GET", "/versions")
	grown := testVersions + "rack 3.0.0 ffffffffffffffffffffffffffffffff\n"
	iu.set("/versions", []byte(grown))
	blocking.Store(true)
	tp.clock.Advance(70 * time.Second) // expired 10s ago: inside the 30s window
	for i := 0; i < 3; i++ {
		resp, body := tp.do(t, "GET", "/versions")
		if string(body) != testVersions || resp.Header.Get("X-Cache") != "STALE" {
			t.Fatalf("request %d: %q %q, want the stale copy at once", i, body, resp.Header.Get("X-Cache"))
		}
	}
	<-arrived // exactly one background refresh reached the upstream
	blocking.Store(false)
	close(release)
	waitFor(t, func() bool { e := tp.store.Peek("/versions"); return e != nil && e.Size == int64(len(grown)) })
	_, body := tp.do(t, "GET", "/versions")
	if string(body) != grown {
		t.Fatalf("after the background refresh: %q", body)
	}
	if n := srv.count("/versions"); n != 2 {
		t.Fatalf("upstream /versions requests = %d, want 2 (one fill, one background refresh)", n)
	}
}

func TestCircuitBreaker(t *testing.T) {
	up := &switchable{body: `{"v":1}`}
	srv := newCountingUpstream(t, up.ServeHTTP)
	tp := newTestProxy(t, srv.URL, func(o *Options) {
		o.Breaker = BreakerOptions{Failures: 3, Backoff: 10 * time.Second, MaxBackoff: 40 * time.Second}
	})
	tp.do(t, "GET", "/api/v1/gems/cached.json")
	up.set(503, "")
	tp.clock.Advance(2 * time.Minute)
	for i := 0; i < 3; i++ {
		tp.do(t, "GET", "/api/v1/gems/miss.json")
	}
	if got := testutil.ToFloat64(tp.m.UpstreamCircuitState); got != metrics.CircuitOpen {
		t.Fatalf("circuit state %v after 3 failures, want open", got)
	}
	calls := up.calls.Load()
	resp, body := tp.do(t, "GET", "/api/v1/gems/miss.json")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "circuit open") {
		t.Fatalf("open circuit miss: %d %q", resp.StatusCode, body)
	}
	resp, body = tp.do(t, "GET", "/api/v1/gems/cached.json")
	if resp.Header.Get("X-Cache") != "STALE" || string(body) != `{"v":1}` {
		t.Fatalf("open circuit with a copy: %q %q", resp.Header.Get("X-Cache"), body)
	}
	if up.calls.Load() != calls {
		t.Fatal("the upstream was called while the circuit was open")
	}
	// After the back-off one probe goes out; it fails, the back-off doubles.
	tp.clock.Advance(11 * time.Second)
	tp.do(t, "GET", "/api/v1/gems/miss.json")
	if up.calls.Load() != calls+1 || testutil.ToFloat64(tp.m.UpstreamCircuitState) != metrics.CircuitOpen {
		t.Fatalf("probe: calls %d (want %d), state %v", up.calls.Load(), calls+1, testutil.ToFloat64(tp.m.UpstreamCircuitState))
	}
	tp.clock.Advance(11 * time.Second) // less than the doubled 20s
	tp.do(t, "GET", "/api/v1/gems/miss.json")
	if up.calls.Load() != calls+1 {
		t.Fatal("probed again before the doubled back-off")
	}
	up.set(0, `{"v":2}`)
	tp.clock.Advance(10 * time.Second)
	_, body = tp.do(t, "GET", "/api/v1/gems/miss.json")
	if string(body) != `{"v":2}` || testutil.ToFloat64(tp.m.UpstreamCircuitState) != metrics.CircuitClosed {
		t.Fatalf("after recovery: %q state %v", body, testutil.ToFloat64(tp.m.UpstreamCircuitState))
	}
}

func TestOfflineMode(t *testing.T) {
	up := &switchable{body: `{"v":1}`}
	srv := newCountingUpstream(t, up.ServeHTTP)
	online := newTestProxy(t, srv.URL)
	online.do(t, "GET", "/api/v1/gems/rack.json")
	online.Proxy.up.offline = true // same store, now offline
	calls := up.calls.Load()
	online.clock.Advance(48 * time.Hour)
	resp, body := online.do(t, "GET", "/api/v1/gems/rack.json")
	if string(body) != `{"v":1}` {
		t.Fatalf("offline cached read: %d %q", resp.StatusCode, body)
	}
	resp, body = online.do(t, "GET", "/api/v1/gems/other.json")
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(body), "offline") {
		t.Fatalf("offline miss: %d %q", resp.StatusCode, body)
	}
	resp, body = online.do(t, "POST", "/api/v1/gems", "Authorization", "k")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "offline") {
		t.Fatalf("offline write: %d %q", resp.StatusCode, body)
	}
	if up.calls.Load() != calls {
		t.Fatal("offline mode contacted the upstream")
	}
}

func TestPerClassUpstreamTimeouts(t *testing.T) {
	gem := []byte("slow gem")
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/info/foo-bar" {
			time.Sleep(400 * time.Millisecond) // slow to answer: a timeout test
		}
		miniGems(gem)(w, r)
	})
	tp := newTestProxy(t, up.URL, func(o *Options) {
		o.Upstream.FirstByteTimeout = 100 * time.Millisecond
		for _, c := range Classes {
			o.TunePolicy(c, func(pol *Policy) { pol.FirstByteTimeout = 100 * time.Millisecond })
		}
		o.TunePolicy(ClassGem, func(pol *Policy) { pol.FirstByteTimeout = 5 * time.Second })
		o.Breaker.Failures = -1
	})
	resp, body := tp.do(t, "GET", "/api/v1/gems/foo-bar.json")
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(body), "first-byte") {
		t.Fatalf("API read past the default first-byte timeout: %d %q, want 504", resp.StatusCode, body)
	}
	resp, body = tp.do(t, "GET", "/gems/foo-bar-1.0.0.gem")
	if resp.StatusCode != 200 || string(body) != string(gem) {
		t.Fatalf("gem with a longer class timeout: %d %q", resp.StatusCode, body)
	}
}

func TestUpstreamConcurrencyCapped(t *testing.T) {
	const limit, clients = 3, 12
	var inFlight, peak atomic.Int64
	release := make(chan struct{})
	arrived := make(chan struct{}, clients)
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		arrived <- struct{}{}
		<-release
		inFlight.Add(-1)
		w.Header().Set("Cache-Control", "max-age=60, public")
		io.WriteString(w, "{}")
	})
	tp := newTestProxy(t, up.URL, func(o *Options) { o.Upstream.MaxConcurrent = limit })
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			tp.do(t, "GET", "/api/v1/gems/g"+strconv.Itoa(i)+".json")
		}(i)
	}
	for i := 0; i < limit; i++ {
		<-arrived // the first `limit` misses reach the upstream
	}
	// The others wait for a slot: exactly `limit` are in flight.
	waitFor(t, func() bool { return testutil.ToFloat64(tp.m.UpstreamInFlight) == clients })
	if n := inFlight.Load(); n != limit {
		t.Fatalf("%d upstream requests in flight, want the cap %d", n, limit)
	}
	close(release)
	wg.Wait()
	if p := peak.Load(); p != limit {
		t.Fatalf("peak concurrent upstream requests %d, want %d", p, limit)
	}
	if n := up.total(); n != clients {
		t.Fatalf("upstream served %d requests, want %d", n, clients)
	}
}
