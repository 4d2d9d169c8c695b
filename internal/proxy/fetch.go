package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// errNotCached is Fetch's error for a path the proxy never caches.
var errNotCached = errors.New("not a path gemproxy caches (only anonymous GETs of cached routes, without a query)")

// errNotStored is Fetch's error for an answer served but not stored.
var errNotStored = errors.New("the upstream's answer may not be stored (a gem whose checksum the compact index does not list, or an answer marked private or no-store)")

// Fetch warms the cache with path: it runs the read path of an anonymous
// GET of path with no client attached, so that what the cache holds fresh
// is kept and anything else is filled from the upstream (coalesced with
// the clients' fills, verified and stored exactly as for them). It returns
// the 200 entry the cache then holds for path, and whether it was there
// already, fresh (nothing was asked upstream). gemproxy prefetch uses it
// to fill a data directory without a server.
//
// An error means the cache holds no 200 for path: path is not one the
// proxy caches (a write, an authenticated or uncacheable API read, a
// query), the upstream failed or answered something else (a 404, cached
// as negative as usual), or its answer may not be stored. The message does
// not repeat path.
func (p *Proxy) Fetch(ctx context.Context, path string) (e *cache.Entry, hit bool, err error) {
	path, _, rawQuery, err := splitRequestURI(path)
	if err != nil {
		return nil, false, err
	}
	rt, params, err := p.router.Match(http.MethodGet, path, new([maxParams]string))
	switch {
	case err != nil:
		return nil, false, err
	case rt == nil || rt.Handling != Cached || rawQuery != "":
		return nil, false, errNotCached
	}
	key := path
	if rt.Key != nil {
		key = rt.Key(params)
	}
	e, outcome, err := p.fill.lookup(ctx, fillRequest{rt: rt, key: key})
	switch {
	case err != nil:
		return nil, false, err
	case e.Status != http.StatusOK:
		return nil, false, fmt.Errorf("upstream answered %d %s%s", e.Status, http.StatusText(e.Status), reasonSuffix(p.reasonBody(e)))
	case e.ID == 0:
		stored, err := p.awaitStored(e, key)
		if err != nil {
			return nil, false, err
		}
		if stored == nil {
			return nil, false, errNotStored
		}
		return stored, false, nil
	}
	return e, outcome == metrics.ResultHit, nil
}

// awaitStored waits, when the unstored entry e is a body still streaming
// from the upstream (streamLive), until its fill is verified and stored or
// refused, then returns the 200 the cache holds for key, or nil.
func (p *Proxy) awaitStored(e *cache.Entry, key string) (*cache.Entry, error) {
	if err := e.AwaitStreamed(); err != nil {
		return nil, fmt.Errorf("upstream body refused: %w", err)
	}
	if stored := p.store.Peek(key); stored != nil && stored.Status == http.StatusOK && stored.ID != 0 {
		return stored, nil
	}
	return nil, nil
}

// maxReasonLen bounds the part of an error body Fetch quotes.
const maxReasonLen = 200

// reasonBody returns the start of the body of an error entry, from memory
// or from the cache file; nil when it cannot be read.
func (p *Proxy) reasonBody(e *cache.Entry) []byte {
	if e.Body != nil || e.Size == 0 {
		return e.Body
	}
	r, err := p.store.Open(e, false)
	if err != nil {
		return nil
	}
	defer r.Close()
	b, _ := io.ReadAll(io.LimitReader(r, maxReasonLen))
	return b
}

// reasonSuffix is ": " and the first line of an error body, or "" when the
// body has no text.
func reasonSuffix(body []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(body), []byte("\n"))
	if len(line) > maxReasonLen {
		line = line[:maxReasonLen]
	}
	if len(line) == 0 {
		return ""
	}
	return ": " + string(line)
}
