package proxy

import (
	"compress/gzip"
	"compress/zlib"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/compactindex"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// checksumFuture yields the SHA-256 a gem must have (known false when the
// compact index does not list it), waiting for a lookup started earlier.
type checksumFuture func() (sum [32]byte, known bool, err error)

// checksumOnDemand returns a function that starts checksumLookup for a gem
// on its first call and returns that lookup's future on every call; nil,
// and no lookup, for another class.
func (f *filler) checksumOnDemand(ctx context.Context, fr fillRequest) func() checksumFuture {
	if fr.rt.Class != ClassGem {
		return func() checksumFuture { return nil }
	}
	return sync.OnceValue(func() checksumFuture { return f.checksumLookup(ctx, fr) })
}

// knownChecksum is the future of a checksum known already.
func knownChecksum(sum [32]byte) checksumFuture {
	return func() ([32]byte, bool, error) { return sum, true, nil }
}

// holdsInfo reports whether the local tier holds a 200 of /info/NAME for
// the gem file of fr.key under one of the names it may have (see
// gemChecksum), fresh or not, without fetching anything.
func (f *filler) holdsInfo(fr fillRequest) bool {
	for name := range compactindex.SplitFullName(gemFullName(fr.key)) {
		if e := f.store.Peek("/info/" + name); e != nil && e.Status == http.StatusOK {
			return true
		}
	}
	return false
}

// gemFullName is NAME-VERSION[-PLATFORM] of the gem file key
// /gems/NAME-VERSION[-PLATFORM].gem.
func gemFullName(key string) string {
	return strings.TrimSuffix(strings.TrimPrefix(key, "/gems/"), ".gem")
}

// checksumLookup starts gemChecksum in a goroutine of its own while the gem
// itself downloads, so the two upstream round trips overlap; the gem's
// storeResponse waits for the result (verifyStaged). The future may be
// called more than once (a body from the shared store that fails, then the
// upstream's): every call yields the one result.
func (f *filler) checksumLookup(ctx context.Context, fr fillRequest) checksumFuture {
	type result struct {
		sum   [32]byte
		known bool
		err   error
	}
	ch := make(chan result, 1)
	f.background.Add(1) // it may outlive the fill (a 404 gem): Wait covers it
	go func() {
		defer f.background.Done()
		sum, known, err := f.gemChecksum(ctx, fr)
		ch <- result{sum, known, err}
	}()
	wait := sync.OnceValue(func() result { return <-ch })
	return func() ([32]byte, bool, error) {
		r := wait()
		return r.sum, r.known, r.err
	}
}

// gemChecksum finds the SHA-256 the compact index records for the gem file
// of fr.key (/gems/NAME-VERSION[-PLATFORM].gem) in /info/NAME (see
// infoForChecksum). Names contain dashes, so every valid split is tried.
func (f *filler) gemChecksum(ctx context.Context, fr fillRequest) (sum [32]byte, known bool, err error) {
	for name, version := range compactindex.SplitFullName(gemFullName(fr.key)) {
		for attempt := 0; attempt < 2; attempt++ {
			info, outcome, err := f.infoForChecksum(ctx, name, fr.userAgent)
			if err != nil {
				return sum, false, err
			}
			if info == nil {
				break // no such gem under this name
			}
			if hexSum, ok := compactindex.InfoChecksum(info, version); ok {
				_, err := hex.Decode(sum[:], []byte(hexSum))
				return sum, err == nil, nil
			}
			if outcome != metrics.ResultHit {
				break
			}
			// A fresh copy may predate this version: ask upstream once.
			if _, err := f.store.Invalidate("/info/" + name); err != nil {
				return sum, false, err
			}
		}
	}
	return sum, false, nil
}

// infoForChecksum returns the body of /info/NAME, the compact-index file
// that lists the SHA-256 of every NAME-VERSION gem, for a gem fill to check
// its download against; nil when no such gem exists. outcome tells a hit,
// which may predate the version, from an answer just fetched.
//
// It reads the file through the cache, as a client's request for it would
// (lookup: the same freshness decision, the same coalesced fill): Bundler
// and RubyGems read /info/NAME before they ask for a gem, so it is almost
// always a fresh hit, and when it is not, this fill stores it for the
// client's next request. That re-enters the fill path from inside a fill,
// which is safe because coalescing (cache.Store.Fill) is per key: the gem
// fill holds the flight of /gems/NAME-VERSION.gem, never that of
// /info/NAME, so the lookup leads or joins another key's flight and never
// waits on itself; fills of several versions of one gem share one fill of
// /info/NAME.
func (f *filler) infoForChecksum(ctx context.Context, name, userAgent string) (body []byte, outcome metrics.Result, err error) {
	key := "/info/" + name
	e, outcome, err := f.lookup(ctx, fillRequest{rt: f.infoRoute, key: key, userAgent: userAgent})
	if err != nil {
		var ue *upstreamError
		if errors.As(err, &ue) {
			return nil, outcome, err
		}
		return nil, outcome, errUpstream("/info lookup", err)
	}
	if e.Status != http.StatusOK {
		return nil, outcome, nil
	}
	if e.Body != nil {
		return e.Body, outcome, nil
	}
	r, err := f.store.Open(e, false)
	if err != nil {
		return nil, outcome, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	return b, outcome, err
}

// verifyStaged checks a staged 2xx body before any byte of it is served:
// verifyBody's checks, and a gem's SHA-256 against the compact index.
// verified is false, without an error, for a gem whose checksum is unknown.
func (f *filler) verifyStaged(fr fillRequest, h http.Header, st *cache.Staging, want checksumFuture) (verified bool, err error) {
	if err := verifyBody(fr.rt, h, st); err != nil {
		f.m.ChecksumFailure(metrics.ChecksumMismatch).Inc()
		return false, &upstreamError{status: http.StatusBadGateway, reason: "upstream body of " + fr.key + " is corrupt", err: err,
			corrupt: errors.Is(err, errCorruptBody)}
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
		f.m.ChecksumFailure(metrics.ChecksumMismatch).Inc()
		return false, &upstreamError{status: http.StatusBadGateway, reason: fmt.Sprintf(
			"upstream gem %s has SHA-256 %s, but the compact index says %s; not stored",
			fr.key, hex.EncodeToString(sha[:]), hex.EncodeToString(wantSum[:])), corrupt: true}
	}
	return true, nil
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
