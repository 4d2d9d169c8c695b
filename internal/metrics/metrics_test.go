package metrics

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testOptions resembles the proxy's route table: a few endpoints with
// their methods, a duplicate to merge, and the cache classes.
func testOptions() Options {
	return Options{
		Endpoints: []Endpoint{
			{Name: "versions", Methods: []string{"GET", "HEAD"}, Cached: true, Upstream: true},
			{Name: "info", Methods: []string{"GET", "HEAD"}, Cached: true, Upstream: true},
			{Name: "gem", Cached: true, Upstream: true, RareMethods: []string{"HEAD"}}, // zero Methods: GET and HEAD
			{Name: "api_write", Methods: []string{"POST", "PUT", "PATCH", "DELETE"}, RareMethods: []string{"PUT", "PATCH"}, Upstream: true},
			{Name: "home", Codes: []string{"2xx", "5xx"}},                          // answered locally
			{Name: "info", Methods: []string{"GET"}, Cached: true, Upstream: true}, // duplicate, merged
		},
		Classes:  []string{"versions", "info", "names", "full_index", "quick_spec", "gem", "api"},
		Version:  "1.2.3",
		Revision: "abc123",
	}
}

// newTestMetrics builds Metrics from testOptions on a fresh registry.
func newTestMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return New(reg, testOptions()), reg
}

// gather returns, per exposed family, every series as its labels rendered
// "k=v,k=v" in name order, mapped to its counter or gauge value or, for a
// histogram, its sample count. It uses the generated getters only, so the
// test needs no import beyond client_golang.
func gather(t *testing.T, g prometheus.Gatherer) map[string]map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]map[string]float64, len(mfs))
	for _, mf := range mfs {
		series := make(map[string]float64)
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				parts = append(parts, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(parts)
			series[strings.Join(parts, ",")] = m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
		out[mf.GetName()] = series
	}
	return out
}

// TestLint runs promlint over the whole registry and fails on any finding.
func TestLint(t *testing.T) {
	_, reg := newTestMetrics(t)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatalf("GatherAndLint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint (registry): %s: %s", p.Metric, p.Text)
	}
}

// TestPrecreatedAtZero checks that right after New every declared label
// combination is exposed at zero, and nothing else.
func TestPrecreatedAtZero(t *testing.T) {
	_, reg := newTestMetrics(t)
	fams := gather(t, reg)

	type endpointMethods struct {
		name     string
		methods  []string // the methods pre-created: not the rare ones
		codes    []string // the status classes pre-created
		results  []string // the lookups that can occur
		upstream bool
	}
	all := []string{"hit", "miss", "stale", "revalidated", "coalesced", "bypass"}
	classes := []string{"2xx", "3xx", "4xx", "5xx"} // never 1xx
	eps := []endpointMethods{
		{OtherLabel, []string{OtherLabel}, classes, all, true},
		{"versions", []string{"GET", "HEAD"}, classes, all, true},
		{"info", []string{"GET", "HEAD"}, classes, all, true},
		{"gem", []string{"GET"}, classes, all, true},
		{"api_write", []string{"POST", "DELETE"}, classes, []string{"bypass"}, true},
		{"home", []string{"GET", "HEAD"}, []string{"2xx", "5xx"}, nil, false},
	}
	want := map[string][]string{}
	add := func(family, key string) { want[family] = append(want[family], key) }
	for _, ep := range eps {
		for _, method := range ep.methods {
			for _, c := range ep.codes {
				add("gemproxy_http_requests_total", fmt.Sprintf("code=%s,endpoint=%s,method=%s", c, ep.name, method))
			}
			add("gemproxy_http_request_duration_seconds", fmt.Sprintf("endpoint=%s,method=%s", ep.name, method))
		}
		for _, r := range ep.results {
			add("gemproxy_cache_lookups_total", fmt.Sprintf("endpoint=%s,result=%s", ep.name, r))
		}
		if !ep.upstream {
			continue
		}
		for _, c := range append(classes, "error") {
			add("gemproxy_upstream_requests_total", fmt.Sprintf("code=%s,endpoint=%s", c, ep.name))
		}
		add("gemproxy_upstream_request_duration_seconds", "endpoint="+ep.name)
		add("gemproxy_upstream_response_bytes_total", "endpoint="+ep.name)
	}
	for _, c := range testOptions().Classes {
		add("gemproxy_cache_entries", "class="+c)
		add("gemproxy_cache_size_bytes", "class="+c)
	}
	for _, s := range []string{"cache", "upstream"} {
		add("gemproxy_http_response_bytes_total", "source="+s)
	}
	for _, p := range []string{"append", "full", "not_modified"} {
		add("gemproxy_compactindex_refreshes_total", "path="+p)
		add("gemproxy_compactindex_refresh_bytes_total", "path="+p)
	}
	for _, r := range []string{"mismatch", "unknown"} {
		add("gemproxy_cache_checksum_failures_total", "reason="+r)
	}
	for _, name := range []string{"gemproxy_cache_fill_waiters", "gemproxy_cache_evictions_total", "gemproxy_upstream_in_flight_requests", "gemproxy_upstream_circuit_state"} {
		add(name, "")
	}

	for family, keys := range want {
		t.Run(family, func(t *testing.T) {
			got, ok := fams[family]
			if !ok {
				t.Fatalf("family %s not exposed", family)
			}
			for _, k := range keys {
				v, ok := got[k]
				if !ok {
					t.Errorf("series {%s} missing", k)
				} else if v != 0 {
					t.Errorf("series {%s} = %v, want 0", k, v)
				}
			}
			if len(got) != len(keys) {
				t.Errorf("%d series exposed, want exactly %d", len(got), len(keys))
			}
		})
	}

	bi := fams["gemproxy_build_info"]
	if len(bi) != 1 {
		t.Fatalf("gemproxy_build_info: want one series, got %v", bi)
	}
	for k, v := range bi {
		if !strings.HasPrefix(k, "goversion=go") || !strings.HasSuffix(k, ",revision=abc123,version=1.2.3") || v != 1 {
			t.Errorf("gemproxy_build_info{%s} = %v, want version, revision, goversion and 1", k, v)
		}
	}
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("go_goroutines not exposed: Go collector missing")
	}
}

// TestSeriesOnFirstUse checks that a rare method's series, and a status
// class an endpoint was declared unable to answer, are absent after New
// and counted once used.
func TestSeriesOnFirstUse(t *testing.T) {
	tests := []struct {
		name    string
		do      func(m *Metrics)
		family  string
		series  string
		samples float64
	}{
		{"rare method", func(m *Metrics) { m.ObserveRequest("gem", "HEAD", 200, time.Millisecond) },
			"gemproxy_http_requests_total", "code=2xx,endpoint=gem,method=HEAD", 1},
		{"rare method duration", func(m *Metrics) { m.ObserveRequest("api_write", "PUT", 200, time.Millisecond) },
			"gemproxy_http_request_duration_seconds", "endpoint=api_write,method=PUT", 1},
		{"undeclared class", func(m *Metrics) { m.ObserveRequest("home", "GET", 404, time.Millisecond) },
			"gemproxy_http_requests_total", "code=4xx,endpoint=home,method=GET", 1},
		{"informational", func(m *Metrics) { m.ObserveRequest("info", "GET", 103, time.Millisecond) },
			"gemproxy_http_requests_total", "code=1xx,endpoint=info,method=GET", 1},
		{"upstream informational", func(m *Metrics) { m.ObserveUpstream("info", 100, time.Millisecond) },
			"gemproxy_upstream_requests_total", "code=1xx,endpoint=info", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, reg := newTestMetrics(t)
			if _, ok := gather(t, reg)[tt.family][tt.series]; ok {
				t.Fatalf("{%s} exposed before use", tt.series)
			}
			tt.do(m)
			if got, ok := gather(t, reg)[tt.family][tt.series]; !ok || got != tt.samples {
				t.Errorf("{%s} = %v (exposed %v), want %v", tt.series, got, ok, tt.samples)
			}
		})
	}
}

// TestHelpers checks what each helper method increments, including the
// folding of undeclared values.
func TestHelpers(t *testing.T) {
	tests := []struct {
		name   string
		do     func(m *Metrics)
		metric func(m *Metrics) prometheus.Collector
		want   float64
	}{
		{
			name:   "request counted by class",
			do:     func(m *Metrics) { m.ObserveRequest("info", "GET", 206, time.Millisecond) },
			metric: func(m *Metrics) prometheus.Collector { return m.HTTPRequests.WithLabelValues("info", "GET", "2xx") },
			want:   1,
		},
		{
			name: "undeclared method folds to other",
			do:   func(m *Metrics) { m.ObserveRequest("info", "BREW", 405, time.Millisecond) },
			metric: func(m *Metrics) prometheus.Collector {
				return m.HTTPRequests.WithLabelValues(OtherLabel, OtherLabel, "4xx")
			},
			want: 1,
		},
		{
			name: "undeclared endpoint folds to other",
			do:   func(m *Metrics) { m.ObserveRequest("rails", "GET", 404, time.Millisecond) },
			metric: func(m *Metrics) prometheus.Collector {
				return m.HTTPRequests.WithLabelValues(OtherLabel, OtherLabel, "4xx")
			},
			want: 1,
		},
		{
			name:   "invalid served code counts as 5xx",
			do:     func(m *Metrics) { m.ObserveRequest("gem", "HEAD", 999, time.Millisecond) },
			metric: func(m *Metrics) prometheus.Collector { return m.HTTPRequests.WithLabelValues("gem", "HEAD", "5xx") },
			want:   1,
		},
		{
			name: "lookup",
			do:   func(m *Metrics) { m.Lookup("versions", ResultRevalidated).Inc() },
			metric: func(m *Metrics) prometheus.Collector {
				return m.CacheLookups.WithLabelValues("versions", "revalidated")
			},
			want: 1,
		},
		{
			name:   "lookup of undeclared endpoint",
			do:     func(m *Metrics) { m.Lookup("nokogiri", ResultHit).Inc() },
			metric: func(m *Metrics) prometheus.Collector { return m.CacheLookups.WithLabelValues(OtherLabel, "hit") },
			want:   1,
		},
		{
			name:   "lookup a forwarded endpoint was declared unable to make",
			do:     func(m *Metrics) { m.Lookup("api_write", ResultHit).Inc() },
			metric: func(m *Metrics) prometheus.Collector { return m.CacheLookups.WithLabelValues("api_write", "hit") },
			want:   1,
		},
		{
			name:   "upstream transport error",
			do:     func(m *Metrics) { m.ObserveUpstream("gem", 0, time.Second) },
			metric: func(m *Metrics) prometheus.Collector { return m.UpstreamRequests.WithLabelValues("gem", "error") },
			want:   1,
		},
		{
			name:   "upstream 304",
			do:     func(m *Metrics) { m.ObserveUpstream("versions", 304, time.Second) },
			metric: func(m *Metrics) prometheus.Collector { return m.UpstreamRequests.WithLabelValues("versions", "3xx") },
			want:   1,
		},
		{
			name:   "upstream bytes",
			do:     func(m *Metrics) { m.UpstreamBytes("gem").Add(1234) },
			metric: func(m *Metrics) prometheus.Collector { return m.UpstreamResponseBytes.WithLabelValues("gem") },
			want:   1234,
		},
		{
			name:   "response bytes",
			do:     func(m *Metrics) { m.ResponseBytes(SourceCache).Add(42) },
			metric: func(m *Metrics) prometheus.Collector { return m.HTTPResponseBytes.WithLabelValues("cache") },
			want:   42,
		},
		{
			name:   "refresh count",
			do:     func(m *Metrics) { m.ObserveRefresh(RefreshAppend, 100); m.ObserveRefresh(RefreshAppend, 50) },
			metric: func(m *Metrics) prometheus.Collector { return m.CompactIndexRefreshes.WithLabelValues("append") },
			want:   2,
		},
		{
			name:   "refresh bytes ignore negative",
			do:     func(m *Metrics) { m.ObserveRefresh(RefreshFull, 100); m.ObserveRefresh(RefreshFull, -5) },
			metric: func(m *Metrics) prometheus.Collector { return m.CompactIndexRefreshBytes.WithLabelValues("full") },
			want:   100,
		},
		{
			name:   "checksum failure",
			do:     func(m *Metrics) { m.ChecksumFailure(ChecksumMismatch).Inc() },
			metric: func(m *Metrics) prometheus.Collector { return m.CacheChecksumFailures.WithLabelValues("mismatch") },
			want:   1,
		},
		{
			name:   "cache usage entries",
			do:     func(m *Metrics) { m.SetCacheUsage("gem", 7, 1<<20) },
			metric: func(m *Metrics) prometheus.Collector { return m.CacheEntries.WithLabelValues("gem") },
			want:   7,
		},
		{
			name:   "cache usage bytes",
			do:     func(m *Metrics) { m.SetCacheUsage("gem", 7, 1<<20) },
			metric: func(m *Metrics) prometheus.Collector { return m.CacheSize.WithLabelValues("gem") },
			want:   1 << 20,
		},
		{
			name:   "cache usage of undeclared class",
			do:     func(m *Metrics) { m.SetCacheUsage("negative", 3, 9) },
			metric: func(m *Metrics) prometheus.Collector { return m.CacheEntries.WithLabelValues("negative") },
			want:   3,
		},
		{
			name:   "circuit state",
			do:     func(m *Metrics) { m.SetCircuitState(CircuitHalfOpen) },
			metric: func(m *Metrics) prometheus.Collector { return m.UpstreamCircuitState },
			want:   1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := newTestMetrics(t)
			tt.do(m)
			if got := testutil.ToFloat64(tt.metric(m)); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestStatusClass covers each class and the out-of-range codes.
func TestStatusClass(t *testing.T) {
	tests := []struct {
		name string
		code int
		want string
	}{
		{name: "continue", code: 100, want: "1xx"},
		{name: "ok", code: 200, want: "2xx"},
		{name: "partial", code: 206, want: "2xx"},
		{name: "not modified", code: 304, want: "3xx"},
		{name: "not found", code: 404, want: "4xx"},
		{name: "too many", code: 429, want: "4xx"},
		{name: "bad gateway", code: 502, want: "5xx"},
		{name: "upper bound", code: 599, want: "5xx"},
		{name: "transport error", code: 0, want: "error"},
		{name: "below range", code: 99, want: "error"},
		{name: "above range", code: 600, want: "error"},
		{name: "negative", code: -1, want: "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StatusClass(tt.code); got != tt.want {
				t.Errorf("StatusClass(%d) = %q, want %q", tt.code, got, tt.want)
			}
		})
	}
}

// TestHotPathAllocations checks that the helper methods do not allocate.
func TestHotPathAllocations(t *testing.T) {
	m, _ := newTestMetrics(t)
	tests := []struct {
		name string
		fn   func()
	}{
		{name: "ObserveRequest", fn: func() { m.ObserveRequest("info", "GET", 200, time.Millisecond) }},
		{name: "ObserveRequest other", fn: func() { m.ObserveRequest("nope", "BREW", 200, time.Millisecond) }},
		{name: "Lookup", fn: func() { m.Lookup("info", ResultHit).Inc() }},
		{name: "ObserveUpstream", fn: func() { m.ObserveUpstream("info", 304, time.Millisecond) }},
		{name: "UpstreamBytes", fn: func() { m.UpstreamBytes("gem").Add(10) }},
		{name: "ResponseBytes", fn: func() { m.ResponseBytes(SourceUpstream).Add(10) }},
		{name: "ObserveRefresh", fn: func() { m.ObserveRefresh(RefreshNotModified, 0) }},
		{name: "ChecksumFailure", fn: func() { m.ChecksumFailure(ChecksumUnknown).Inc() }},
		{name: "SetCacheUsage", fn: func() { m.SetCacheUsage("info", 1, 2) }},
		{name: "StatusClass", fn: func() { _ = StatusClass(404) }},
		{name: "ObserveClient", fn: func() { m.ObserveClient([]byte(bundlerUA)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if allocs := testing.AllocsPerRun(100, tt.fn); allocs != 0 {
				t.Errorf("%s allocated %v times per call, want 0", tt.name, allocs)
			}
		})
	}
}

// TestHandler scrapes Handler and checks the text exposition.
func TestHandler(t *testing.T) {
	m, reg := newTestMetrics(t)
	m.ObserveRequest("info", "GET", 200, 3*time.Millisecond)
	srv := httptest.NewServer(m.Handler(reg))
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want text exposition", ct)
	}
	for _, want := range []string{
		"# TYPE gemproxy_http_requests_total counter",
		`gemproxy_http_requests_total{code="2xx",endpoint="info",method="GET"} 1`,
		`gemproxy_cache_lookups_total{endpoint="gem",result="coalesced"} 0`,
		`gemproxy_build_info{goversion="`,
		"# TYPE go_goroutines gauge",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
}

// TestNewRegistration covers the registries New accepts and the one it
// refuses.
func TestNewRegistration(t *testing.T) {
	tests := []struct {
		name      string
		reg       func() prometheus.Registerer
		wantPanic bool
	}{
		{name: "fresh registry", reg: func() prometheus.Registerer { return prometheus.NewRegistry() }},
		{name: "nil registerer", reg: func() prometheus.Registerer { return nil }},
		{
			name: "Go and process collectors already registered",
			reg: func() prometheus.Registerer {
				r := prometheus.NewRegistry()
				r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
				return r
			},
		},
		{
			name: "New twice on one registry",
			reg: func() prometheus.Registerer {
				r := prometheus.NewRegistry()
				New(r, Options{})
				return r
			},
			wantPanic: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := tt.reg()
			var m *Metrics
			err := func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("panic: %v", r)
					}
				}()
				m = New(reg, testOptions())
				return nil
			}()
			if (err != nil) != tt.wantPanic {
				t.Fatalf("New: %v, want panic %v", err, tt.wantPanic)
			}
			if err != nil {
				return
			}
			m.Lookup("info", ResultHit).Inc()
			if got := testutil.ToFloat64(m.Lookup("info", ResultHit)); got != 1 {
				t.Errorf("lookup counter = %v, want 1", got)
			}
		})
	}
}

// BenchmarkHitPath measures the metrics a cache hit records: one lookup,
// one response-bytes add and one request observation.
func BenchmarkHitPath(b *testing.B) {
	m := New(prometheus.NewRegistry(), testOptions())
	b.ReportAllocs()
	for b.Loop() {
		m.Lookup("info", ResultHit).Inc()
		m.ResponseBytes(SourceCache).Add(4096)
		m.ObserveRequest("info", "GET", 200, 250*time.Microsecond)
	}
}
