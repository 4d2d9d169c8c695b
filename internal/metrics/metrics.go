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
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
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

// Endpoint declares one route-table endpoint name, the HTTP methods it
// answers and what it can do, so that New pre-creates exactly the series
// that can occur for it.
type Endpoint struct {
	// Name is the endpoint label value (for example "info" or "gem"),
	// never a gem name. An empty Name is ignored; OtherLabel always
	// exists.
	Name string
	// Methods lists the HTTP methods (as the server reports them, e.g.
	// "GET") the endpoint answers. Zero means GET and HEAD.
	Methods []string
	// RareMethods lists methods of Methods that clients seldom send (HEAD
	// on most reads, PUT on most writes): their series are created on
	// first use instead of by New, which keeps /metrics small. Zero means
	// every method is pre-created.
	RareMethods []string
	// Codes lists the status classes ("2xx" ... "5xx") the endpoint can
	// answer; New pre-creates those, and any other class gets its series on
	// first use. Zero means "2xx" to "5xx". "1xx" is never pre-created: no
	// final response is informational.
	Codes []string
	// Cached endpoints are read through the cache: every Result can occur.
	// Other endpoints that reach the upstream are forwarded: only
	// ResultBypass.
	Cached bool
	// Upstream endpoints may send requests upstream; the others are
	// answered locally and get no upstream or lookup series.
	Upstream bool
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

// requestHandles are the request series of one (endpoint, method) pair,
// resolved by New or, for a rare method, on first use.
type requestHandles struct {
	// endpoint and method are the label values.
	endpoint, method string
	// declared lists the status classes to resolve.
	declared []string
	// once resolves codes and duration.
	once sync.Once
	// codes holds gemproxy_http_requests_total per status class; nil for a
	// class the endpoint was declared unable to answer.
	codes [numStatusClasses]prometheus.Counter
	// duration is gemproxy_http_request_duration_seconds.
	duration prometheus.Observer
}

// endpointHandles are the resolved per-endpoint series other than requests.
type endpointHandles struct {
	// name is the endpoint label value these handles carry.
	name string
	// lookups holds gemproxy_cache_lookups_total per Result; nil for a
	// Result the endpoint cannot produce.
	lookups [numResults]prometheus.Counter
	// upstreamCodes holds gemproxy_upstream_requests_total per status
	// class, then UpstreamErrorLabel; nil for a local endpoint, and for
	// 1xx.
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

	// ClientRequests is
	// gemproxy_client_requests_total{client,client_version,ci}: requests by
	// the program, version and CI their User-Agent names. See
	// ObserveClient.
	ClientRequests *prometheus.CounterVec

	// SharedStore holds the metrics of the fleet's shared store.
	SharedStore *SharedStore

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
	responseBytes []prometheus.Counter
	// refreshes holds CompactIndexRefreshes per RefreshPath.
	refreshes []prometheus.Counter
	// refreshBytes holds CompactIndexRefreshBytes per RefreshPath.
	refreshBytes []prometheus.Counter
	// checksumFailures holds CacheChecksumFailures per ChecksumReason.
	checksumFailures []prometheus.Counter
	// clients holds the ClientRequests series created so far.
	clients *clientSlots
}

// New creates every gemproxy collector through promauto.With(reg), so each
// is registered as it is built, pre-creates at zero the label combinations
// that opts says can occur, and registers the Go runtime and process
// collectors. A Go or process collector already registered on reg is kept
// (so prometheus.DefaultRegisterer works); any other registration failure,
// such as calling New twice on one registry, is a programming error and
// panics. A nil reg builds working but unregistered metrics, which is
// convenient in tests.
func New(reg prometheus.Registerer, opts Options) *Metrics {
	f := promauto.With(reg)
	counterVec := func(subsystem, name, help string, labels ...string) *prometheus.CounterVec {
		return f.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}, labels)
	}
	gauge := func(subsystem, name, help string) prometheus.Gauge {
		return f.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help})
	}
	gaugeVec := func(subsystem, name, help string, labels ...string) *prometheus.GaugeVec {
		return f.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}, labels)
	}
	histogramVec := func(subsystem, name, help string, labels ...string) *prometheus.HistogramVec {
		return f.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help,
			Buckets: durationBuckets()}, labels)
	}
	m := &Metrics{
		HTTPRequests: counterVec("http", "requests_total",
			"HTTP responses served, by endpoint, method and status class.", "endpoint", "method", "code"),
		HTTPRequestDuration: histogramVec("http", "request_duration_seconds",
			"Time to serve an HTTP request, from receipt to the end of the response.", "endpoint", "method"),
		HTTPResponseBytes: counterVec("http", "response_bytes_total",
			"Response body bytes sent to clients, by where they came from.", "source"),
		CacheLookups: counterVec("cache", "lookups_total",
			"Cache lookups by endpoint and result (hit, miss, stale, revalidated, coalesced, bypass).", "endpoint", "result"),
		CacheFillWaiters: gauge("cache", "fill_waiters",
			"Requests currently waiting on a fill or refresh of the same key."),
		CacheEntries: gaugeVec("cache", "entries", "Entries in the cache, by cache class.", "class"),
		CacheSize: gaugeVec("cache", "size_bytes",
			"Bytes the cache size cap counts (bodies plus per-entry overhead), by cache class.", "class"),
		CacheEvictions: f.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: "cache", Name: "evictions_total",
			Help: "Cache entries evicted to honour the size cap."}),
		CacheChecksumFailures: counterVec("cache", "checksum_failures_total",
			"Bodies refused by the cache because their checksum did not match (mismatch) or was not published (unknown).", "reason"),
		UpstreamRequests: counterVec("upstream", "requests_total",
			"Requests sent upstream, by endpoint and status class, or error when no response arrived.", "endpoint", "code"),
		UpstreamRequestDuration: histogramVec("upstream", "request_duration_seconds",
			"Time from sending an upstream request to its response headers or error.", "endpoint"),
		UpstreamInFlight: gauge("upstream", "in_flight_requests", "Upstream requests currently in flight."),
		UpstreamResponseBytes: counterVec("upstream", "response_bytes_total",
			"Response body bytes read from upstream, by endpoint.", "endpoint"),
		UpstreamCircuitState: gauge("upstream", "circuit_state",
			"State of the upstream circuit breaker: 0 closed, 1 half-open, 2 open."),
		CompactIndexRefreshes: counterVec("compactindex", "refreshes_total",
			"Compact-index entries refreshed from upstream, by path (append, full, not_modified).", "path"),
		CompactIndexRefreshBytes: counterVec("compactindex", "refresh_bytes_total",
			"Body bytes transferred by compact-index refreshes, by path (append, full, not_modified).", "path"),
		ClientRequests: counterVec("client", "requests_total",
			"Requests by client program (bundler, rubygems, other), its MAJOR.MINOR version and the CI it runs on, read from the User-Agent.",
			"client", "client_version", "ci"),
		BuildInfo: f.NewGauge(prometheus.GaugeOpts{
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
		clients:   new(clientSlots),
	}
	m.SharedStore = newSharedStore(f)
	m.BuildInfo.Set(1)
	m.precreate(opts)
	if reg != nil {
		registerRuntime(reg)
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
		codes := ep.Codes
		if len(codes) == 0 {
			codes = finalStatusClasses()
		}
		for _, method := range methods {
			key := requestKey{ep.Name, method}
			if _, ok := m.requests[key]; ok {
				continue
			}
			h := &requestHandles{endpoint: ep.Name, method: method, declared: codes}
			if !slices.Contains(ep.RareMethods, method) {
				m.resolveRequest(h)
			}
			m.requests[key] = h
		}
		if _, ok := m.endpoints[ep.Name]; !ok {
			m.endpoints[ep.Name] = m.endpointSeries(ep)
		}
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
	m.responseBytes = counters(m.HTTPResponseBytes, sourceNames[:])
	m.refreshes = counters(m.CompactIndexRefreshes, refreshPathNames[:])
	m.refreshBytes = counters(m.CompactIndexRefreshBytes, refreshPathNames[:])
	m.checksumFailures = counters(m.CacheChecksumFailures, checksumReasonNames[:])
}

// resolveRequest creates the declared series of h, once.
func (m *Metrics) resolveRequest(h *requestHandles) {
	h.once.Do(func() {
		h.duration = m.HTTPRequestDuration.WithLabelValues(h.endpoint, h.method)
		for i, class := range statusClassNames {
			if slices.Contains(h.declared, class) {
				h.codes[i] = m.HTTPRequests.WithLabelValues(h.endpoint, h.method, class)
			}
		}
	})
}

// endpointSeries resolves the lookup and upstream series that can occur
// for ep: every Result for a cached endpoint, bypass for a forwarded one,
// none for a local one. OtherLabel (declared without Upstream) gets them
// all, as undeclared endpoints are counted there.
func (m *Metrics) endpointSeries(ep Endpoint) *endpointHandles {
	h := &endpointHandles{name: ep.Name}
	other := ep.Name == OtherLabel
	if !ep.Upstream && !other {
		return h
	}
	for r := ResultHit; r < numResults; r++ {
		if ep.Cached || other || r == ResultBypass {
			h.lookups[r] = m.CacheLookups.WithLabelValues(ep.Name, r.String())
		}
	}
	for i, class := range statusClassNames {
		if slices.Contains(finalStatusClasses(), class) {
			h.upstreamCodes[i] = m.UpstreamRequests.WithLabelValues(ep.Name, class)
		}
	}
	h.upstreamCodes[numStatusClasses] = m.UpstreamRequests.WithLabelValues(ep.Name, UpstreamErrorLabel)
	h.upstreamDuration = m.UpstreamRequestDuration.WithLabelValues(ep.Name)
	h.upstreamBytes = m.UpstreamResponseBytes.WithLabelValues(ep.Name)
	return h
}

// registerRuntime registers the Go and process collectors on reg,
// tolerating ones already registered.
func registerRuntime(reg prometheus.Registerer) {
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
// (OtherLabel, OtherLabel). It does not allocate, except when it creates
// a series New did not (a rare method's, or an undeclared class's).
func (m *Metrics) ObserveRequest(endpoint, method string, code int, d time.Duration) {
	h, ok := m.requests[requestKey{endpoint, method}]
	if !ok {
		h = m.requests[requestKey{OtherLabel, OtherLabel}]
	}
	m.resolveRequest(h)
	i := statusClassIndex(code)
	if i == numStatusClasses {
		i = numStatusClasses - 1
	}
	counterOr(h.codes[i], m.HTTPRequests, h.endpoint, h.method, statusClassNames[i]).Inc()
	h.duration.Observe(d.Seconds())
}

// counterOr returns c, or when it is nil (a series New did not create)
// the child of vec with labels.
func counterOr(c prometheus.Counter, vec *prometheus.CounterVec, labels ...string) prometheus.Counter {
	if c != nil {
		return c
	}
	return vec.WithLabelValues(labels...)
}

// Lookup returns the gemproxy_cache_lookups_total counter for endpoint and
// r, for example m.Lookup("info", ResultHit).Inc(). An undeclared endpoint
// is counted under OtherLabel. A combination New did not pre-create (one
// its Endpoint said cannot occur) gets its series on first use; every other
// call does not allocate.
func (m *Metrics) Lookup(endpoint string, r Result) prometheus.Counter {
	h := m.endpoint(endpoint)
	if c := h.lookups[r]; c != nil {
		return c
	}
	return m.CacheLookups.WithLabelValues(h.name, r.String())
}

// ObserveUpstream records one upstream request: it increments
// gemproxy_upstream_requests_total with the status class of code, or
// UpstreamErrorLabel when code is outside 100..599 (pass 0 when no response
// arrived), and observes d in gemproxy_upstream_request_duration_seconds.
// An undeclared endpoint is counted under OtherLabel. It does not allocate
// for an endpoint declared with Upstream.
func (m *Metrics) ObserveUpstream(endpoint string, code int, d time.Duration) {
	h := m.upstream(endpoint)
	counterOr(h.upstreamCodes[statusClassIndex(code)], m.UpstreamRequests, h.name, StatusClass(code)).Inc()
	h.upstreamDuration.Observe(d.Seconds())
}

// UpstreamBytes returns the gemproxy_upstream_response_bytes_total counter
// for endpoint (OtherLabel when undeclared); Add the body bytes read. It
// does not allocate for an endpoint declared with Upstream.
func (m *Metrics) UpstreamBytes(endpoint string) prometheus.Counter {
	return m.upstream(endpoint).upstreamBytes
}

// upstream returns the handles of endpoint, resolving its upstream series
// on first use when it was declared local (which a correct route table
// never does).
func (m *Metrics) upstream(endpoint string) *endpointHandles {
	h := m.endpoint(endpoint)
	if h.upstreamDuration != nil {
		return h
	}
	return m.endpointSeries(Endpoint{Name: h.name, Upstream: true})
}

// ResponseBytes returns the gemproxy_http_response_bytes_total counter for
// s; Add the body bytes sent. It does not allocate.
func (m *Metrics) ResponseBytes(s Source) prometheus.Counter { return m.responseBytes[s] }

// ObserveRefresh records one compact-index refresh that took path p and
// transferred n body bytes (0 for a 304). Negative n counts as 0. It does
// not allocate.
func (m *Metrics) ObserveRefresh(p RefreshPath, n int64) {
	m.refreshes[p].Inc()
	m.refreshBytes[p].Add(float64(max(n, 0)))
}

// ChecksumFailure returns the gemproxy_cache_checksum_failures_total
// counter for r. It does not allocate.
func (m *Metrics) ChecksumFailure(r ChecksumReason) prometheus.Counter { return m.checksumFailures[r] }

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
