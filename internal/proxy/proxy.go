package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/gemproxy/gemproxy/internal/accesslog"
	"github.com/gemproxy/gemproxy/internal/breaker"
	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/cache/localblob"
	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/status"
)

// BreakerOptions configures the upstream circuit breaker (package breaker
// documents each field).
type BreakerOptions = breaker.Options

// DefaultBreakerOptions returns the values zero fields of BreakerOptions
// select (cmd/gemproxy shows them as the configuration's defaults).
func DefaultBreakerOptions() BreakerOptions { return breaker.DefaultOptions() }

// Options configures New. Zero values select the documented defaults.
type Options struct {
	// Upstream configures the upstream client; Upstream.URL is required.
	Upstream UpstreamOptions
	// Server configures the client-facing server limits.
	Server ServerOptions
	// Policies sets the cache policy per class. A class missing from the
	// map gets its row of DefaultPolicies; a row present is taken as it is
	// (zero fields mean zero, not "the default").
	Policies map[Class]Policy
	// MaxBodySize is the largest request body forwarded upstream. Default
	// DefaultMaxBodySize.
	MaxBodySize int64
	// MaxUnverifiedSize is the largest gem served (from a staging file)
	// without being stored when its checksum is unknown. Default 128 MiB.
	MaxUnverifiedSize int64
	// Breaker configures the upstream circuit breaker.
	Breaker BreakerOptions
	// Offline never contacts the upstream: reads are served from the cache
	// whatever their age, misses get 504 and writes 503.
	Offline bool
	// KeepYanked keeps a yanked version's .gem and gemspec in the cache after
	// a yank through gemproxy. Default false.
	KeepYanked bool
	// Logger receives every log line but the access log. Default
	// slog.Default().
	Logger *slog.Logger
	// AccessLog receives one line per request; nil writes no access log.
	AccessLog *accesslog.Logger
	// Metrics receives the measurements. Default: unregistered metrics
	// that nothing exposes.
	Metrics *metrics.Metrics
	// MetricsHandler serves GET /metrics; nil disables the route.
	MetricsHandler http.Handler
	// Status is the status page served to browsers at /, told about the
	// gems requested and the upstream's failures; nil answers / to
	// browsers as to any client.
	Status *status.Page
	// Version is gemproxy's version (User-Agent suffix).
	Version string
	// Shared is the fleet's shared tier; its zero value is none.
	Shared SharedOptions
	// AdminToken enables the admin API under /-/ (admin.go) for requests
	// bearing it; empty disables it.
	AdminToken string
}

// DefaultMaxBodySize is the default Options.MaxBodySize: 500 MiB, the
// origin's limit.
const DefaultMaxBodySize = 500 << 20

// Proxy is the gemproxy HTTP server: it dispatches each request (handle),
// serves cached routes through its filler and writes the entry out
// (serveEntry), and forwards writes and credentialed calls (forward).
type Proxy struct {
	opts   Options
	store  *cache.Store
	router *Router
	up     *upstream
	// fill answers cached routes from the cache and the upstream.
	fill   *filler
	log    *slog.Logger
	access *accesslog.Logger
	m      *metrics.Metrics
	app    *fiber.App
	// draining is set by Drain: /readyz answers 503.
	draining atomic.Bool
	// now is the clock, replaceable in tests.
	now func() time.Time
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
	opts.MaxBodySize = cmp.Or(opts.MaxBodySize, DefaultMaxBodySize)
	opts.MaxUnverifiedSize = cmp.Or(opts.MaxUnverifiedSize, 128<<20)
	opts.Logger = cmp.Or(opts.Logger, slog.Default())
	if opts.Metrics == nil {
		opts.Metrics = metrics.New(nil, metrics.Options{Endpoints: MetricEndpoints()})
	}
	opts.Upstream.Version = opts.Version
	policies := DefaultPolicies()
	for c, pol := range opts.Policies {
		policies[c] = pol
	}
	opts.Policies = policies
	p := &Proxy{
		opts:   opts,
		store:  store,
		router: NewRouter(),
		log:    opts.Logger,
		access: opts.AccessLog,
		m:      opts.Metrics,
		now:    time.Now,
	}
	clock := func() time.Time { return p.now() }
	br := breaker.New(opts.Breaker, clock, func(state int, reason string) {
		p.m.SetCircuitState(state)
		p.log.Warn("upstream circuit state changed", "state", circuitStateName(state), "reason", reason)
	})
	p.up = newUpstream(opts.Upstream, br, opts.Metrics, opts.Offline)
	p.up.onFailure = p.upstreamFailed
	p.fill = &filler{
		store:             store,
		up:                p.up,
		policies:          opts.Policies,
		m:                 opts.Metrics,
		log:               opts.Logger,
		now:               clock,
		maxUnverifiedSize: opts.MaxUnverifiedSize,
		shared:            newSharedTier(opts, localblob.New(store, p.objectEntry)),
		infoRoute:         p.router.route("info"),
		versionsRoute:     p.router.route("versions"),
		refreshing:        make(map[string]*refresh),
	}
	p.fill.startPendingUploads()
	p.fill.startProbing()
	p.app = p.newApp()
	return p, nil
}

// objectEntry is the localblob.EntryFunc of the local tier's view: the
// entry that a fill of the gem or quick spec at cache key key stores for
// a body of sums md5sum and sha read from the shared store (an answer
// with no header of its own, as readShared hands it over), and an error
// for any other key.
func (p *Proxy) objectEntry(key string, md5sum [16]byte, sha [32]byte) (cache.Entry, error) {
	rt, _, _ := p.router.Match(http.MethodGet, key, new([maxParams]string))
	ok := false
	if rt != nil {
		_, ok = objectKey(rt.Class, key)
	}
	if !ok {
		return cache.Entry{}, fmt.Errorf("proxy: %s is no gem or quick spec: the local tier holds no object there", key)
	}
	return p.fill.okEntry(fillRequest{rt: rt, key: key, fromShared: true}, http.Header{}, md5sum, sha), nil
}

// policy is the cache policy of class c (the zero Policy for routes
// that are not cached).
func (p *Proxy) policy(c Class) Policy { return p.opts.Policies[c] }

// App returns the Fiber app (for Listen, Test and Shutdown).
func (p *Proxy) App() *fiber.App { return p.app }

// Wait stops probing a shared store that could not be probed at start
// (its tier stays as it is), reading the shared /versions pointer (a
// later request for /versions starts again) and the uploads of pending
// keys (which stay pending, for the next start), and blocks until
// background work (refreshes, gem checksum lookups, writes to the shared
// store) has finished. Call it after the server stopped and before
// closing the store.
func (p *Proxy) Wait() {
	p.fill.stopProbing()
	p.fill.stopPendingUploads()
	p.fill.stopFollowingVersions()
	p.fill.background.Wait()
}

// Drain marks the proxy as draining: /readyz answers 503 from now on.
func (p *Proxy) Drain() { p.draining.Store(true) }
