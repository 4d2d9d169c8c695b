package proxy

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// maxTransientBody bounds a non-2xx body (an error, a 404, a 429) held in
// memory; 2xx bodies are staged and bounded by the class's size limit.
const maxTransientBody = 1 << 20

// storeResponse turns an upstream response into an entry: stored when it
// may be, transient otherwise. A 2xx body is verified before any byte of
// it is served, stored or not (one streamed while it downloads,
// livebody.go, before its last byte is). want, for a gem, yields the
// SHA-256 it must have.
func (f *filler) storeResponse(fr fillRequest, resp *http.Response, want checksumFuture) (*cache.Entry, error) {
	if err := decodeContentEncoding(resp); err != nil {
		return nil, err
	}
	status := resp.StatusCode
	if status == http.StatusForbidden && (fr.rt.Class == ClassGem || fr.rt.Class == ClassQuickSpec) {
		// S3 answers 403 with an XML body for objects that do not exist.
		return f.storeNotFound(fr, resp.Header, []byte(fileNotFound))
	}
	switch {
	case status == http.StatusNotFound:
		body, err := readLimited(resp.Body, maxTransientBody)
		if err != nil {
			return nil, errUpstream("read", err)
		}
		return f.storeNotFound(fr, resp.Header, body)
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
		return f.transient(fr, resp, status)
	}
	st, err := f.stageBody(fr, resp)
	if err != nil {
		return nil, err
	}
	verified, err := f.verifyStaged(fr, resp.Header, st, want)
	switch {
	case err != nil:
		st.Discard()
		return nil, err
	case !verified:
		return f.unverifiedGem(fr, resp, st)
	case status != http.StatusOK || !storable(resp.Header):
		// 201 and 203 included: verified and served, but only a 200 is
		// stored.
		return f.unstored(fr, resp, st), nil
	}
	return f.commitResponse(fr, resp.Header, st)
}

// stageBody stages the body of a 2xx upstream answer, refusing it as soon
// as it grows past the class's size limit (counted after any decoding),
// and when it differs from its announced length.
func (f *filler) stageBody(fr fillRequest, resp *http.Response) (*cache.Staging, error) {
	limit := f.policy(fr.rt.Class).MaxResponseSize
	if resp.ContentLength > limit {
		return nil, f.errTooLarge(fr, limit)
	}
	st := f.store.Stage()
	if err := f.copyBody(fr, resp, st); err != nil {
		st.Discard()
		return nil, err
	}
	return st, nil
}

// copyBody writes the body of resp to st, refusing it as soon as it grows
// past the class's size limit, and when it differs from its announced
// length. The caller discards st on an error.
func (f *filler) copyBody(fr fillRequest, resp *http.Response, st *cache.Staging) error {
	limit := f.policy(fr.rt.Class).MaxResponseSize
	n, err := io.Copy(st, io.LimitReader(resp.Body, limit+1))
	if !fr.fromShared {
		f.m.UpstreamBytes(fr.rt.Endpoint).Add(float64(n))
	}
	switch {
	case err != nil:
		return errUpstream("body read", err)
	case n > limit:
		return f.errTooLarge(fr, limit)
	case resp.ContentLength >= 0 && n != resp.ContentLength:
		return &upstreamError{status: http.StatusBadGateway, reason: fmt.Sprintf("upstream sent %d bytes, announced %d", n, resp.ContentLength)}
	}
	return nil
}

// errTooLarge logs and describes an upstream body over the size limit of
// its class.
func (f *filler) errTooLarge(fr fillRequest, limit int64) error {
	f.log.Warn("upstream answer over the size limit of its class; refused", "key", fr.key, "class", fr.rt.Class, "limit", limit)
	return &upstreamError{status: http.StatusBadGateway, reason: fmt.Sprintf(
		"upstream answer for %s is larger than the %d-byte limit of class %s", fr.key, limit, fr.rt.Class)}
}

// commitResponse stores a verified 200 that may be stored.
func (f *filler) commitResponse(fr fillRequest, h http.Header, st *cache.Staging) (*cache.Entry, error) {
	e := f.okEntry(fr, h, st.MD5(), st.SHA256())
	stored, err := f.store.Commit(st, e, cache.CommitOptions{Gzip: fr.rt.CompactIndex, Appendable: fr.rt.CompactIndex, Pending: f.publishes(fr)})
	if err != nil {
		return nil, err
	}
	if fr.rt.Class == ClassVersions {
		f.invalidateStaleInfos(stored, 0)
	}
	return stored, nil
}

// okEntry is the entry that a fill of fr stores for a verified 200 with
// the upstream header h and a body of sums md5sum and sha (Commit sets
// the ID, sizes and sums).
func (f *filler) okEntry(fr fillRequest, h http.Header, md5sum [16]byte, sha [32]byte) cache.Entry {
	now := f.now()
	e := cache.Entry{
		Key:       fr.key,
		Class:     string(fr.rt.Class),
		Status:    http.StatusOK,
		StoredAt:  now,
		Immutable: fr.rt.Immutable,
		Header:    entryHeaders(fr.rt, http.StatusOK, h, md5sum, sha, f.policy(fr.rt.Class).TTL, now),
	}
	if !e.Immutable {
		e.FreshUntil = now.Add(f.policy(fr.rt.Class).TTL)
	}
	return e
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
func (f *filler) storeNotFound(fr fillRequest, h http.Header, body []byte) (*cache.Entry, error) {
	now := f.now()
	ttl := f.policy(fr.rt.Class).NegativeTTL
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
	st := f.store.Stage()
	_, _ = st.Write(body)
	return f.store.Commit(st, e, cache.CommitOptions{})
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
func (f *filler) transient(fr fillRequest, resp *http.Response, status int) (*cache.Entry, error) {
	body, err := readLimited(resp.Body, maxTransientBody)
	if err != nil {
		return nil, errUpstream("read", err)
	}
	return &cache.Entry{Key: fr.key, Status: status, Header: transientHeaders(resp.Header), Body: body, Size: int64(len(body)), StoredAt: f.now()}, nil
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
func (f *filler) unverifiedGem(fr fillRequest, resp *http.Response, st *cache.Staging) (*cache.Entry, error) {
	if err := f.allowUnverified(fr, st.Size()); err != nil {
		st.Discard()
		return nil, err
	}
	return f.unstored(fr, resp, st), nil
}

// allowUnverified counts and logs a gem of size bytes whose checksum the
// compact index does not know, and refuses it when it is larger than
// MaxUnverifiedSize.
func (f *filler) allowUnverified(fr fillRequest, size int64) error {
	f.m.ChecksumFailure(metrics.ChecksumUnknown).Inc()
	f.log.Warn("gem checksum unknown; serving without storing", "key", fr.key)
	if size > f.maxUnverifiedSize {
		return &upstreamError{status: http.StatusBadGateway, reason: "gem checksum unknown and too large to serve unverified"}
	}
	return nil
}

// unstored turns a staged 2xx answer that is not stored into an entry for
// the clients of this fill only, its body in memory when small and in its
// staging file otherwise. A 200 that may be stored gets the headers it
// would have had stored; anything else passes on the upstream's.
func (f *filler) unstored(fr fillRequest, resp *http.Response, st *cache.Staging) *cache.Entry {
	now := f.now()
	e := cache.Entry{Key: fr.key, Status: resp.StatusCode, StoredAt: now, Header: transientHeaders(resp.Header)}
	if resp.StatusCode == http.StatusOK && storable(resp.Header) {
		e.Header = entryHeaders(fr.rt, http.StatusOK, resp.Header, st.MD5(), st.SHA256(), 0, now)
	}
	return f.store.Transient(st, e)
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
