package proxy

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gemproxy/gemproxy/internal/breaker"
	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/compactindex"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// xCache maps a lookup result to the X-Cache header value.
func xCache(r metrics.Result) string {
	switch r {
	case metrics.ResultHit:
		return "HIT"
	case metrics.ResultRevalidated:
		return "REVALIDATED"
	case metrics.ResultStale:
		return "STALE"
	default:
		return "MISS"
	}
}

// upstreamError is a failure to get a usable answer from upstream; status is
// what the client gets when no stale copy exists.
type upstreamError struct {
	status int
	// reason is what the client is told: it must name no internal address
	// (upstream host, IP:port) or file path.
	reason string
	// err is the cause, logged but never sent to the client.
	err error
	// retryAfter is the upstream's Retry-After, passed on with a 429.
	retryAfter string
	// body and contentType, when body is set, are the upstream's own answer
	// (a 429's "Retry later"), sent verbatim instead of reason.
	body        []byte
	contentType string
}

// Error describes the failure.
func (e *upstreamError) Error() string {
	if e.err != nil {
		return e.reason + ": " + e.err.Error()
	}
	return e.reason
}

// Unwrap returns the cause.
func (e *upstreamError) Unwrap() error { return e.err }

// errUpstream wraps a transport error: 504 on timeouts, 502 otherwise. Its
// reason says which timeout ran out, or that the circuit is open; the
// error itself, which may name the upstream's address, is kept for the log.
func errUpstream(what string, err error) error {
	if errors.Is(err, errOfflineWrite) {
		return errOfflineWrite
	}
	status, reason := http.StatusBadGateway, "upstream "+what+" failed"
	var te *timeoutError
	switch {
	case errors.Is(err, breaker.ErrOpen):
		reason = "upstream " + breaker.ErrOpen.Error()
	case errors.As(err, &te):
		status, reason = http.StatusGatewayTimeout, te.Error()
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		status, reason = http.StatusGatewayTimeout, "upstream "+what+" timed out"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the method and URL say nothing the log does not
	}
	return &upstreamError{status: status, reason: reason, err: err}
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// maxTransientBody bounds a non-2xx body (an error, a 404, a 429) held in
// memory; 2xx bodies are staged and bounded by the class's size limit.
const maxTransientBody = 1 << 20

// fillRequest carries what a fill needs from the request that started it.
type fillRequest struct {
	rt        *Route
	key       string
	userAgent string
}

// lookup answers a cached route: what the cache holds for fr.key when it
// is fresh, else what decide says (see resolve).
func (p *Proxy) lookup(ctx context.Context, fr fillRequest) (*cache.Entry, metrics.Result, error) {
	return p.resolve(ctx, fr, p.store.Lookup(fr.key))
}

// resolve is lookup once the cache has been asked: e is what it returned
// for fr.key (nil when absent). A fresh entry is served; an expired one is
// revalidated synchronously within the class's RevalidateTimeout (or, with
// stale-while-revalidate configured, served at once and refreshed in the
// background); a miss is filled, coalesced, from the upstream.
func (p *Proxy) resolve(ctx context.Context, fr fillRequest, e *cache.Entry) (*cache.Entry, metrics.Result, error) {
	pol := p.policy(fr.rt.Class)
	switch decide(e, p.now(), pol, p.opts.Offline) {
	case serveFresh:
		return e, metrics.ResultHit, nil
	case serveOffline:
		if e != nil {
			return e, metrics.ResultStale, nil
		}
		return nil, metrics.ResultMiss, errOfflineMiss
	case serveStaleRefresh:
		p.startRefresh(fr)
		return e, metrics.ResultStale, nil
	case revalidate:
		return p.revalidateWithin(ctx, fr, e, pol)
	}
	p.m.CacheFillWaiters.Inc()
	// Only the leader's closure runs, so led tells the leader from followers.
	led := false
	got, _, err := p.store.Fill(ctx, fr.key, p.fresh,
		func(ctx context.Context) (*cache.Entry, error) {
			led = true
			return p.safeLoad(ctx, fr)
		})
	p.m.CacheFillWaiters.Dec()
	switch {
	case err != nil:
		return nil, metrics.ResultMiss, err
	case got.ID == 0:
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
func (p *Proxy) revalidateWithin(ctx context.Context, fr fillRequest, stale *cache.Entry, pol Policy) (*cache.Entry, metrics.Result, error) {
	r := p.startRefresh(fr)
	p.m.CacheFillWaiters.Inc()
	defer p.m.CacheFillWaiters.Dec()
	deadline := time.NewTimer(pol.RevalidateTimeout - time.Since(r.started))
	defer deadline.Stop()
	select {
	case <-r.done:
	case <-ctx.Done():
		return nil, metrics.ResultMiss, ctx.Err()
	case <-deadline.C:
		if servableStale(stale, p.now(), pol) {
			p.log.Warn("upstream missed the revalidation deadline; serving stale entry", "endpoint", fr.rt.Endpoint,
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
	case servableStale(stale, p.now(), pol):
		p.log.Warn("upstream failed; serving stale entry", "endpoint", fr.rt.Endpoint, "key", fr.key, "error", r.err)
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
func (p *Proxy) startRefresh(fr fillRequest) *refresh {
	p.refreshMu.Lock()
	defer p.refreshMu.Unlock()
	if r := p.refreshing[fr.key]; r != nil {
		return r
	}
	r := &refresh{started: time.Now(), done: make(chan struct{})}
	p.refreshing[fr.key] = r
	p.background.Add(1)
	go func() {
		defer p.background.Done()
		r.entry, _, r.err = p.store.Fill(context.Background(), fr.key, p.fresh,
			func(ctx context.Context) (*cache.Entry, error) { return p.safeLoad(ctx, fr) })
		if r.err != nil {
			p.log.Warn("refresh failed", "endpoint", fr.rt.Endpoint, "key", fr.key, "error", r.err)
		}
		p.refreshMu.Lock()
		delete(p.refreshing, fr.key)
		p.refreshMu.Unlock()
		close(r.done)
	}()
	return r
}

// errOfflineMiss answers a miss in offline mode.
var errOfflineMiss = &upstreamError{status: http.StatusGatewayTimeout, reason: "gemproxy is in offline mode and this is not in its cache"}

// errOfflineWrite answers a write in offline mode.
var errOfflineWrite = &upstreamError{status: http.StatusServiceUnavailable, reason: "gemproxy is in offline mode: writes cannot reach the upstream"}

// fresh reports whether e may be served without asking upstream now.
func (p *Proxy) fresh(e *cache.Entry) bool {
	return e.Fresh(p.now())
}

// safeLoad runs load, turning a panic into an error: fills run in their own
// goroutine, beyond the reach of the HTTP server's recovery.
func (p *Proxy) safeLoad(ctx context.Context, fr fillRequest) (e *cache.Entry, err error) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("panic in fill", "key", fr.key, "panic", r, "stack", string(debug.Stack()))
			e, err = nil, fmt.Errorf("proxy: internal error filling %s", fr.key)
		}
	}()
	return p.load(ctx, fr)
}

// load fetches or revalidates fr.key upstream and stores the result. It runs
// once per key at a time, on a context detached from the clients.
func (p *Proxy) load(ctx context.Context, fr fillRequest) (*cache.Entry, error) {
	old := p.store.Peek(fr.key)
	if old != nil && old.Status == http.StatusOK && !old.Immutable {
		if fr.rt.Class == ClassVersions || fr.rt.Class == ClassInfo {
			return p.refreshCompactIndex(ctx, fr, old)
		}
		return p.revalidate(ctx, fr, old)
	}
	return p.fetch(ctx, fr)
}

// newUpstreamRequest builds a GET of key upstream with the client's agent.
func (p *Proxy) newUpstreamRequest(ctx context.Context, fr fillRequest) (*http.Request, error) {
	path, query, _ := strings.Cut(fr.key, "?")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.up.url(path, query), nil)
	if err != nil {
		return nil, fmt.Errorf("proxy: build upstream request: %w", err)
	}
	req.Header.Set("User-Agent", p.up.userAgent(fr.userAgent))
	return req, nil
}

// send performs req upstream for route rt, with its class's timeouts, and
// records metrics for its endpoint. fill tells a cache fill from a client's
// pass-through or write (see upstream.do).
func (p *Proxy) send(ctx context.Context, rt *Route, req *http.Request, fill bool) (*http.Response, error) {
	if p.opts.Offline {
		return nil, errOfflineWrite
	}
	start := time.Now()
	p.m.UpstreamInFlight.Inc()
	resp, err := p.up.do(ctx, req, fill, p.policy(rt.Class).timeouts())
	p.m.ObserveUpstream(rt.Endpoint, respCode(resp, err), time.Since(start))
	if err != nil {
		p.m.UpstreamInFlight.Dec()
		return nil, err
	}
	// In flight until its body is done, so a stalled body shows.
	resp.Body = &closeHook{ReadCloser: resp.Body, hook: p.m.UpstreamInFlight.Dec}
	return resp, nil
}

// closeHook runs hook once, after the body is closed.
type closeHook struct {
	io.ReadCloser
	hook func()
	once sync.Once
}

// Close closes the body, then runs the hook the first time.
func (c *closeHook) Close() error {
	err := c.ReadCloser.Close()
	c.once.Do(c.hook)
	return err
}

// respCode is the status code of resp, or 0 for a transport error.
func respCode(resp *http.Response, err error) int {
	if err != nil || resp == nil {
		return 0
	}
	return resp.StatusCode
}

// fetch gets key upstream without validators and stores what may be stored.
func (p *Proxy) fetch(ctx context.Context, fr fillRequest) (*cache.Entry, error) {
	var want checksumFuture
	if fr.rt.Class == ClassGem {
		want = p.checksumLookup(ctx, fr)
	}
	req, err := p.newUpstreamRequest(ctx, fr)
	if err != nil {
		return nil, err
	}
	resp, err := p.send(ctx, fr.rt, req, true)
	if err != nil {
		return nil, errUpstream("request", err)
	}
	defer resp.Body.Close()
	return p.storeResponse(fr, resp, want)
}

// checksumFuture yields the SHA-256 a gem must have (known false when the
// compact index does not list it), waiting for a lookup started earlier.
type checksumFuture func() (sum [32]byte, known bool, err error)

// checksumLookup starts looking up the gem's checksum in /info/NAME while
// the gem itself downloads, so the two upstream round trips overlap.
func (p *Proxy) checksumLookup(ctx context.Context, fr fillRequest) checksumFuture {
	type result struct {
		sum   [32]byte
		known bool
		err   error
	}
	ch := make(chan result, 1)
	p.background.Add(1) // it may outlive the fill (a 404 gem): Wait covers it
	go func() {
		defer p.background.Done()
		sum, known, err := p.gemChecksum(ctx, fr)
		ch <- result{sum, known, err}
	}()
	return func() ([32]byte, bool, error) {
		r := <-ch
		return r.sum, r.known, r.err
	}
}

// storeResponse turns an upstream response into an entry: stored when it
// may be, transient otherwise. A 2xx body is verified before any byte of
// it is served, stored or not. want, for a gem, yields the SHA-256 it must
// have.
func (p *Proxy) storeResponse(fr fillRequest, resp *http.Response, want checksumFuture) (*cache.Entry, error) {
	if err := decodeContentEncoding(resp); err != nil {
		return nil, err
	}
	status := resp.StatusCode
	if status == http.StatusForbidden && (fr.rt.Class == ClassGem || fr.rt.Class == ClassQuickSpec) {
		// S3 answers 403 with an XML body for objects that do not exist.
		return p.storeNotFound(fr, resp.Header, []byte(fileNotFound))
	}
	switch {
	case status == http.StatusNotFound:
		body, err := readLimited(resp.Body, maxTransientBody)
		if err != nil {
			return nil, errUpstream("read", err)
		}
		return p.storeNotFound(fr, resp.Header, body)
	case status == http.StatusTooManyRequests:
		// Passed on as the origin sent it (docs/protocol.md §8); a stale copy,
		// when there is one, is served instead.
		body, _ := readLimited(resp.Body, maxTransientBody)
		return nil, &upstreamError{status: status, reason: "upstream rate limit (429)", retryAfter: resp.Header.Get("Retry-After"),
			body: body, contentType: resp.Header.Get("Content-Type")}
	case status >= 500:
		return nil, &upstreamError{status: http.StatusBadGateway, reason: "upstream answered " + resp.Status}
	case status == http.StatusPartialContent:
		// Only refreshCompactIndex asks for a range, and it handles the 206.
		return nil, &upstreamError{status: http.StatusBadGateway, reason: "upstream answered 206 Partial Content to a request without Range"}
	case status < 200 || status > 299:
		return p.transient(fr, resp, status)
	}
	st, err := p.stageBody(fr, resp)
	if err != nil {
		return nil, err
	}
	verified, err := p.verifyStaged(fr, resp.Header, st, want)
	switch {
	case err != nil:
		st.Discard()
		return nil, err
	case !verified:
		return p.unverifiedGem(fr, resp, st)
	case status != http.StatusOK || !storable(resp.Header):
		// 201 and 203 included: verified and served, but only a 200 is
		// stored.
		return p.unstored(fr, resp, st), nil
	}
	return p.commitResponse(fr, resp.Header, st)
}

// stageBody stages the body of a 2xx upstream answer, refusing it as soon
// as it grows past the class's size limit (counted after any decoding),
// and when it differs from its announced length.
func (p *Proxy) stageBody(fr fillRequest, resp *http.Response) (*cache.Staging, error) {
	limit := p.policy(fr.rt.Class).MaxResponseSize
	if resp.ContentLength > limit {
		return nil, p.errTooLarge(fr, limit)
	}
	st := p.store.Stage()
	n, err := io.Copy(st, io.LimitReader(resp.Body, limit+1))
	p.m.UpstreamBytes(fr.rt.Endpoint).Add(float64(n))
	switch {
	case err != nil:
		st.Discard()
		return nil, errUpstream("body read", err)
	case n > limit:
		st.Discard()
		return nil, p.errTooLarge(fr, limit)
	case resp.ContentLength >= 0 && n != resp.ContentLength:
		st.Discard()
		return nil, &upstreamError{status: http.StatusBadGateway, reason: fmt.Sprintf("upstream sent %d bytes, announced %d", n, resp.ContentLength)}
	}
	return st, nil
}

// errTooLarge logs and describes an upstream body over the size limit of
// its class.
func (p *Proxy) errTooLarge(fr fillRequest, limit int64) error {
	p.log.Warn("upstream answer over the size limit of its class; refused", "key", fr.key, "class", fr.rt.Class, "limit", limit)
	return &upstreamError{status: http.StatusBadGateway, reason: fmt.Sprintf(
		"upstream answer for %s is larger than the %d-byte limit of class %s", fr.key, limit, fr.rt.Class)}
}

// verifyStaged checks a staged 2xx body before any byte of it is served:
// verifyBody's checks, and a gem's SHA-256 against the compact index.
// verified is false, without an error, for a gem whose checksum is unknown.
func (p *Proxy) verifyStaged(fr fillRequest, h http.Header, st *cache.Staging, want checksumFuture) (verified bool, err error) {
	if err := verifyBody(fr.rt, h, st); err != nil {
		p.m.ChecksumFailure(metrics.ChecksumMismatch).Inc()
		return false, &upstreamError{status: http.StatusBadGateway, reason: "upstream body of " + fr.key + " is corrupt", err: err}
	}
	if fr.rt.Class != ClassGem {
		return true, nil
	}
	var wantSum [32]byte
	known := false
	if want != nil {
		if wantSum, known, err = want(); err != nil {
			return false, err
		}
	}
	if !known {
		return false, nil
	}
	if sha := st.SHA256(); sha != wantSum {
		p.m.ChecksumFailure(metrics.ChecksumMismatch).Inc()
		return false, &upstreamError{status: http.StatusBadGateway, reason: fmt.Sprintf(
			"upstream gem %s has SHA-256 %s, but the compact index says %s; not stored",
			fr.key, hex.EncodeToString(sha[:]), hex.EncodeToString(wantSum[:]))}
	}
	return true, nil
}

// commitResponse stores a verified 200 that may be stored.
func (p *Proxy) commitResponse(fr fillRequest, h http.Header, st *cache.Staging) (*cache.Entry, error) {
	now := p.now()
	e := cache.Entry{
		Key:       fr.key,
		Class:     string(fr.rt.Class),
		Status:    http.StatusOK,
		StoredAt:  now,
		Immutable: fr.rt.Immutable,
		Header:    entryHeaders(fr.rt, http.StatusOK, h, st.MD5(), st.SHA256(), p.policy(fr.rt.Class).TTL, now),
	}
	if !e.Immutable {
		e.FreshUntil = now.Add(p.policy(fr.rt.Class).TTL)
	}
	stored, err := p.store.Commit(st, e, cache.CommitOptions{Gzip: fr.rt.CompactIndex, Appendable: fr.rt.CompactIndex})
	if err != nil {
		return nil, err
	}
	if fr.rt.Class == ClassVersions {
		p.invalidateStaleInfos(stored, 0)
	}
	return stored, nil
}

// fileNotFound is the answer for a missing S3 object (gem, quick gemspec):
// S3's own XML error document, sent with a 403 or a 404, is not passed on.
const fileNotFound = "This file could not be found\n"

// decodeContentEncoding replaces resp's body by its identity body, so that
// nothing encoded is stored or served as identity. Go's Transport decodes
// a plain "gzip" only when it asked for gzip itself; this undoes what is
// left, last coding first: gzip and x-gzip are decoded (their CRC-32 and
// length are checked at the end of the stream, and the decoded body goes
// through the same checks as any other), identity is a no-op, and any
// other coding is refused with a 502.
func decodeContentEncoding(resp *http.Response) error {
	codings := resp.Header.Values("Content-Encoding")
	if len(codings) == 0 {
		return nil
	}
	list := strings.Split(strings.Join(codings, ","), ",")
	body := io.Reader(resp.Body)
	for i := len(list) - 1; i >= 0; i-- {
		switch coding := strings.ToLower(strings.TrimSpace(list[i])); coding {
		case "", "identity":
		case "gzip", "x-gzip":
			zr, err := gzip.NewReader(body)
			if err != nil {
				return &upstreamError{status: http.StatusBadGateway, reason: "upstream body is not the " + coding + " stream its Content-Encoding announces", err: err}
			}
			body = zr
		default:
			return &upstreamError{status: http.StatusBadGateway, reason: fmt.Sprintf("upstream sent Content-Encoding %q, which gemproxy does not decode", coding)}
		}
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{body, resp.Body}
	resp.Header.Del("Content-Encoding")
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
	resp.Uncompressed = true
	return nil
}

// storeNotFound stores (or, with negative caching off, returns) a 404 with
// the upstream's body and Content-Type, text/plain when it sent none. An
// XML error (S3's, by its Content-Type or its body) becomes the plain-text
// fileNotFound, so a body and its label always agree.
func (p *Proxy) storeNotFound(fr fillRequest, h http.Header, body []byte) (*cache.Entry, error) {
	now := p.now()
	ttl := p.policy(fr.rt.Class).NegativeTTL
	ct := cmp.Or(h.Get("Content-Type"), contentTypeTextPlain)
	if isXMLError(ct, body) {
		ct, body = contentTypeTextPlain, []byte(fileNotFound)
	}
	hdr := http.Header{"Content-Type": {ct}}
	e := cache.Entry{
		Key: fr.key, Class: string(fr.rt.Class), Status: http.StatusNotFound, StoredAt: now,
		FreshUntil: now.Add(ttl),
		Header:     entryHeaders(fr.rt, http.StatusNotFound, hdr, [16]byte{}, [32]byte{}, ttl, now),
	}
	if ttl == 0 {
		e.Body = body
		return &e, nil
	}
	st := p.store.Stage()
	_, _ = st.Write(body)
	return p.store.Commit(st, e, cache.CommitOptions{})
}

// isXMLError reports whether an error answer is XML, by its Content-Type
// or by its body (an XML declaration or S3's <Error> element).
func isXMLError(contentType string, body []byte) bool {
	body = bytes.TrimSpace(body)
	return strings.Contains(strings.ToLower(contentType), "xml") ||
		bytes.HasPrefix(body, []byte("<?xml")) || bytes.HasPrefix(body, []byte("<Error>"))
}

// transient reads a non-2xx response (an error, a redirect not followed)
// into a one-off entry.
func (p *Proxy) transient(fr fillRequest, resp *http.Response, status int) (*cache.Entry, error) {
	body, err := readLimited(resp.Body, maxTransientBody)
	if err != nil {
		return nil, errUpstream("read", err)
	}
	return &cache.Entry{Key: fr.key, Status: status, Header: transientHeaders(resp.Header), Body: body, Size: int64(len(body)), StoredAt: p.now()}, nil
}

// transientHeaders picks the upstream headers passed on with an answer
// that is not stored: its own caching headers (private, no-store) among
// them.
func transientHeaders(h http.Header) []cache.Field {
	fields := make([]cache.Field, 0, 8)
	for _, name := range append([]string{"Retry-After", "Www-Authenticate", "Location", "Vary"}, storedUpstreamHeaders...) {
		if v := strings.Join(h.Values(name), ", "); v != "" {
			fields = append(fields, cache.Field{Name: name, Value: v})
		}
	}
	return fields
}

// unverifiedGem serves a staged gem whose checksum the compact index does
// not know, from its staging file and without storing it, as long as it
// is no larger than MaxUnverifiedSize.
func (p *Proxy) unverifiedGem(fr fillRequest, resp *http.Response, st *cache.Staging) (*cache.Entry, error) {
	p.m.ChecksumFailure(metrics.ChecksumUnknown).Inc()
	p.log.Warn("gem checksum unknown; serving without storing", "key", fr.key)
	if st.Size() > p.opts.MaxUnverifiedSize {
		st.Discard()
		return nil, &upstreamError{status: http.StatusBadGateway, reason: "gem checksum unknown and too large to serve unverified"}
	}
	return p.unstored(fr, resp, st), nil
}

// unstored turns a staged 2xx answer that is not stored into an entry for
// the clients of this fill only, its body in memory when small and in its
// staging file otherwise. A 200 that may be stored gets the headers it
// would have had stored; anything else passes on the upstream's.
func (p *Proxy) unstored(fr fillRequest, resp *http.Response, st *cache.Staging) *cache.Entry {
	now := p.now()
	e := cache.Entry{Key: fr.key, Status: resp.StatusCode, StoredAt: now, Header: transientHeaders(resp.Header)}
	if resp.StatusCode == http.StatusOK && storable(resp.Header) {
		e.Header = entryHeaders(fr.rt, http.StatusOK, resp.Header, st.MD5(), st.SHA256(), 0, now)
	}
	return p.store.Transient(st, e)
}

// readLimited reads at most limit bytes of r; more is an error.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("response larger than %d bytes", limit)
	}
	return b, nil
}

// revalidate asks upstream whether a stale entry changed, with its stored
// ETag and Last-Modified; a 304 renews it without moving the body.
func (p *Proxy) revalidate(ctx context.Context, fr fillRequest, old *cache.Entry) (*cache.Entry, error) {
	req, err := p.newUpstreamRequest(ctx, fr)
	if err != nil {
		return nil, err
	}
	if v := old.HeaderValue("Etag"); v != "" {
		req.Header.Set("If-None-Match", v)
	}
	if v := old.HeaderValue("Last-Modified"); v != "" {
		req.Header.Set("If-Modified-Since", v)
	}
	resp, err := p.send(ctx, fr.rt, req, true)
	if err != nil {
		return nil, errUpstream("revalidation", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return p.renew(fr, old)
	}
	return p.storeResponse(fr, resp, nil)
}

// renew extends the freshness of old after the upstream confirmed it.
func (p *Proxy) renew(fr fillRequest, old *cache.Entry) (*cache.Entry, error) {
	now := p.now()
	next := *old
	next.StoredAt = now
	next.FreshUntil = now.Add(p.policy(fr.rt.Class).TTL)
	return p.store.Renew(old, next)
}

// errCorruptBody is wrapped by verifyBody's failures.
var errCorruptBody = errors.New("body fails its integrity check")

// verifyBody checks a staged upstream body against what it carries about
// itself: the digest and MD5 ETag of a compact-index file, the zlib stream
// of a quick gemspec, the gzip stream (CRC-32) of a full-index file.
func verifyBody(rt *Route, h http.Header, st *cache.Staging) error {
	switch {
	case rt.CompactIndex:
		if want, ok := compactindex.ParseDigest(h.Get("Repr-Digest")); ok || h.Get("Digest") != "" {
			if !ok {
				want, ok = compactindex.ParseDigest(h.Get("Digest"))
			}
			if ok && want != st.SHA256() {
				return fmt.Errorf("%w: SHA-256 differs from the upstream's digest header", errCorruptBody)
			}
		}
		if want, ok := etagMD5(h.Get("Etag")); ok && want != st.MD5() {
			return fmt.Errorf("%w: MD5 differs from the upstream's ETag", errCorruptBody)
		}
	case rt.Class == ClassQuickSpec, rt.Class == ClassFullIndex:
		// Streamed from the staging: a large body is never held in memory.
		body, err := st.Reader()
		if err != nil {
			return err
		}
		var zr io.Reader
		if rt.Class == ClassQuickSpec {
			zr, err = zlib.NewReader(body)
		} else {
			zr, err = gzip.NewReader(body)
		}
		if err == nil {
			_, err = io.Copy(io.Discard, zr)
		}
		if err != nil {
			return fmt.Errorf("%w: %v", errCorruptBody, err)
		}
	case rt.Class == ClassAPI && strings.HasPrefix(h.Get("Content-Type"), "application/json"):
		// JSON has no digest; a body cut short (an honest but short
		// Content-Length) at least no longer parses.
		body, err := st.Bytes()
		if err != nil {
			return err
		}
		if !json.Valid(body) {
			return fmt.Errorf("%w: not valid JSON", errCorruptBody)
		}
	}
	return nil
}
