package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gemproxy/gemproxy/internal/blobstore"
)

// downStore is a faultyStore that answers every Get and PutIfAbsent with
// errStoreDown while down is set, counting the refused writes of objects.
func downStore() (s *faultyStore, down *atomic.Bool, refused *atomic.Int64) {
	s = &faultyStore{Memory: blobstore.NewMemory()}
	down, refused = new(atomic.Bool), new(atomic.Int64)
	s.get = func(ctx context.Context, key string) (io.ReadCloser, blobstore.Info, error) {
		if down.Load() {
			return nil, blobstore.Info{}, errStoreDown
		}
		return s.Memory.Get(ctx, key)
	}
	s.putIfAbsent = func(ctx context.Context, key string, body io.ReaderAt, size int64, opts blobstore.PutOptions) (blobstore.Info, error) {
		if down.Load() {
			if !strings.HasPrefix(key, claimPrefix) {
				refused.Add(1)
			}
			return blobstore.Info{}, errStoreDown
		}
		return s.Memory.PutIfAbsent(ctx, key, body, size, opts)
	}
	return s, down, refused
}

// withPendingRetry sets the retry interval of pending uploads.
func withPendingRetry(d time.Duration) func(*Options) {
	return func(o *Options) { o.Shared.PendingRetry = d }
}

// fillWhileDown fills the gem through tp while the store is down, and
// returns once the fill's own upload was refused: the gem is then pending.
func fillWhileDown(t *testing.T, tp *testProxy, refused *atomic.Int64) {
	t.Helper()
	getGem(t, tp)
	waitFor(t, func() bool { return refused.Load() > 0 })
	if keys, err := tp.store.PendingUploads(); err != nil || !slices.Equal(keys, []string{sharedGemPath}) {
		t.Fatalf("pending uploads after a fill with the store down: %q, %v; want the gem", keys, err)
	}
}

// waitUploaded waits until the store holds the gem and nothing is pending
// (gauge included).
func waitUploaded(t *testing.T, tp *testProxy, s *faultyStore) {
	t.Helper()
	waitFor(t, func() bool {
		return tp.store.PendingCount() == 0 && testutil.ToFloat64(tp.m.SharedStore.PendingUploads) == 0
	})
	if got := storedObject(t, s.Memory, sharedGemKey); !bytes.Equal(got, sharedGem) {
		t.Fatalf("the store holds %d bytes at %s, want the gem's %d", len(got), sharedGemKey, len(sharedGem))
	}
}

// TestSharedPendingUploadedWhenStoreBack: a gem filled while the store is
// down stays pending (gauge 1); once the store is back it is uploaded
// with no client request, when the retry interval passes or as soon as
// another call (the /versions poll, another fill) finds the store
// answering again, and the log says the backlog is drained.
func TestSharedPendingUploadedWhenStoreBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		retry time.Duration
		// back is what shows the replica that the store is back.
		back func(tp *testProxy)
	}{
		{"retry interval", 20 * time.Millisecond, func(*testProxy) {}},
		{"store answers again", time.Hour, func(tp *testProxy) {
			_, _ = tp.fill.shared.store.Stat(context.Background(), "versions/current")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := gemUpstream(t, nil)
			s, down, refused := downStore()
			down.Store(true)
			var logs bytes.Buffer
			out := &syncWriter{w: &logs, mu: new(sync.Mutex)}
			tp := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"), withPendingRetry(tc.retry),
				func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(out, nil)) })
			fillWhileDown(t, tp, refused)
			waitFor(t, func() bool { return testutil.ToFloat64(tp.m.SharedStore.PendingUploads) == 1 })
			down.Store(false)
			tc.back(tp)
			waitUploaded(t, tp, s)
			tp.Wait()
			if n := up.count(sharedGemPath); n != 1 {
				t.Errorf("upstream fetches of the gem: %d, want 1", n)
			}
			out.mu.Lock()
			defer out.mu.Unlock()
			if !strings.Contains(logs.String(), `level=INFO msg="uploads pending to the shared store done" objects=1`) {
				t.Errorf("no INFO line for the drained backlog:\n%s", logs.String())
			}
		})
	}
}

// TestSharedPendingUploadedAtStart: a replica that stopped with a gem
// pending (its store was down; as well killed before its upload) uploads
// it at its next start on the same data directory, with no client
// request and no retry interval passing.
func TestSharedPendingUploadedAtStart(t *testing.T) {
	up := gemUpstream(t, nil)
	s, down, refused := downStore()
	down.Store(true)
	tp := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"), withPendingRetry(time.Hour))
	fillWhileDown(t, tp, refused)
	tp.Wait()
	down.Store(false)

	restarted, err := New(tp.store, tp.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(restarted.Wait)
	waitUploaded(t, tp, s)
	if n := up.count(sharedGemPath); n != 1 {
		t.Errorf("upstream fetches of the gem: %d, want 1", n)
	}
}

// TestSharedPendingClearedByUpload: a fill whose upload succeeds leaves
// nothing pending, and a replica that read the gem from the store records
// nothing to upload.
func TestSharedPendingClearedByUpload(t *testing.T) {
	up := gemUpstream(t, nil)
	s := blobstore.NewMemory()
	a := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
	getGem(t, a)
	a.Wait()
	b := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "b"))
	getGem(t, b)
	b.Wait()
	for name, tp := range map[string]*testProxy{"a": a, "b": b} {
		if n, g := tp.store.PendingCount(), testutil.ToFloat64(tp.m.SharedStore.PendingUploads); n != 0 || g != 0 {
			t.Errorf("replica %s: %d uploads pending (gauge %v), want none", name, n, g)
		}
	}
}
