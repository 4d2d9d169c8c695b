package proxy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/cache/localblob"
)

// DefaultPendingRetry is how often a replica with uploads pending tries
// the shared store again when SharedOptions.PendingRetry is zero.
const DefaultPendingRetry = 30 * time.Second

// pendingConcurrency bounds the uploads of pending keys that run at once.
const pendingConcurrency = 4

// pendingUploads writes to the shared store, in the background, the
// verified objects that the local tier stored and the store does not hold
// yet: the keys the cache recorded as pending upload with their entries
// (cache.Store.PendingUploads), left by a store that failed during their
// upload, or by a replica that stopped (or was killed) before it. It runs
// at start, when the store answers again after failing, and every retry
// interval, pendingConcurrency uploads at a time, until none is left or
// the store fails; serving never waits for it.
type pendingUploads struct {
	// retry is how often the worker tries the store again.
	retry time.Duration
	// wake is signalled, never blocking, when the store answers again.
	wake chan struct{}

	mu sync.Mutex
	// uploading holds the cache keys being uploaded, by publish or by the
	// worker, so that neither uploads a key the other is uploading.
	uploading map[string]bool
	// stop ends the worker and done is closed once it has returned; nil
	// when it does not run.
	stop context.CancelFunc
	done chan struct{}
}

// newPendingUploads returns the worker's state, retrying every retry
// (DefaultPendingRetry when zero).
func newPendingUploads(retry time.Duration) *pendingUploads {
	if retry <= 0 {
		retry = DefaultPendingRetry
	}
	return &pendingUploads{retry: retry, wake: make(chan struct{}, 1), uploading: make(map[string]bool)}
}

// wakeUp tells the worker that the store answers again.
func (pu *pendingUploads) wakeUp() {
	select {
	case pu.wake <- struct{}{}:
	default:
	}
}

// begin marks key as being uploaded; false means it already is.
func (pu *pendingUploads) begin(key string) bool {
	pu.mu.Lock()
	defer pu.mu.Unlock()
	if pu.uploading[key] {
		return false
	}
	pu.uploading[key] = true
	return true
}

// end marks key as no longer being uploaded.
func (pu *pendingUploads) end(key string) {
	pu.mu.Lock()
	defer pu.mu.Unlock()
	delete(pu.uploading, key)
}

// startPendingUploads starts the worker, which first uploads what an
// earlier run left pending. Without a shared tier it does nothing.
func (f *filler) startPendingUploads() {
	if f.shared == nil {
		return
	}
	pu := f.shared.pending
	pu.mu.Lock()
	defer pu.mu.Unlock()
	ctx, stop := context.WithCancel(context.Background())
	pu.stop, pu.done = stop, make(chan struct{})
	go f.runPendingUploads(ctx, pu, pu.done)
}

// stopPendingUploads stops the worker, if it runs, and waits until it has
// returned. An upload it cancels stays pending.
func (f *filler) stopPendingUploads() {
	if f.shared == nil {
		return
	}
	pu := f.shared.pending
	pu.mu.Lock()
	stop, done := pu.stop, pu.done
	pu.stop, pu.done = nil, nil
	pu.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// runPendingUploads drains the pending uploads now, then each time the
// store answers again or the retry interval passes, until ctx ends; then
// it closes done.
func (f *filler) runPendingUploads(ctx context.Context, pu *pendingUploads, done chan struct{}) {
	defer close(done)
	ticker := time.NewTicker(pu.retry)
	defer ticker.Stop()
	for {
		f.drainPending(ctx, pu)
		select {
		case <-ctx.Done():
			return
		case <-pu.wake:
		case <-ticker.C:
		}
	}
}

// drainPending uploads the keys pending, pendingConcurrency at a time,
// until none is left or the store fails, and logs at INFO when it left
// none. While the tier is off it only shows their number: the switch on
// wakes the worker (sharedprobe.go).
func (f *filler) drainPending(ctx context.Context, pu *pendingUploads) {
	keys, err := f.store.PendingUploads()
	f.showPending()
	if err != nil {
		f.log.Warn("cannot list the uploads pending to the shared store", "error", err)
		return
	}
	if len(keys) == 0 || f.shared.currentMode() == 0 {
		return
	}
	var g errgroup.Group
	g.SetLimit(pendingConcurrency)
	var failed atomic.Bool
	for _, key := range keys {
		if failed.Load() || ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if !f.uploadPending(ctx, pu, key) {
				failed.Store(true)
			}
			return nil
		})
	}
	_ = g.Wait()
	if f.store.PendingCount() == 0 {
		f.log.Info("uploads pending to the shared store done", "objects", len(keys))
	}
}

// uploadPending uploads the entry of the pending key, unless it is being
// uploaded already, and reports whether the store answered (recordUpload).
// A key whose entry is not one the store takes is no longer pending.
func (f *filler) uploadPending(ctx context.Context, pu *pendingUploads, key string) bool {
	e := f.store.Peek(key)
	var objKey string
	ok := e != nil && uploadable(e)
	if ok {
		objKey, ok = objectKey(Class(e.Class), key)
	}
	if !ok {
		return f.recordUpload(key, nil)
	}
	if !pu.begin(key) {
		return true
	}
	defer pu.end(key)
	return f.recordUpload(key, f.shared.upload(ctx, objKey, localblob.Version(e), ""))
}

// uploadFresh is upload (to key) of the entry e that a fill has just
// stored and recorded as pending; when the store fails, e's key stays
// pending and the worker uploads it later.
func (f *filler) uploadFresh(ctx context.Context, key string, e *cache.Entry, corrupt string) {
	pu := f.shared.pending
	if !pu.begin(e.Key) {
		return // the worker is at it
	}
	defer pu.end(e.Key)
	f.showPending()
	f.recordUpload(e.Key, f.shared.upload(ctx, key, localblob.Version(e), corrupt))
}

// recordUpload settles the pending upload of the cache key key after an
// upload that returned err, and reports whether the store answered. The
// key is no longer pending when the store holds the object (err nil or
// ErrExists); an entry evicted or replaced meanwhile (errSourceGone) took
// its record with it; any other error is the store's, and the key stays
// pending.
func (f *filler) recordUpload(key string, err error) bool {
	switch {
	case err == nil || errors.Is(err, blobstore.ErrExists):
		if err := f.store.UploadDone(key); err != nil {
			f.log.Warn("cannot record an upload to the shared store as done; it will be tried again", "key", key, "error", err)
		}
	case errors.Is(err, errSourceGone):
	default:
		return false
	}
	f.showPending()
	return true
}

// showPending sets gemproxy_shared_store_pending_uploads.
func (f *filler) showPending() {
	f.shared.store.m.PendingUploads.Set(float64(f.store.PendingCount()))
}
