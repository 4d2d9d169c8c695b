package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// meteredStore is the shared store as the proxy calls it: every call is
// counted and timed in gemproxy_shared_store_*, and the store's health is
// logged once per change (a WARN when a call fails after a success, an
// INFO when one succeeds again), not once per failed call.
type meteredStore struct {
	// s is the store itself.
	s blobstore.Store
	// m receives the measurements.
	m *metrics.SharedStore
	// log receives the health changes.
	log *slog.Logger
	// failing is set by a failed call and cleared by an answered one.
	failing atomic.Bool
	// answering, when set, is called when a call is answered after a
	// failed one; it must not block.
	answering func()
}

// Get implements blobstore.Store; the body's bytes are counted as read.
func (ms *meteredStore) Get(ctx context.Context, key string) (io.ReadCloser, blobstore.Info, error) {
	start := time.Now()
	rc, info, err := ms.s.Get(ctx, key)
	ms.observe(metrics.SharedGet, key, err, start)
	if err != nil {
		return nil, info, err
	}
	return &countedBody{ReadCloser: rc, m: ms.m}, info, nil
}

// Stat implements blobstore.Store.
func (ms *meteredStore) Stat(ctx context.Context, key string) (blobstore.Info, error) {
	start := time.Now()
	info, err := ms.s.Stat(ctx, key)
	ms.observe(metrics.SharedStat, key, err, start)
	return info, err
}

// PutIfAbsent implements blobstore.Store; size is counted as written.
func (ms *meteredStore) PutIfAbsent(ctx context.Context, key string, body io.ReaderAt, size int64, opts blobstore.PutOptions) (blobstore.Info, error) {
	start := time.Now()
	info, err := ms.s.PutIfAbsent(ctx, key, body, size, opts)
	ms.observe(metrics.SharedPut, key, err, start)
	if err == nil {
		ms.m.AddBytes(metrics.SharedPut, size)
	}
	return info, err
}

// PutIfMatch implements blobstore.Store.
func (ms *meteredStore) PutIfMatch(ctx context.Context, key string, body []byte, version string) (blobstore.Info, error) {
	start := time.Now()
	info, err := ms.s.PutIfMatch(ctx, key, body, version)
	ms.observe(metrics.SharedPut, key, err, start)
	if err == nil {
		ms.m.AddBytes(metrics.SharedPut, int64(len(body)))
	}
	return info, err
}

// Delete implements blobstore.Store.
func (ms *meteredStore) Delete(ctx context.Context, key string) error {
	start := time.Now()
	err := ms.s.Delete(ctx, key)
	ms.observe(metrics.SharedDelete, key, err, start)
	return err
}

// observe records one call of op on key that returned err, and logs a
// change of the store's health.
func (ms *meteredStore) observe(op metrics.SharedOp, key string, err error, start time.Time) {
	r := sharedResult(err)
	ms.m.Observe(op, r, time.Since(start))
	switch {
	case r == metrics.SharedError && !ms.failing.Swap(true):
		ms.log.Warn("shared store failed; going on without it until it answers again", "op", op.String(), "key", key, "error", err)
	case r != metrics.SharedError && ms.failing.Swap(false):
		ms.log.Info("shared store answers again", "op", op.String(), "key", key)
		if ms.answering != nil {
			ms.answering()
		}
	}
}

// sharedResult classifies a store call's error for the metrics.
func sharedResult(err error) metrics.SharedResult {
	switch {
	case err == nil:
		return metrics.SharedOK
	case errors.Is(err, blobstore.ErrNotFound):
		return metrics.SharedNotFound
	case errors.Is(err, blobstore.ErrExists):
		return metrics.SharedExists
	case errors.Is(err, blobstore.ErrConflict):
		return metrics.SharedConflict
	}
	return metrics.SharedError
}

// countedBody counts the bytes read from an object's body.
type countedBody struct {
	io.ReadCloser
	m *metrics.SharedStore
}

// Read implements io.Reader.
func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.m.AddBytes(metrics.SharedGet, int64(n))
	return n, err
}
