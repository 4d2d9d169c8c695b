package proxy

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/compactindex"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// maxAppendTail bounds the bytes accepted through the append path; a
// larger answer is treated as a full body.
const maxAppendTail = 64 << 20

// refreshCompactIndex brings a stale /versions or /info/NAME up to date the
// way Bundler does (docs/protocol.md §5.5): a Range request for the last byte
// onwards with If-None-Match; a verified 206 is appended in place, a 304
// renews, anything else falls back to a full fetch.
func (f *filler) refreshCompactIndex(ctx context.Context, fr fillRequest, old *cache.Entry) (*cache.Entry, error) {
	if old.Size == 0 || len(old.HashState) == 0 {
		return f.fullRefresh(ctx, fr)
	}
	resp, err := f.get(ctx, fr, "refresh", http.Header{
		"Range":         {"bytes=" + strconv.FormatInt(old.Size-1, 10) + "-"},
		"If-None-Match": {old.HeaderValue("Etag")},
	})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		f.m.ObserveRefresh(metrics.RefreshNotModified, 0)
		f.log.Debug("compact index refresh", "key", fr.key, "path", metrics.RefreshNotModified, "bytes", 0)
		return f.renew(fr, old)
	case http.StatusPartialContent:
		next, n, err := f.appendTail(fr, old, resp)
		if err == nil {
			f.m.ObserveRefresh(metrics.RefreshAppend, n)
			f.log.Debug("compact index refresh", "key", fr.key, "path", metrics.RefreshAppend, "bytes", n)
			return next, nil
		}
		f.log.Info("compact index append refused; fetching the whole file", "key", fr.key, "reason", err)
		_, _ = io.Copy(io.Discard, resp.Body)
		return f.fullRefresh(ctx, fr)
	case http.StatusOK:
		next, err := f.storeResponse(fr, resp, nil)
		if err == nil {
			f.m.ObserveRefresh(metrics.RefreshFull, next.Size)
			f.log.Debug("compact index refresh", "key", fr.key, "path", metrics.RefreshFull, "bytes", next.Size)
		}
		return next, err
	}
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		return f.storeResponse(fr, resp, nil) // an error: the stale copy is served
	}
	// 416 (our copy is longer: rebuilt /versions, shrunk /info) and others.
	_, _ = io.Copy(io.Discard, resp.Body)
	return f.fullRefresh(ctx, fr)
}

// fullRefresh fetches the whole file and counts it as a full refresh.
func (f *filler) fullRefresh(ctx context.Context, fr fillRequest) (*cache.Entry, error) {
	next, err := f.fetch(ctx, fr)
	if err == nil && next.ID != 0 {
		f.m.ObserveRefresh(metrics.RefreshFull, next.Size)
		f.log.Debug("compact index refresh", "key", fr.key, "path", metrics.RefreshFull, "bytes", next.Size)
	}
	return next, err
}

// errAppend explains why a 206 was not appended.
var errAppend = errors.New("partial response unusable")

// appendTail verifies a 206 answer to the last-byte range request and
// appends it: the range must start at our last byte, which must match, and
// the whole new file must hash to the upstream's digest and ETag. It returns
// the new entry and the bytes received.
func (f *filler) appendTail(fr fillRequest, old *cache.Entry, resp *http.Response) (*cache.Entry, int64, error) {
	start, _, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
	if !ok || start != old.Size-1 {
		return nil, 0, fmt.Errorf("%w: Content-Range %q does not start at byte %d", errAppend, resp.Header.Get("Content-Range"), old.Size-1)
	}
	wantSHA, ok := compactindex.ParseDigest(resp.Header.Get("Repr-Digest"))
	if !ok {
		wantSHA, ok = compactindex.ParseDigest(resp.Header.Get("Digest"))
	}
	if !ok {
		return nil, 0, fmt.Errorf("%w: no SHA-256 Repr-Digest or Digest", errAppend)
	}
	wantMD5, ok := etagMD5(resp.Header.Get("Etag"))
	if !ok {
		return nil, 0, fmt.Errorf("%w: ETag is not an MD5", errAppend)
	}
	if total-start > maxAppendTail {
		return nil, 0, fmt.Errorf("%w: tail of %d bytes", errAppend, total-start)
	}
	body, err := readLimited(resp.Body, maxAppendTail)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errAppend, err)
	}
	n := int64(len(body))
	f.m.UpstreamBytes(fr.rt.Endpoint).Add(float64(n))
	if n == 0 || old.Size+n-1 != total {
		return nil, n, fmt.Errorf("%w: %d bytes received for a %d-byte file", errAppend, n, total)
	}
	last, err := f.lastByte(old)
	if err != nil {
		return nil, n, err
	}
	if body[0] != last {
		return nil, n, fmt.Errorf("%w: first byte differs from our last byte", errAppend)
	}
	tail := body[1:]
	now := f.now()
	next, err := f.store.Append(old, tail, func(a cache.Appended) (cache.Entry, error) {
		if a.SHA256 != wantSHA {
			return cache.Entry{}, fmt.Errorf("%w: SHA-256 of the appended file differs from the upstream digest", errAppend)
		}
		if a.MD5 != wantMD5 {
			return cache.Entry{}, fmt.Errorf("%w: MD5 of the appended file differs from the upstream ETag", errAppend)
		}
		e := *old
		e.StoredAt = now
		e.FreshUntil = now.Add(f.policy(fr.rt.Class).TTL)
		e.Header = entryHeaders(fr.rt, http.StatusOK, resp.Header, a.MD5, a.SHA256, f.policy(fr.rt.Class).TTL, now)
		return e, nil
	})
	if err != nil {
		return nil, n, err
	}
	if fr.rt.Class == ClassVersions {
		f.invalidateInfos(tail)
	}
	return next, n, nil
}

// lastByte returns the last byte of e's body.
func (f *filler) lastByte(e *cache.Entry) (byte, error) {
	if e.Body != nil {
		return e.Body[len(e.Body)-1], nil
	}
	r, err := f.store.Open(e, false)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	r.Limit(e.Size-1, e.Size)
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("proxy: read last byte of %s: %w", e.Key, err)
	}
	return b[0], nil
}

// etagMD5 parses an ETag holding a hex MD5 (quotes and W/ allowed).
func etagMD5(etag string) (sum [16]byte, ok bool) {
	etag = strings.Trim(strings.TrimPrefix(strings.TrimSpace(etag), "W/"), `"`)
	if len(etag) != 32 {
		return sum, false
	}
	if _, err := hex.Decode(sum[:], []byte(etag)); err != nil {
		return sum, false
	}
	return sum, true
}

// parseContentRange parses "bytes START-END/TOTAL".
func parseContentRange(v string) (start, end, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	span, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	a, b, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err1, err2, err3 error
	start, err1 = strconv.ParseInt(a, 10, 64)
	end, err2 = strconv.ParseInt(b, 10, 64)
	total, err3 = strconv.ParseInt(tot, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || start < 0 || end < start || total <= end {
		return 0, 0, 0, false
	}
	return start, end, total, true
}

// invalidateStaleInfos reads a stored /versions body from offset from and
// marks stale every cached /info/NAME whose checksum it contradicts.
func (f *filler) invalidateStaleInfos(versions *cache.Entry, from int64) {
	body := versions.Body
	if body == nil {
		r, err := f.store.Open(versions, false)
		if err != nil {
			f.log.Error("coherence check: open /versions", "error", err)
			return
		}
		defer r.Close()
		r.Limit(from, versions.Size)
		var buf bytes.Buffer
		if _, err := io.Copy(&buf, r); err != nil {
			f.log.Error("coherence check: read /versions", "error", err)
			return
		}
		body = buf.Bytes()
	} else {
		body = body[from:]
	}
	f.invalidateInfos(body)
}

// invalidateInfos marks stale each cached /info/NAME whose MD5 differs from
// the last checksum lines lists for NAME (docs/protocol.md §5.6), and
// each cached 404 for a name that now exists.
func (f *filler) invalidateInfos(lines []byte) {
	latest := make(map[string]string)
	compactindex.VersionsChecksums(lines, func(name, md5hex []byte) {
		latest[string(name)] = string(md5hex)
	})
	for name, sum := range latest {
		key := "/info/" + name
		e := f.store.Peek(key)
		if e == nil || e.FreshUntil.Equal(cache.Expired) {
			continue // absent, or already marked stale
		}
		if e.Status == http.StatusOK && hex.EncodeToString(e.MD5[:]) == sum {
			continue
		}
		if _, err := f.store.Invalidate(key); err != nil {
			f.log.Error("coherence: invalidate", "key", key, "error", err)
		}
	}
}
