// Package metrics defines gemproxy's Prometheus metrics and serves them.
//
// New builds every collector on a caller-supplied prometheus.Registerer (no
// globals, no init, nothing on the default registry) and pre-creates every
// label combination at zero, so that rate() and absent() behave from the
// first scrape. Names follow gemproxy_<subsystem>_<name>_<unit>, counters
// end in _total, and units are base units (seconds, bytes).
//
// Label values are bounded by construction. Endpoint names and cache
// classes come from the route table through Options; HTTP methods and
// status codes come from clients and upstreams, so they are folded: a code
// becomes its class ("2xx"), and a request whose (endpoint, method) pair
// Options did not declare is counted under endpoint and method OtherLabel.
// Values that only code can produce (Result, Source, RefreshPath,
// ChecksumReason constants) are typed so a stray string does not compile
// without a visible conversion.
//
// The hot path (ObserveRequest, Lookup, ObserveUpstream, ResponseBytes, ...)
// does not call WithLabelValues, which hashes the label values and
// allocates: New resolves every child collector once and keeps the handles
// in read-only maps and arrays, so each call is one map lookup with a
// string-pair key and no allocation. The exported *Vec fields remain
// available for anything the helpers do not cover.
package metrics

import (
	"errors"
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every gemproxy metric name.
const namespace = "gemproxy"

// OtherLabel is the endpoint and method label value for requests whose
// (endpoint, method) pair was not declared in Options.Endpoints, and the
// endpoint label value for lookups and upstream calls of an undeclared
// endpoint. It keeps client-controlled values (methods, unmatched paths)
// from creating series.
const OtherLabel = "other"

// UpstreamErrorLabel is the code label value of upstream requests that
// got no HTTP response (connection refused, timeout, TLS failure, ...).
const UpstreamErrorLabel = "error"

// Endpoint declares one route-table endpoint name and the HTTP methods it
// answers, so that New can pre-create its series.
type Endpoint struct {
	// Name is the endpoint label value (for example "info" or "gem"),
	// never a gem name. An empty Name is ignored; OtherLabel always
	// exists.
	Name string
	// Methods lists the HTTP methods (as the server reports them, e.g.
	// "GET") the endpoint answers. Zero means GET and HEAD.
	Methods []string
}

// Options configures New. The zero value is valid: it registers the
// process-wide collectors, the build info and the OtherLabel series only.
type Options struct {
	// Endpoints are the route-table endpoints with their methods; every
	// (endpoint, method, code class) combination is created at zero.
	// Duplicate names are merged. Zero means only OtherLabel.
	Endpoints []Endpoint
	// Classes are the cache classes (e.g. "versions", "info", "names",
	// "full_index", "quick_spec", "gem", "api") whose entry count and size
	// SetCacheUsage reports. Zero means no class is pre-created.
	Classes []string
	// Version is the gemproxy release for gemproxy_build_info. Zero means
	// "unknown".
	Version string
	// Revision is the VCS revision for gemproxy_build_info. Zero means
	// "unknown".
	Revision string
	// GoVersion is the Go toolchain for gemproxy_build_info. Zero means
	// runtime.Version().
	GoVersion string
}

// Result is the value of the result label of gemproxy_cache_lookups_total.
type Result string

// The outcomes of a cache lookup.
const (
	// ResultHit means a fresh entry was served from the cache.
	ResultHit Result = "hit"
	// ResultMiss means there was no entry and this request filled it.
	ResultMiss Result = "miss"
	// ResultStale means a stale entry was served because the upstream
	// failed (stale-if-error).
	ResultStale Result = "stale"
	// ResultRevalidated means a stale entry was confirmed or updated by a
	// conditional or ranged upstream request (304 or verified append).
	ResultRevalidated Result = "revalidated"
	// ResultCoalesced means the request waited on another request's fill
	// of the same key.
	ResultCoalesced Result = "coalesced"
	// ResultBypass means the request was not eligible for the cache
	// (credentials, write method, private route).
	ResultBypass Result = "bypass"
)

// resultValues lists every Result in label order.
func resultValues() [numResults]Result {
	return [numResults]Result{ResultHit, ResultMiss, ResultStale, ResultRevalidated, ResultCoalesced, ResultBypass}
}

// numResults is the number of Result values.
const numResults = 6

// index returns r's position in resultValues, or -1.
func (r Result) index() int {
	switch r {
	case ResultHit:
		return 0
	case ResultMiss:
		return 1
	case ResultStale:
		return 2
	case ResultRevalidated:
		return 3
	case ResultCoalesced:
		return 4
	case ResultBypass:
		return 5
	}
	return -1
}

// Source is the value of the source label of
// gemproxy_http_response_bytes_total: where served body bytes came from.
type Source string

// The sources of response bytes.
const (
	// SourceCache counts bytes served from the local cache.
	SourceCache Source = "cache"
	// SourceUpstream counts bytes streamed from upstream to the client
	// (misses, pass-through).
	SourceUpstream Source = "upstream"
)

// numSources is the number of Source values.
const numSources = 2

// sourceValues lists every Source in label order.
func sourceValues() [numSources]Source { return [numSources]Source{SourceCache, SourceUpstream} }

// index returns s's position in sourceValues, or -1.
func (s Source) index() int {
	switch s {
	case SourceCache:
		return 0
	case SourceUpstream:
		return 1
	}
	return -1
}

// RefreshPath is the value of the path label of the compact-index refresh
// metrics: how a stale /versions or /info entry was brought up to date.
type RefreshPath string

// The ways a compact-index file is refreshed.
const (
	// RefreshAppend is a verified Range append (206).
	RefreshAppend RefreshPath = "append"
	// RefreshFull is a full download (200, or after a failed append).
	RefreshFull RefreshPath = "full"
	// RefreshNotModified is a 304: only freshness changed.
	RefreshNotModified RefreshPath = "not_modified"
)

// numRefreshPaths is the number of RefreshPath values.
const numRefreshPaths = 3

// refreshPathValues lists every RefreshPath in label order.
func refreshPathValues() [numRefreshPaths]RefreshPath {
	return [numRefreshPaths]RefreshPath{RefreshAppend, RefreshFull, RefreshNotModified}
}

// index returns p's position in refreshPathValues, or -1.
func (p RefreshPath) index() int {
	switch p {
	case RefreshAppend:
		return 0
	case RefreshFull:
		return 1
	case RefreshNotModified:
		return 2
	}
	return -1
}

// ChecksumReason is the value of the reason label of
// gemproxy_cache_checksum_failures_total.
type ChecksumReason string

// The reasons a .gem could not be verified before it was stored.
const (
	// ChecksumMismatch means the body's SHA-256 differs from the published
	// checksum.
	ChecksumMismatch ChecksumReason = "mismatch"
	// ChecksumUnknown means no published checksum could be found.
	ChecksumUnknown ChecksumReason = "unknown"
)

// numChecksumReasons is the number of ChecksumReason values.
const numChecksumReasons = 2

// checksumReasonValues lists every ChecksumReason in label order.
func checksumReasonValues() [numChecksumReasons]ChecksumReason {
	return [numChecksumReasons]ChecksumReason{ChecksumMismatch, ChecksumUnknown}
}

// index returns r's position in checksumReasonValues, or -1.
func (r ChecksumReason) index() int {
	switch r {
	case ChecksumMismatch:
		return 0
	case ChecksumUnknown:
		return 1
	}
	return -1
}

// The values of gemproxy_upstream_circuit_state, for SetCircuitState.
const (
	// CircuitClosed means upstream requests flow normally.
	CircuitClosed = 0
	// CircuitHalfOpen means trial requests are probing a failed upstream.
	CircuitHalfOpen = 1
	// CircuitOpen means upstream requests are short-circuited.
	CircuitOpen = 2
)

// numStatusClasses is the number of HTTP status classes, 1xx to 5xx.
const numStatusClasses = 5

// statusClassValues lists the code label values of served responses in
// index order; upstream requests add UpstreamErrorLabel after them.
func statusClassValues() [numStatusClasses]string {
	return [numStatusClasses]string{"1xx", "2xx", "3xx", "4xx", "5xx"}
}

// StatusClass returns the status class label value of an HTTP status code:
// "1xx" to "5xx" for 100 to 599, and UpstreamErrorLabel for anything else
// (pass 0 for a transport error). The result is a constant string, so the
// call does not allocate.
func StatusClass(code int) string {
	switch {
	case code >= 100 && code <= 199:
		return "1xx"
	case code >= 200 && code <= 299:
		return "2xx"
	case code >= 300 && code <= 399:
		return "3xx"
	case code >= 400 && code <= 499:
		return "4xx"
	case code >= 500 && code <= 599:
		return "5xx"
	}
	return UpstreamErrorLabel
}

// statusClassIndex is StatusClass as an index into statusClassValues, or
// numStatusClasses (the "error" slot) for codes outside 100..599.
func statusClassIndex(code int) int {
	if code < 100 || code > 599 {
		return numStatusClasses
	}
	return code/100 - 1
}

// durationBuckets returns histogram buckets in seconds from 100µs to 60s,
// roughly 1-2.5-5 per decade: cache hits land in the sub-millisecond
// buckets, upstream fetches and large gem downloads in the upper ones.
func durationBuckets() []float64 {
	return []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
}

// requestKey identifies the pre-created request series of one (endpoint,
// method) pair.
type requestKey struct {
	// endpoint and method are the label values.
	endpoint, method string
}

// requestHandles are the resolved request series of one (endpoint, method)
// pair.
type requestHandles struct {
	// codes holds gemproxy_http_requests_total per status class.
	codes [numStatusClasses]prometheus.Counter
	// duration is gemproxy_http_request_duration_seconds.
	duration prometheus.Observer
}

// endpointHandles are the resolved per-endpoint series other than requests.
type endpointHandles struct {
	// name is the endpoint label value these handles carry.
	name string
	// lookups holds gemproxy_cache_lookups_total per Result.
	lookups [numResults]prometheus.Counter
	// upstreamCodes holds gemproxy_upstream_requests_total per status
	// class, then UpstreamErrorLabel.
	upstreamCodes [numStatusClasses + 1]prometheus.Counter
	// upstreamDuration is gemproxy_upstream_request_duration_seconds.
	upstreamDuration prometheus.Observer
	// upstreamBytes is gemproxy_upstream_response_bytes_total.
	upstreamBytes prometheus.Counter
}

// usageHandles are the resolved gauges of one cache class.
type usageHandles struct {
	// entries is gemproxy_cache_entries.
	entries prometheus.Gauge
	// bytes is gemproxy_cache_size_bytes.
	bytes prometheus.Gauge
}

// Metrics holds every gemproxy collector. Build it with New; it is safe for
// concurrent use. Prefer the methods, which are allocation-free and keep
// labels bounded, over the *Vec fields.
type Metrics struct {
	// HTTPRequests is gemproxy_http_requests_total{endpoint,method,code}:
	// responses served, by status class. See ObserveRequest.
	HTTPRequests *prometheus.CounterVec
	// HTTPRequestDuration is
	// gemproxy_http_request_duration_seconds{endpoint,method}: time from
	// request to the end of the response. See ObserveRequest.
	HTTPRequestDuration *prometheus.HistogramVec
	// HTTPResponseBytes is gemproxy_http_response_bytes_total{source}: body
	// bytes sent to clients. See ResponseBytes.
	HTTPResponseBytes *prometheus.CounterVec

	// CacheLookups is gemproxy_cache_lookups_total{endpoint,result}. See
	// Lookup.
	CacheLookups *prometheus.CounterVec
	// CacheFillWaiters is gemproxy_cache_fill_waiters: requests currently
	// waiting on a coalesced fill. Inc when a follower starts waiting, Dec
	// when it is released.
	CacheFillWaiters prometheus.Gauge
	// CacheEntries is gemproxy_cache_entries{class}. See SetCacheUsage.
	CacheEntries *prometheus.GaugeVec
	// CacheSize is gemproxy_cache_size_bytes{class}: the bytes max_size
	// caps (bodies, plus keys, headers and a fixed overhead per entry).
	// See SetCacheUsage.
	CacheSize *prometheus.GaugeVec
	// CacheEvictions is gemproxy_cache_evictions_total: entries removed to
	// honour the size cap.
	CacheEvictions prometheus.Counter
	// CacheChecksumFailures is
	// gemproxy_cache_checksum_failures_total{reason}: bodies refused
	// because they could not be verified. See ChecksumFailure.
	CacheChecksumFailures *prometheus.CounterVec

	// UpstreamRequests is gemproxy_upstream_requests_total{endpoint,code}:
	// requests sent upstream, by status class or UpstreamErrorLabel. See
	// ObserveUpstream.
	UpstreamRequests *prometheus.CounterVec
	// UpstreamRequestDuration is
	// gemproxy_upstream_request_duration_seconds{endpoint}: time to the
	// upstream response headers, or to the error. See ObserveUpstream.
	UpstreamRequestDuration *prometheus.HistogramVec
	// UpstreamInFlight is gemproxy_upstream_in_flight_requests: upstream
	// requests started and not yet finished. Inc before the call, Dec
	// after the body is closed.
	UpstreamInFlight prometheus.Gauge
	// UpstreamResponseBytes is
	// gemproxy_upstream_response_bytes_total{endpoint}: body bytes read
	// from upstream. See UpstreamBytes.
	UpstreamResponseBytes *prometheus.CounterVec
	// UpstreamCircuitState is gemproxy_upstream_circuit_state: 0 closed, 1
	// half-open, 2 open. See SetCircuitState.
	UpstreamCircuitState prometheus.Gauge

	// CompactIndexRefreshes is gemproxy_compactindex_refreshes_total{path}:
	// stale /versions and /info entries refreshed, by how. See
	// ObserveRefresh.
	CompactIndexRefreshes *prometheus.CounterVec
	// CompactIndexRefreshBytes is
	// gemproxy_compactindex_refresh_bytes_total{path}: body bytes
	// transferred by those refreshes. See ObserveRefresh.
	CompactIndexRefreshBytes *prometheus.CounterVec

	// BuildInfo is gemproxy_build_info{version,revision,goversion}, always
	// 1.
	BuildInfo prometheus.Gauge

	// requests maps declared (endpoint, method) pairs to their series; it
	// always holds (OtherLabel, OtherLabel). Read-only after New.
	requests map[requestKey]*requestHandles
	// endpoints maps declared endpoint names to their series; it always
	// holds OtherLabel. Read-only after New.
	endpoints map[string]*endpointHandles
	// usage maps declared cache classes to their gauges. Read-only after
	// New.
	usage map[string]usageHandles
	// responseBytes holds HTTPResponseBytes per Source.
	responseBytes [numSources]prometheus.Counter
	// refreshes holds CompactIndexRefreshes per RefreshPath.
	refreshes [numRefreshPaths]prometheus.Counter
	// refreshBytes holds CompactIndexRefreshBytes per RefreshPath.
	refreshBytes [numRefreshPaths]prometheus.Counter
	// checksumFailures holds CacheChecksumFailures per ChecksumReason.
	checksumFailures [numChecksumReasons]prometheus.Counter
}

// New creates every gemproxy collector, pre-creates all label combinations
// declared by opts at zero, and registers them on reg together with the Go
// runtime and process collectors. A Go or process collector already
// registered on reg is kept (so prometheus.DefaultRegisterer works); any
// other registration failure, such as calling New twice on one registry,
// is a programming error and panics. A nil reg builds working but
// unregistered metrics, which is convenient in tests.
func New(reg prometheus.Registerer, opts Options) *Metrics {
	m := &Metrics{
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "http", Name: "requests_total",
			Help: "HTTP responses served, by endpoint, method and status class.",
		}, []string{"endpoint", "method", "code"}),
		HTTPRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:    "Time to serve an HTTP request, from receipt to the end of the response.",
			Buckets: durationBuckets(),
		}, []string{"endpoint", "method"}),
		HTTPResponseBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "http", Name: "response_bytes_total",
			Help: "Response body bytes sent to clients, by where they came from.",
		}, []string{"source"}),
		CacheLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "cache", Name: "lookups_total",
			Help: "Cache lookups by endpoint and result (hit, miss, stale, revalidated, coalesced, bypass).",
		}, []string{"endpoint", "result"}),
		CacheFillWaiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "cache", Name: "fill_waiters",
			Help: "Requests currently waiting on another request's fill of the same key.",
		}),
		CacheEntries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "cache", Name: "entries",
			Help: "Entries in the cache, by cache class.",
		}, []string{"class"}),
		CacheSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "cache", Name: "size_bytes",
			Help: "Bytes the cache size cap counts (bodies plus per-entry overhead), by cache class.",
		}, []string{"class"}),
		CacheEvictions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "cache", Name: "evictions_total",
			Help: "Cache entries evicted to honour the size cap.",
		}),
		CacheChecksumFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "cache", Name: "checksum_failures_total",
			Help: "Bodies refused by the cache because their checksum did not match (mismatch) or was not published (unknown).",
		}, []string{"reason"}),
		UpstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "requests_total",
			Help: "Requests sent upstream, by endpoint and status class, or error when no response arrived.",
		}, []string{"endpoint", "code"}),
		UpstreamRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "request_duration_seconds",
			Help:    "Time from sending an upstream request to its response headers or error.",
			Buckets: durationBuckets(),
		}, []string{"endpoint"}),
		UpstreamInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "in_flight_requests",
			Help: "Upstream requests currently in flight.",
		}),
		UpstreamResponseBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "response_bytes_total",
			Help: "Response body bytes read from upstream, by endpoint.",
		}, []string{"endpoint"}),
		UpstreamCircuitState: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "upstream", Name: "circuit_state",
			Help: "State of the upstream circuit breaker: 0 closed, 1 half-open, 2 open.",
		}),
		CompactIndexRefreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "compactindex", Name: "refreshes_total",
			Help: "Compact-index entries refreshed from upstream, by path (append, full, not_modified).",
		}, []string{"path"}),
		CompactIndexRefreshBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "compactindex", Name: "refresh_bytes_total",
			Help: "Body bytes transferred by compact-index refreshes, by path (append, full, not_modified).",
		}, []string{"path"}),
		BuildInfo: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "build_info",
			Help: "Always 1; the labels identify the running gemproxy build.",
			ConstLabels: prometheus.Labels{
				"version":   orDefault(opts.Version, "unknown"),
				"revision":  orDefault(opts.Revision, "unknown"),
				"goversion": orDefault(opts.GoVersion, runtime.Version()),
			},
		}),
		requests:  make(map[requestKey]*requestHandles),
		endpoints: make(map[string]*endpointHandles),
		usage:     make(map[string]usageHandles),
	}
	m.BuildInfo.Set(1)
	m.precreate(opts)
	if reg != nil {
		m.register(reg)
	}
	return m
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// precreate resolves every declared label combination, which creates its
// series at zero, and keeps the handles for the hot-path methods.
func (m *Metrics) precreate(opts Options) {
	eps := append([]Endpoint{{Name: OtherLabel, Methods: []string{OtherLabel}}}, opts.Endpoints...)
	for _, ep := range eps {
		if ep.Name == "" {
			continue
		}
		methods := ep.Methods
		if len(methods) == 0 {
			methods = []string{http.MethodGet, http.MethodHead}
		}
		for _, method := range methods {
			key := requestKey{ep.Name, method}
			if _, ok := m.requests[key]; ok {
				continue
			}
			h := &requestHandles{duration: m.HTTPRequestDuration.WithLabelValues(ep.Name, method)}
			for i, class := range statusClassValues() {
				h.codes[i] = m.HTTPRequests.WithLabelValues(ep.Name, method, class)
			}
			m.requests[key] = h
		}
		if _, ok := m.endpoints[ep.Name]; ok {
			continue
		}
		h := &endpointHandles{
			name:             ep.Name,
			upstreamDuration: m.UpstreamRequestDuration.WithLabelValues(ep.Name),
			upstreamBytes:    m.UpstreamResponseBytes.WithLabelValues(ep.Name),
		}
		for i, r := range resultValues() {
			h.lookups[i] = m.CacheLookups.WithLabelValues(ep.Name, string(r))
		}
		for i, class := range statusClassValues() {
			h.upstreamCodes[i] = m.UpstreamRequests.WithLabelValues(ep.Name, class)
		}
		h.upstreamCodes[numStatusClasses] = m.UpstreamRequests.WithLabelValues(ep.Name, UpstreamErrorLabel)
		m.endpoints[ep.Name] = h
	}
	for _, class := range opts.Classes {
		if _, ok := m.usage[class]; ok || class == "" {
			continue
		}
		m.usage[class] = usageHandles{
			entries: m.CacheEntries.WithLabelValues(class),
			bytes:   m.CacheSize.WithLabelValues(class),
		}
	}
	for i, s := range sourceValues() {
		m.responseBytes[i] = m.HTTPResponseBytes.WithLabelValues(string(s))
	}
	for i, p := range refreshPathValues() {
		m.refreshes[i] = m.CompactIndexRefreshes.WithLabelValues(string(p))
		m.refreshBytes[i] = m.CompactIndexRefreshBytes.WithLabelValues(string(p))
	}
	for i, r := range checksumReasonValues() {
		m.checksumFailures[i] = m.CacheChecksumFailures.WithLabelValues(string(r))
	}
}

// collectors returns gemproxy's own collectors, in registration order.
func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.HTTPRequests, m.HTTPRequestDuration, m.HTTPResponseBytes,
		m.CacheLookups, m.CacheFillWaiters, m.CacheEntries, m.CacheSize, m.CacheEvictions, m.CacheChecksumFailures,
		m.UpstreamRequests, m.UpstreamRequestDuration, m.UpstreamInFlight, m.UpstreamResponseBytes, m.UpstreamCircuitState,
		m.CompactIndexRefreshes, m.CompactIndexRefreshBytes,
		m.BuildInfo,
	}
}

// register registers gemproxy's collectors (panicking on failure) and the
// Go and process collectors (tolerating ones already registered).
func (m *Metrics) register(reg prometheus.Registerer) {
	reg.MustRegister(m.collectors()...)
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			if are := (prometheus.AlreadyRegisteredError{}); !errors.As(err, &are) {
				panic(err)
			}
		}
	}
}

// endpoint returns the handles of a declared endpoint, or of OtherLabel.
func (m *Metrics) endpoint(name string) *endpointHandles {
	if h, ok := m.endpoints[name]; ok {
		return h
	}
	return m.endpoints[OtherLabel]
}

// ObserveRequest records one served request: it increments
// gemproxy_http_requests_total with the status class of code (codes outside
// 100..599 count as "5xx", an invalid response being the server's fault)
// and observes d in gemproxy_http_request_duration_seconds. A pair of
// endpoint and method not declared in Options is recorded under
// (OtherLabel, OtherLabel). It does not allocate.
func (m *Metrics) ObserveRequest(endpoint, method string, code int, d time.Duration) {
	h, ok := m.requests[requestKey{endpoint, method}]
	if !ok {
		h = m.requests[requestKey{OtherLabel, OtherLabel}]
	}
	i := statusClassIndex(code)
	if i == numStatusClasses {
		i = numStatusClasses - 1
	}
	h.codes[i].Inc()
	h.duration.Observe(d.Seconds())
}

// Lookup returns the gemproxy_cache_lookups_total counter for endpoint and
// r, for example m.Lookup("info", ResultHit).Inc(). An undeclared endpoint
// is counted under OtherLabel. A Result outside the constants (possible
// only through a conversion) gets its series created on first use; every
// other call does not allocate.
func (m *Metrics) Lookup(endpoint string, r Result) prometheus.Counter {
	h := m.endpoint(endpoint)
	if i := r.index(); i >= 0 {
		return h.lookups[i]
	}
	return m.CacheLookups.WithLabelValues(h.name, string(r))
}

// ObserveUpstream records one upstream request: it increments
// gemproxy_upstream_requests_total with the status class of code, or
// UpstreamErrorLabel when code is outside 100..599 (pass 0 when no response
// arrived), and observes d in gemproxy_upstream_request_duration_seconds.
// An undeclared endpoint is counted under OtherLabel. It does not allocate.
func (m *Metrics) ObserveUpstream(endpoint string, code int, d time.Duration) {
	h := m.endpoint(endpoint)
	h.upstreamCodes[statusClassIndex(code)].Inc()
	h.upstreamDuration.Observe(d.Seconds())
}

// UpstreamBytes returns the gemproxy_upstream_response_bytes_total counter
// for endpoint (OtherLabel when undeclared); Add the body bytes read. It
// does not allocate.
func (m *Metrics) UpstreamBytes(endpoint string) prometheus.Counter {
	return m.endpoint(endpoint).upstreamBytes
}

// ResponseBytes returns the gemproxy_http_response_bytes_total counter for
// s; Add the body bytes sent. A Source outside the constants gets its
// series created on first use; otherwise it does not allocate.
func (m *Metrics) ResponseBytes(s Source) prometheus.Counter {
	if i := s.index(); i >= 0 {
		return m.responseBytes[i]
	}
	return m.HTTPResponseBytes.WithLabelValues(string(s))
}

// ObserveRefresh records one compact-index refresh that took path p and
// transferred n body bytes (0 for a 304). Negative n counts as 0. A
// RefreshPath outside the constants gets its series created on first use;
// otherwise it does not allocate.
func (m *Metrics) ObserveRefresh(p RefreshPath, n int64) {
	if n < 0 {
		n = 0
	}
	if i := p.index(); i >= 0 {
		m.refreshes[i].Inc()
		m.refreshBytes[i].Add(float64(n))
		return
	}
	m.CompactIndexRefreshes.WithLabelValues(string(p)).Inc()
	m.CompactIndexRefreshBytes.WithLabelValues(string(p)).Add(float64(n))
}

// ChecksumFailure returns the gemproxy_cache_checksum_failures_total
// counter for r. A ChecksumReason outside the constants gets its series
// created on first use; otherwise it does not allocate.
func (m *Metrics) ChecksumFailure(r ChecksumReason) prometheus.Counter {
	if i := r.index(); i >= 0 {
		return m.checksumFailures[i]
	}
	return m.CacheChecksumFailures.WithLabelValues(string(r))
}

// SetCacheUsage sets gemproxy_cache_entries and gemproxy_cache_size_bytes
// for a cache class. Classes come from code, not clients: one missing from
// Options.Classes gets its series created on first use rather than being
// lost or merged (merging gauges would make them lie).
func (m *Metrics) SetCacheUsage(class string, entries, bytes int64) {
	h, ok := m.usage[class]
	if !ok {
		h = usageHandles{entries: m.CacheEntries.WithLabelValues(class), bytes: m.CacheSize.WithLabelValues(class)}
	}
	h.entries.Set(float64(entries))
	h.bytes.Set(float64(bytes))
}

// SetCircuitState sets gemproxy_upstream_circuit_state to s, one of
// CircuitClosed, CircuitHalfOpen or CircuitOpen.
func (m *Metrics) SetCircuitState(s int) {
	m.UpstreamCircuitState.Set(float64(s))
}

// Handler returns the /metrics handler for g (normally the registry given
// to New): Prometheus text or protobuf exposition by content negotiation,
// gzip when the scraper accepts it. A collection error does not fail the
// scrape: whatever could be gathered is served, and HTTP 500 is returned
// only when nothing could be.
func (m *Metrics) Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	})
}
