package proxy

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/gemproxy/gemproxy/internal/cache"
)

// liveBodyMin is the smallest body streamed to its clients while it
// downloads (see streamLive). Smaller ones are staged in memory and
// verified before their first byte goes out, so a corrupt one is still a
// clean 502.
const liveBodyMin = 1 << 20

// streamsLive reports whether the upstream answer resp to a fill of fr is
// streamed to the clients as it arrives: a storable 200 of an immutable
// route (a gem) with a Content-Length of at least liveBodyMin and within
// the class's size limit, not content-encoded.
func (f *filler) streamsLive(fr fillRequest, resp *http.Response) bool {
	return fr.rt.Immutable && resp.StatusCode == http.StatusOK && storable(resp.Header) &&
		len(resp.Header.Values("Content-Encoding")) == 0 &&
		resp.ContentLength >= liveBodyMin && resp.ContentLength <= f.policy(fr.rt.Class).MaxResponseSize
}

// streamLive answers a fill whose body streams (streamsLive): it returns
// at once a transient entry that serves the body while it is staged, with
// the upstream's Content-Length, and stages, verifies and stores it in the
// background (completeLive). The clients of the fill, and those that
// arrive before it ends (joinLive), read the staging file as it grows; the
// last byte of each answer waits for the body to be verified (it goes out
// while the body is committed; the key stays coalesced until then), and a
// body refused cuts every answer short of its length, so no client gets a
// complete 200 with bytes gemproxy would not store. cancel ends the
// fill's context; resp's body is closed once it is read; stored, when set,
// is told the outcome once the body is stored or refused.
func (f *filler) streamLive(fr fillRequest, resp *http.Response, want checksumFuture, cancel context.CancelFunc,
	stored func(*cache.Entry, error)) (*cache.Entry, error) {
	now := f.now()
	st, live, err := f.store.StageLive(cache.Entry{Key: fr.key, Class: string(fr.rt.Class), Status: http.StatusOK,
		StoredAt: now, Immutable: true, Size: resp.ContentLength, Header: liveHeaders(fr.rt, resp.Header, now)})
	if err != nil {
		resp.Body.Close()
		cancel()
		tell(stored, nil, err)
		return nil, err
	}
	f.live.Store(fr.key, live.Entry())
	f.background.Add(1)
	go func() {
		defer f.background.Done()
		defer cancel()
		e, err := f.completeLive(fr, resp, st, want, live)
		// Forgotten before the readers learn the outcome: a request that
		// comes after a failure starts a fill of its own, and one that
		// comes after success finds the stored entry.
		f.live.Delete(fr.key)
		if err != nil {
			f.log.Warn("streamed fill not stored; answers not yet released are cut short", "key", fr.key, "error", err)
		}
		live.Finish(err)
		tell(stored, e, err)
	}()
	return live.Entry(), nil
}

// completeLive stages the body of resp into st, verifies it, releases its
// last byte to live's readers and stores it: what storeResponse does for a
// 200 once it decided to stream it. It returns the stored entry; a gem
// whose checksum is unknown is served, not stored (nil entry), within
// MaxUnverifiedSize.
func (f *filler) completeLive(fr fillRequest, resp *http.Response, st *cache.Staging, want checksumFuture,
	live *cache.Live) (e *cache.Entry, err error) {
	defer f.recoverFill(fr, &err)
	defer resp.Body.Close()
	if err := f.copyBody(fr, resp, st); err != nil {
		st.Discard()
		return nil, err
	}
	verified, err := f.verifyStaged(fr, resp.Header, st, want)
	if err != nil || !verified {
		st.Discard()
	}
	switch {
	case err != nil:
		return nil, err
	case !verified:
		return nil, f.allowUnverified(fr, st.Size())
	}
	live.Release()
	return f.commitResponse(fr, resp.Header, st)
}

// joinLive returns, for a fill of key about to start, the entry of key's
// body being streamed by an earlier fill, or the entry that fill stored
// since the cache was last asked (it leaves live only once stored); nil
// when there is neither.
func (f *filler) joinLive(key string) *cache.Entry {
	if e, ok := f.live.Load(key); ok {
		return e.(*cache.Entry)
	}
	if e := f.store.Peek(key); e != nil && f.fresh(e) {
		return e
	}
	return nil
}

// liveHeaders are the headers of a streamed 200 of rt: those it will be
// stored with, except an ETag made of the body's MD5, not known yet.
func liveHeaders(rt *Route, h http.Header, now time.Time) []cache.Field {
	fields := entryHeaders(rt, http.StatusOK, h, [16]byte{}, [32]byte{}, 0, now)
	if h.Get("Etag") != "" {
		return fields
	}
	return slices.DeleteFunc(fields, func(fd cache.Field) bool { return fd.Name == "Etag" })
}

// outliving returns a context with ctx's values and deadline that ctx's
// cancellation does not end, and the function that ends it.
func outliving(ctx context.Context) (context.Context, context.CancelFunc) {
	detached := context.WithoutCancel(ctx)
	if deadline, ok := ctx.Deadline(); ok {
		return context.WithDeadline(detached, deadline)
	}
	return context.WithCancel(detached)
}
