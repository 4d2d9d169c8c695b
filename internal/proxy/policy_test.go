package proxy

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/cache"
)

// TestDecide is the freshness decision, case by case.
func TestDecide(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	expiredAgo := func(d time.Duration, status int) *cache.Entry {
		return &cache.Entry{Status: status, FreshUntil: now.Add(-d)}
	}
	def := DefaultPolicies()[ClassVersions]
	swr := def
	swr.StaleWhileRevalidate = 30 * time.Second
	tests := []struct {
		name    string
		e       *cache.Entry
		pol     Policy
		offline bool
		want    action
	}{
		{"absent", nil, def, false, fetch},
		{"fresh", &cache.Entry{Status: 200, FreshUntil: now.Add(time.Second)}, def, false, serveFresh},
		{"expires exactly now", expiredAgo(0, 200), def, false, revalidate},
		{"immutable never expires", &cache.Entry{Status: 200, Immutable: true}, def, false, serveFresh},
		{"expired, default policy revalidates", expiredAgo(time.Second, 200), def, false, revalidate},
		{"expired inside the SWR window", expiredAgo(10*time.Second, 200), swr, false, serveStaleRefresh},
		{"expired past the SWR window", expiredAgo(31*time.Second, 200), swr, false, revalidate},
		{"negative entry is never served while refreshing", expiredAgo(time.Second, 404), swr, false, revalidate},
		{"offline, expired", expiredAgo(time.Hour, 200), def, true, serveOffline},
		{"offline, absent", nil, def, true, serveOffline},
		{"offline, fresh", &cache.Entry{Status: 200, FreshUntil: now.Add(time.Second)}, def, true, serveFresh},
	}
	for _, tt := range tests {
		if got := decide(tt.e, now, tt.pol, tt.offline); got != tt.want {
			t.Errorf("%s: decide = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestServableStale bounds stale copies by max_stale.
func TestServableStale(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	pol := Policy{MaxStale: time.Hour}
	for _, tc := range []struct {
		e    *cache.Entry
		pol  Policy
		want bool
	}{
		{nil, pol, false},
		{&cache.Entry{FreshUntil: now.Add(-time.Hour)}, pol, true},
		{&cache.Entry{FreshUntil: now.Add(-time.Hour - time.Second)}, pol, false},
		{&cache.Entry{FreshUntil: now.Add(-time.Second)}, Policy{}, false},
		{&cache.Entry{FreshUntil: now.Add(-100000 * time.Hour)}, Policy{MaxStale: Unlimited}, true},
	} {
		if got := servableStale(tc.e, now, tc.pol); got != tc.want {
			t.Errorf("servableStale(%v, max_stale %v) = %v, want %v", tc.e, tc.pol.MaxStale, got, tc.want)
		}
	}
}

// TestReleaseVisibleOnceTTLPassed: with the default policy, the first
// request after the TTL already reflects the upstream (issue: a
// stale-while-revalidate default answered it with the old copy, so a
// Bundler run that asks once missed a release).
func TestReleaseVisibleOnceTTLPassed(t *testing.T) {
	for _, path := range []string{"/versions", "/info/rack", "/names"} {
		t.Run(path, func(t *testing.T) {
			iu := &indexUpstream{files: map[string][]byte{
				"/versions": []byte(testVersions), "/info/rack": []byte(testInfo), "/names": []byte("---\nrack\n"),
			}}
			srv := newCountingUpstream(t, iu.ServeHTTP)
			tp := newTestProxy(t, srv.URL)
			_, before := tp.do(t, "GET", path)
			grown := string(before) + map[string]string{
				"/versions":  "rake 13.0.0 eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\n",
				"/info/rack": "3.0.0 |checksum:cc\n",
				"/names":     "rake\n",
			}[path]
			iu.set(path, []byte(grown))
			tp.clock.Advance(59 * time.Second)
			if _, body := tp.do(t, "GET", path); string(body) != string(before) {
				t.Fatalf("inside the TTL: %q, want the cached copy", body)
			}
			tp.clock.Advance(2 * time.Second) // one second past the 60 s TTL
			resp, body := tp.do(t, "GET", path)
			if string(body) != grown || resp.Header.Get("X-Cache") != "REVALIDATED" {
				t.Fatalf("first request after the TTL: %q X-Cache %q, want the upstream's new copy, REVALIDATED",
					body, resp.Header.Get("X-Cache"))
			}
		})
	}
}

// TestSlowUpstreamServesStaleAtDeadline: an expired entry whose upstream
// is slow (not down) is served stale once the revalidation deadline passed,
// not after the first-byte timeout; requests that join the running refresh
// wait only what is left of the deadline; the refresh completes in the
// background and its answer is served from then on.
func TestSlowUpstreamServesStaleAtDeadline(t *testing.T) {
	iu := &indexUpstream{files: map[string][]byte{"/versions": []byte(testVersions), "/info/rack": []byte(testInfo)}}
	gate := &slowGate{release: make(chan struct{})}
	srv := newCountingUpstream(t, gate.wrap(iu.ServeHTTP))
	const deadline = 300 * time.Millisecond
	tp := newTestProxy(t, srv.URL, func(o *Options) {
		o.TunePolicy(ClassInfo, func(pol *Policy) { pol.RevalidateTimeout = deadline })
	})
	tp.do(t, "GET", "/info/rack")
	grown := testInfo + "3.0.0 |checksum:cc\n"
	iu.set("/info/rack", []byte(grown))
	gate.slow.Store(true)
	tp.clock.Advance(2 * time.Minute)

	start := time.Now()
	resp, body := tp.do(t, "GET", "/info/rack")
	first := time.Since(start)
	if string(body) != testInfo || resp.Header.Get("X-Cache") != "STALE" || resp.Header.Get("Warning") == "" {
		t.Fatalf("slow upstream: %q X-Cache %q Warning %q, want the stale copy", body, resp.Header.Get("X-Cache"), resp.Header.Get("Warning"))
	}
	if first < deadline || first > deadline+time.Second {
		t.Fatalf("stale copy after %v, want about the %v deadline (the first-byte timeout is 30 s)", first, deadline)
	}
	start = time.Now()
	if _, body := tp.do(t, "GET", "/info/rack"); string(body) != testInfo {
		t.Fatalf("second request: %q, want the stale copy", body)
	}
	if second := time.Since(start); second > deadline/2 {
		t.Fatalf("a request joining a refresh already past its deadline waited %v", second)
	}
	if n := srv.count("/info/rack"); n != 2 {
		t.Fatalf("upstream /info/rack requests = %d, want 2 (the fill and one coalesced refresh)", n)
	}
	gate.slow.Store(false)
	close(gate.release)
	waitFor(t, func() bool { e := tp.store.Peek("/info/rack"); return e != nil && e.Size == int64(len(grown)) })
	resp, body = tp.do(t, "GET", "/info/rack")
	if string(body) != grown || resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("after the background refresh: %q %q", body, resp.Header.Get("X-Cache"))
	}
}

// TestLateRevalidationPastMaxStaleWaits: a stale copy beyond max_stale is
// never served, deadline or not: the request waits for the upstream.
func TestLateRevalidationPastMaxStaleWaits(t *testing.T) {
	up := &switchable{body: `{"v":1}`}
	gate := &slowGate{release: make(chan struct{})}
	srv := newCountingUpstream(t, gate.wrap(up.ServeHTTP))
	tp := newTestProxy(t, srv.URL, func(o *Options) {
		o.TunePolicy(ClassAPI, func(pol *Policy) { pol.RevalidateTimeout = 50 * time.Millisecond; pol.MaxStale = time.Minute })
	})
	tp.do(t, "GET", "/api/v1/gems/rack.json")
	up.set(0, `{"v":2}`)
	gate.slow.Store(true)
	tp.clock.Advance(time.Hour)
	go func() {
		time.Sleep(300 * time.Millisecond)
		close(gate.release)
	}()
	start := time.Now()
	resp, body := tp.do(t, "GET", "/api/v1/gems/rack.json")
	if string(body) != `{"v":2}` || resp.Header.Get("X-Cache") != "REVALIDATED" {
		t.Fatalf("past max_stale: %q %q, want the upstream's answer", body, resp.Header.Get("X-Cache"))
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("answered after %v: the request did not wait for the upstream", waited)
	}
}

// TestNewWithoutMetrics: a proxy built without Options.Metrics serves
// requests (it used to crash on the first one).
func TestNewWithoutMetrics(t *testing.T) {
	srv := newCountingUpstream(t, (&switchable{body: `{"v":1}`}).ServeHTTP)
	tp := newTestProxy(t, srv.URL, func(o *Options) { o.Metrics = nil })
	if resp, body := tp.do(t, "GET", "/api/v1/gems/rack.json"); resp.StatusCode != 200 || string(body) != `{"v":1}` {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

// slowGate holds upstream answers while slow is set, until release is
// closed: an upstream that is slow, not down.
type slowGate struct {
	slow    atomic.Bool
	release chan struct{}
}

// wrap returns h behind the gate.
func (g *slowGate) wrap(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if g.slow.Load() {
			<-g.release
		}
		h(w, r)
	}
}
