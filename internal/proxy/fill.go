package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// filler answers cached routes from the cache and the upstream: it applies
// the freshness decision (decide) to what the cache holds and runs the fills
// that decision calls for. A fill fetches or revalidates the key upstream
// (compactfill.go for the compact index), verifies the body (gemverify.go)
// and stores it (store.go). Fills of one key are coalesced by
// cache.Store.Fill. The filler knows nothing of Fiber: handle gives it a
// fillRequest and serves the entry it returns.
type filler struct {
	// store holds the entries; its Fill coalesces the fills of one key.
	store *cache.Store
	// up is the upstream client; it also says whether gemproxy is offline.
	up *upstream
	// policies is Options.Policies, one row per class.
	policies map[Class]Policy
	// m receives the lookup, fill and refresh measurements.
	m *metrics.Metrics
	// log receives the fill's warnings and errors.
	log *slog.Logger
	// now is the clock (the Proxy's, replaceable in tests).
	now func() time.Time
	// maxUnverifiedSize is Options.MaxUnverifiedSize.
	maxUnverifiedSize int64
	// shared is the fleet's shared tier (sharedtier.go); nil without one.
	shared *sharedTier
	// infoRoute is the route of /info/NAME, which a gem fill reads for the
	// gem's checksum (see infoForChecksum).
	infoRoute *Route
	// versionsRoute is the route of /versions, which adoptVersions fills
	// from the shared store.
	versionsRoute *Route
	// catchUps limits the refreshes forced by clients ahead of this
	// replica (catchUp).
	catchUps catchUpLimiter

	refreshMu sync.Mutex
	// refreshing holds the refreshes of expired entries that are running,
	// by key: at most one per key, joined by every request for it.
	refreshing map[string]*refresh
	// background counts running refreshes, gem checksum lookups and
	// streamed fills.
	background sync.WaitGroup
	// live holds the entries of the bodies being streamed while they
	// download (livebody.go), by key, until they are stored or refused.
	live sync.Map
}

// fillRequest carries what a fill needs from the request that started it.
type fillRequest struct {
	rt        *Route
	key       string
	userAgent string
	// fromShared is set while a body read from the shared store is
	// stored: gemproxy_shared_store_bytes_total counts its bytes, the
	// upstream's counter does not.
	fromShared bool
}

// policy is the cache policy of class c.
func (f *filler) policy(c Class) Policy { return f.policies[c] }

// fresh reports whether e may be served without asking upstream now.
func (f *filler) fresh(e *cache.Entry) bool {
	return e.Fresh(f.now())
}

// lookup answers a cached route: what the cache holds for fr.key when it
// is fresh, else what decide says (see resolve).
func (f *filler) lookup(ctx context.Context, fr fillRequest) (*cache.Entry, metrics.Result, error) {
	return f.resolve(ctx, fr, f.store.Lookup(fr.key))
}

// resolve is lookup once the cache has been asked: e is what it returned
// for fr.key (nil when absent). A fresh entry is served; an expired one is
// revalidated synchronously within the class's RevalidateTimeout (or, with
// stale-while-revalidate configured, served at once and refreshed in the
// background); a miss is filled, coalesced, from the upstream.
func (f *filler) resolve(ctx context.Context, fr fillRequest, e *cache.Entry) (*cache.Entry, metrics.Result, error) {
	pol := f.policy(fr.rt.Class)
	switch decide(e, f.now(), pol, f.up.offline) {
	case serveFresh:
		return e, metrics.ResultHit, nil
	case serveOffline:
		if e != nil {
			return e, metrics.ResultStale, nil
		}
		return nil, metrics.ResultMiss, errOfflineMiss
	case serveStaleRefresh:
		f.startRefresh(fr)
		return e, metrics.ResultStale, nil
	case revalidate:
		return f.revalidateWithin(ctx, fr, e, pol)
	}
	f.m.CacheFillWaiters.Inc()
	// Only the leader's closure runs, so led tells the leader from followers.
	led := false
	got, _, err := f.store.Fill(ctx, fr.key, f.fresh,
		func(ctx context.Context) (*cache.Entry, error) {
			if e := f.joinLive(fr.key); e != nil {
				return e, nil
			}
			led = true
			return f.load(ctx, fr)
		})
	f.m.CacheFillWaiters.Dec()
	switch {
	case err != nil:
		return nil, metrics.ResultMiss, err
	case got.ID == 0 && !got.Streaming():
		return got, metrics.ResultBypass, nil
	case !led:
		return got, metrics.ResultCoalesced, nil
	}
	return got, metrics.ResultMiss, nil
}

// revalidateWithin refreshes the expired entry stale and waits for the
// answer until the policy's RevalidateTimeout, counted from the start of
// the refresh. When the upstream fails or is late, the stale copy is
// served if pol.MaxStale allows it, and a late refresh goes on in the
// background; otherwise the request waits for the refresh's outcome.
func (f *filler) revalidateWithin(ctx context.Context, fr fillRequest, stale *cache.Entry, pol Policy) (*cache.Entry, metrics.Result, error) {
	r := f.startRefresh(fr)
	f.m.CacheFillWaiters.Inc()
	defer f.m.CacheFillWaiters.Dec()
	deadline := time.NewTimer(pol.RevalidateTimeout - time.Since(r.started))
	defer deadline.Stop()
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, metrics.ResultMiss, ctx.Err()
	case <-deadline.C:
		if servableStale(stale, f.now(), pol) {
			f.log.Warn("upstream missed the revalidation deadline; serving stale entry", "endpoint", fr.rt.Endpoint,
				"key", fr.key, "deadline", pol.RevalidateTimeout)
			return stale, metrics.ResultStale, nil
		}
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, metrics.ResultMiss, ctx.Err()
		}
	}
	switch {
	case r.err == nil && r.entry.ID == 0:
		return r.entry, metrics.ResultBypass, nil
	case r.err == nil:
		return r.entry, metrics.ResultRevalidated, nil
	case servableStale(stale, f.now(), pol):
		f.log.Warn("upstream failed; serving stale entry", "endpoint", fr.rt.Endpoint, "key", fr.key, "error", r.err)
		return stale, metrics.ResultStale, nil
	}
	return nil, metrics.ResultMiss, r.err
}

// refresh is one running refresh of an expired entry: a coalesced fill on
// a context detached from every client, so that it completes (and is
// stored) even when the requests that started it stopped waiting.
type refresh struct {
	// started is when the refresh began; deadlines count from it.
	started time.Time
	// done is closed once entry and err are set.
	done chan struct{}
	// entry is the refreshed entry when err is nil.
	entry *cache.Entry
	// err is why the refresh failed.
	err error
}

// startRefresh returns the running refresh of fr.key, starting one when
// none runs. Proxy.Wait waits for it.
func (f *filler) startRefresh(fr fillRequest) *refresh {
	return f.startRefreshUnless(fr, f.fresh)
}

// startRefreshUnless is startRefresh for a refresh that is skipped when
// the entry the cache holds by then is done (fresh, for startRefresh).
func (f *filler) startRefreshUnless(fr fillRequest, done func(*cache.Entry) bool) *refresh {
	f.refreshMu.Lock()
	defer f.refreshMu.Unlock()
	if r := f.refreshing[fr.key]; r != nil {
		return r
	}
	r := &refresh{started: time.Now(), done: make(chan struct{})}
	f.refreshing[fr.key] = r
	f.background.Add(1)
	go func() {
		defer f.background.Done()
		r.entry, _, r.err = f.store.Fill(context.Background(), fr.key, done,
			func(ctx context.Context) (*cache.Entry, error) { return f.load(ctx, fr) })
		if r.err != nil {
			f.log.Warn("refresh failed", "endpoint", fr.rt.Endpoint, "key", fr.key, "error", r.err)
		}
		f.refreshMu.Lock()
		delete(f.refreshing, fr.key)
		f.refreshMu.Unlock()
		close(r.done)
	}()
	return r
}

// load fetches or revalidates fr.key upstream and stores the result. It runs
// once per key at a time, on a context detached from the clients, in a
// goroutine of its own beyond the reach of the HTTP server's recovery: a
// panic is turned into an error here.
func (f *filler) load(ctx context.Context, fr fillRequest) (e *cache.Entry, err error) {
	defer f.recoverFill(fr, &err)
	old := f.store.Peek(fr.key)
	if fr.rt.Class == ClassVersions {
		defer func() { f.versionsLoaded(old, e, err) }()
	}
	if old != nil && old.Status == http.StatusOK && !old.Immutable {
		if fr.rt.Class == ClassVersions || fr.rt.Class == ClassInfo {
			return f.refreshCompactIndex(ctx, fr, old)
		}
		return f.revalidate(ctx, fr, old)
	}
	return f.fetch(ctx, fr)
}

// recoverFill turns a panic of a fill of fr, deferred in a goroutine of
// its own, into an error in *err, logged with its stack.
func (f *filler) recoverFill(fr fillRequest, err *error) {
	if r := recover(); r != nil {
		f.log.Error("panic in fill", "key", fr.key, "panic", r, "stack", string(debug.Stack()))
		*err = fmt.Errorf("proxy: internal error filling %s", fr.key)
	}
}

// get sends a GET of fr.key upstream with the client's agent, the headers
// h (validators, a range) and the class's timeouts. A transport failure is
// an upstreamError saying what failed (what: "request", "revalidation" …).
// The caller closes the body.
func (f *filler) get(ctx context.Context, fr fillRequest, what string, h http.Header) (*http.Response, error) {
	path, query, _ := strings.Cut(fr.key, "?")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.up.url(path, query), nil)
	if err != nil {
		return nil, fmt.Errorf("proxy: build upstream request: %w", err)
	}
	maps.Copy(req.Header, h)
	req.Header.Set("User-Agent", f.up.userAgent(fr.userAgent))
	resp, err := f.up.send(ctx, fr.rt.Endpoint, req, true, f.policy(fr.rt.Class).timeouts())
	if err != nil {
		return nil, errUpstream(what, err)
	}
	return resp, nil
}

// fetch gets key, from the shared store when it holds the key's class
// (sharedtier.go), else upstream, and stores what may be stored. A gem's
// checksum is looked up in /info/NAME meanwhile (for a body from the
// shared store, only when the object has none recorded with it or this
// replica holds that /info). A large immutable body is
// streamed to the clients as it arrives (streamLive): its fill outlives
// this call, so it runs on a context that keeps ctx's deadline but not its
// cancellation.
func (f *filler) fetch(ctx context.Context, fr fillRequest) (*cache.Entry, error) {
	ctx, cancel := outliving(ctx)
	lookup := f.checksumOnDemand(ctx, fr)
	if key, ok := f.shared.sharedKey(fr); ok {
		return f.fetchShared(ctx, cancel, fr, key, lookup)
	}
	return f.fetchUpstream(ctx, cancel, fr, lookup(), nil)
}

// fetchUpstream gets key upstream without validators and stores what may
// be stored; want yields a gem's checksum and cancel ends ctx once the
// body is done with. stored, when set, is told the outcome once the body
// is stored or refused: for a streamed body, after fetchUpstream returned.
func (f *filler) fetchUpstream(ctx context.Context, cancel context.CancelFunc, fr fillRequest, want checksumFuture,
	stored func(*cache.Entry, error)) (*cache.Entry, error) {
	resp, err := f.get(ctx, fr, "request", nil)
	if err != nil {
		cancel()
		tell(stored, nil, err)
		return nil, err
	}
	if f.streamsLive(fr, resp) {
		return f.streamLive(fr, resp, want, cancel, stored)
	}
	defer cancel()
	defer resp.Body.Close()
	e, err := f.storeResponse(fr, resp, want)
	tell(stored, e, err)
	return e, err
}

// tell reports a fill's outcome to stored, when set.
func tell(stored func(*cache.Entry, error), e *cache.Entry, err error) {
	if stored != nil {
		stored(e, err)
	}
}

// revalidate asks upstream whether a stale entry changed, with its stored
// ETag and Last-Modified; a 304 renews it without moving the body.
func (f *filler) revalidate(ctx context.Context, fr fillRequest, old *cache.Entry) (*cache.Entry, error) {
	validators := http.Header{}
	if v := old.HeaderValue("Etag"); v != "" {
		validators.Set("If-None-Match", v)
	}
	if v := old.HeaderValue("Last-Modified"); v != "" {
		validators.Set("If-Modified-Since", v)
	}
	resp, err := f.get(ctx, fr, "revalidation", validators)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return f.renew(fr, old)
	}
	return f.storeResponse(fr, resp, nil)
}

// renew extends the freshness of old after the upstream confirmed it.
func (f *filler) renew(fr fillRequest, old *cache.Entry) (*cache.Entry, error) {
	now := f.now()
	next := *old
	next.StoredAt = now
	next.FreshUntil = now.Add(f.policy(fr.rt.Class).TTL)
	return f.store.Renew(old, next)
}
