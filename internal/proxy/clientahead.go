package proxy

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2/utils"
	"github.com/valyala/fasthttp"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// catchUpInterval is the least time between two forced refreshes of one
// key, so that requests cannot be turned into upstream traffic.
const catchUpInterval = time.Second

// maxCatchUpsPerInterval bounds the forced refreshes of all keys together
// in one catchUpInterval: a client sending unknown ETags for every /info
// name costs the upstream no more than this, and the limiter's memory
// stays as small.
const maxCatchUpsPerInterval = 64

// clientAhead reports whether a request for the fresh compact-index file
// e (/versions or /info/NAME) shows a client that may hold a newer file
// than e, as one served by a fresher replica does: a Range starting at or
// past e's end, or an If-None-Match that is not e's ETag. A Range ending
// the client's file (Bundler asks from its last byte) before e's last
// byte shows a client behind, whatever its ETag.
func clientAhead(req *fasthttp.Request, rt *Route, e *cache.Entry) bool {
	if rt.Class != ClassVersions && rt.Class != ClassInfo || e.Status != http.StatusOK {
		return false
	}
	if rng := req.Header.Peek("Range"); len(rng) > 0 {
		start, _, ok := parseRange(utils.UnsafeString(rng), e.Size)
		switch {
		case !ok:
			return start == e.Size && e.Size > 0 // past the end; a malformed Range gives 0
		case start < e.Size-1:
			return false
		}
	}
	inm := req.Header.Peek("If-None-Match")
	return len(inm) > 0 && !etagMatches(utils.UnsafeString(inm), e)
}

// catchUpLimiter allows one refresh per key and catchUpInterval for a
// client ahead of this replica, and maxCatchUpsPerInterval of them in all
// per interval.
type catchUpLimiter struct {
	mu sync.Mutex
	// windowStart is when the current interval began; last holds the keys
	// refreshed in it, at most maxCatchUpsPerInterval.
	windowStart time.Time
	last        map[string]struct{}
}

// allow reports whether key may be refreshed now, and if so notes it.
func (l *catchUpLimiter) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil || now.Sub(l.windowStart) >= catchUpInterval {
		l.windowStart = now
		l.last = make(map[string]struct{}, maxCatchUpsPerInterval)
	}
	if _, done := l.last[key]; done || len(l.last) >= maxCatchUpsPerInterval {
		return false
	}
	l.last[key] = struct{}{}
	return true
}

// catchUp brings the fresh entry e up to a client that is ahead of it
// (ahead tells whether it still is), before the client is answered and
// within the class's RevalidateTimeout: from the fleet's /versions pointer
// first, when there is one (within half of that time, so that a stalled
// store leaves time for the upstream), then from the upstream when that
// did not bring the replica level with the client. At most one catch-up
// per key and catchUpInterval; e is served when none is allowed or the
// upstream fails or is late (the refresh then goes on in the background).
func (f *filler) catchUp(ctx context.Context, fr fillRequest, e *cache.Entry, ahead func(*cache.Entry) bool) (*cache.Entry, metrics.Result) {
	if !f.catchUps.allow(fr.key, time.Now()) {
		return e, metrics.ResultHit
	}
	timeout := f.policy(fr.rt.Class).RevalidateTimeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if next := f.adoptVersionsWithin(ctx, fr, timeout/2); next != nil {
		if !ahead(next) {
			return next, metrics.ResultRevalidated
		}
		e = next
	}
	r := f.startRefreshUnless(fr, func(cur *cache.Entry) bool { return cur.Size != e.Size || cur.SHA256 != e.SHA256 })
	select {
	case <-r.done:
	case <-ctx.Done():
		return e, metrics.ResultHit
	}
	if r.err != nil || r.entry.ID == 0 {
		return e, metrics.ResultHit
	}
	return r.entry, metrics.ResultRevalidated
}

// adoptVersionsWithin adopts the pointer's generation for a catch-up of
// fr within timeout, when fr is /versions and the fleet has a pointer. It
// returns the adopted entry, nil when nothing was adopted.
func (f *filler) adoptVersionsWithin(ctx context.Context, fr fillRequest, timeout time.Duration) *cache.Entry {
	if fr.rt.Class != ClassVersions || f.shared.versionsShared() == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return f.adoptVersions(ctx)
}
