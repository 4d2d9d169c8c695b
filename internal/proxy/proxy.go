// Package proxy is gemproxy's HTTP side: the Fiber app, the route table, the
// read-through handler over the cache, compact-index serving and refreshing,
// and the pass-through of authenticated and write calls to the upstream.
package proxy

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// Options configures New. Zero values select the documented defaults.
type Options struct {
	// Upstream configures the upstream client; Upstream.URL is required.
	Upstream UpstreamOptions
	// Server configures the client-facing server limits.
	Server ServerOptions
	// TTL overrides DefaultTTL per class. A zero or missing value keeps the
	// default; a negative value means "always revalidate".
	TTL map[Class]time.Duration
	// NegativeTTL is how long a 404 is remembered. Default 60s; negative
	// disables negative caching.
	NegativeTTL time.Duration
	// MaxBodySize is the largest request body forwarded upstream. Default
	// 500 MiB (the origin's limit).
	MaxBodySize int64
	// MaxUnverifiedSize is the largest gem served (from a staging file)
	// without being stored when its checksum is unknown. Default 128 MiB.
	MaxUnverifiedSize int64
	// MaxResponseSize bounds, per class, the upstream body a cached route
	// accepts, counted after any Content-Encoding is decoded; a larger one
	// is a 502 and nothing is stored. A missing or non-positive value keeps
	// DefaultMaxResponseSize.
	MaxResponseSize map[Class]int64
	// MaxStale bounds, per class, how long after expiry a stale entry is
	// still served when the upstream fails (stale-if-error). A missing or
	// zero value keeps DefaultMaxStale; a negative value never serves stale.
	MaxStale map[Class]time.Duration
	// StaleWhileRevalidate is, per class, the window after expiry in which
	// a stale entry is served at once while one background refresh runs.
	// Missing or zero: DefaultStaleWhileRevalidate; negative disables it.
	StaleWhileRevalidate map[Class]time.Duration
	// ClassTimeouts overrides, per class, the upstream's first-byte and idle
	// timeouts (a slow mirror of large gems may need more than the index).
	ClassTimeouts map[Class]Timeouts
	// Breaker configures the upstream circuit breaker.
	Breaker BreakerOptions
	// Offline never contacts the upstream: reads are served from the cache
	// whatever their age, misses get 504 and writes 503.
	Offline bool
	// KeepYanked keeps a yanked version's .gem and gemspec in the cache after
	// a yank through gemproxy. Default false.
	KeepYanked bool
	// Logger receives the access log and errors. Default slog.Default().
	Logger *slog.Logger
	// Metrics receives the measurements. Required.
	Metrics *metrics.Metrics
	// MetricsHandler serves GET /metrics; nil disables the route.
	MetricsHandler http.Handler
	// Version is gemproxy's version (User-Agent suffix).
	Version string
}

// Proxy is the gemproxy HTTP server.
type Proxy struct {
	opts   Options
	store  *cache.Store
	router *Router
	up     *upstream
	log    *slog.Logger
	m      *metrics.Metrics
	app    *fiber.App
	// draining is set by Drain: /readyz answers 503.
	draining atomic.Bool
	// now is the clock, replaceable in tests.
	now func() time.Time

	refreshMu sync.Mutex
	// refreshing holds the keys with a stale-while-revalidate refresh running.
	refreshing map[string]bool
	// background counts running background refreshes.
	background sync.WaitGroup
}

// circuitStateName names a metrics.Circuit* state for logs.
func circuitStateName(state int) string {
	switch state {
	case metrics.CircuitOpen:
		return "open"
	case metrics.CircuitHalfOpen:
		return "half-open"
	}
	return "closed"
}

// ErrNoUpstream is returned by New when Options.Upstream.URL is missing.
var ErrNoUpstream = errors.New("proxy: upstream URL is required")

// New builds the proxy over store.
func New(store *cache.Store, opts Options) (*Proxy, error) {
	if opts.Upstream.URL == nil {
		return nil, ErrNoUpstream
	}
	if opts.NegativeTTL == 0 {
		opts.NegativeTTL = 60 * time.Second
	}
	if opts.MaxBodySize == 0 {
		opts.MaxBodySize = 500 << 20
	}
	if opts.MaxUnverifiedSize == 0 {
		opts.MaxUnverifiedSize = 128 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	opts.Upstream.Version = opts.Version
	p := &Proxy{
		opts:       opts,
		store:      store,
		router:     NewRouter(),
		log:        opts.Logger,
		m:          opts.Metrics,
		now:        time.Now,
		refreshing: make(map[string]bool),
	}
	br := newBreaker(opts.Breaker, func() time.Time { return p.now() }, func(state int, reason string) {
		p.m.SetCircuitState(state)
		p.log.Warn("upstream circuit state changed", "state", circuitStateName(state), "reason", reason)
	})
	p.up = newUpstream(opts.Upstream, br)
	p.app = p.newApp()
	return p, nil
}

// DefaultMaxStale is how long after expiry each class may be served stale
// when the upstream fails: without limit for the index and immutable
// classes, one day for API JSON.
var DefaultMaxStale = map[Class]time.Duration{
	ClassVersions: Unlimited, ClassInfo: Unlimited, ClassNames: Unlimited, ClassFullIndex: Unlimited,
	ClassQuickSpec: Unlimited, ClassGem: Unlimited, ClassAPI: 24 * time.Hour,
}

// DefaultStaleWhileRevalidate is the window after expiry in which a stale
// entry is served at once and refreshed in the background: index files
// only, never /info (a stale /info beside a fresh /versions breaks Bundler).
var DefaultStaleWhileRevalidate = map[Class]time.Duration{
	ClassVersions: 30 * time.Second, ClassNames: 30 * time.Second, ClassFullIndex: 30 * time.Second,
}

// DefaultMaxResponseSize is the largest upstream body accepted per class:
// 64 MiB for the index files (/versions is about 20 MB), 8 MiB for API
// JSON, and for gems the origin's own 500 MiB push limit.
var DefaultMaxResponseSize = map[Class]int64{
	ClassVersions: 64 << 20, ClassInfo: 64 << 20, ClassNames: 64 << 20, ClassFullIndex: 64 << 20,
	ClassQuickSpec: 64 << 20, ClassGem: 500 << 20, ClassAPI: 8 << 20,
}

// maxResponseSize is the largest upstream body accepted for class c.
func (p *Proxy) maxResponseSize(c Class) int64 {
	if n := p.opts.MaxResponseSize[c]; n > 0 {
		return n
	}
	return DefaultMaxResponseSize[c]
}

// Unlimited is a staleness bound that never runs out.
const Unlimited = time.Duration(1<<63 - 1)

// classDuration looks up c in m, falling back to def; negative means 0.
func classDuration(m, def map[Class]time.Duration, c Class) time.Duration {
	d, ok := m[c]
	if !ok || d == 0 {
		d = def[c]
	}
	return max(d, 0)
}

// ttl is the freshness of class.
func (p *Proxy) ttl(c Class) time.Duration {
	if d, ok := p.opts.TTL[c]; ok && d != 0 {
		if d < 0 {
			return 0
		}
		return d
	}
	return DefaultTTL[c]
}

// App returns the Fiber app (for Listen, Test and Shutdown).
func (p *Proxy) App() *fiber.App { return p.app }

// Wait blocks until background refreshes have finished. Call it after the
// server stopped and before closing the store.
func (p *Proxy) Wait() { p.background.Wait() }

// Drain marks the proxy as draining: /readyz answers 503 from now on.
func (p *Proxy) Drain() { p.draining.Store(true) }
