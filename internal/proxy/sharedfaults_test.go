package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gemproxy/gemproxy/internal/blobstore"
)

// faultyStore is a blobstore.Memory whose calls a test replaces to inject
// the store's faults (issue 13, test 6); a nil hook leaves the call to the
// memory store. The hooks are set before the proxy starts.
type faultyStore struct {
	*blobstore.Memory
	// get, when set, answers Get.
	get func(ctx context.Context, key string) (io.ReadCloser, blobstore.Info, error)
	// putIfAbsent, when set, answers PutIfAbsent.
	putIfAbsent func(ctx context.Context, key string, body io.ReaderAt, size int64, opts blobstore.PutOptions) (blobstore.Info, error)
	// putIfMatch, when set, answers PutIfMatch.
	putIfMatch func(ctx context.Context, key string, body []byte, version string) (blobstore.Info, error)
	// stat, when set, answers Stat.
	stat func(ctx context.Context, key string) (blobstore.Info, error)
	// deletes counts the calls of Delete on objects, claims left out.
	deletes atomic.Int64
}

// Get implements blobstore.Store.
func (s *faultyStore) Get(ctx context.Context, key string) (io.ReadCloser, blobstore.Info, error) {
	if s.get != nil {
		return s.get(ctx, key)
	}
	return s.Memory.Get(ctx, key)
}

// PutIfAbsent implements blobstore.Store.
func (s *faultyStore) PutIfAbsent(ctx context.Context, key string, body io.ReaderAt, size int64, opts blobstore.PutOptions) (blobstore.Info, error) {
	if s.putIfAbsent != nil {
		return s.putIfAbsent(ctx, key, body, size, opts)
	}
	return s.Memory.PutIfAbsent(ctx, key, body, size, opts)
}

// PutIfMatch implements blobstore.Store.
func (s *faultyStore) PutIfMatch(ctx context.Context, key string, body []byte, version string) (blobstore.Info, error) {
	if s.putIfMatch != nil {
		return s.putIfMatch(ctx, key, body, version)
	}
	return s.Memory.PutIfMatch(ctx, key, body, version)
}

// Stat implements blobstore.Store.
func (s *faultyStore) Stat(ctx context.Context, key string) (blobstore.Info, error) {
	if s.stat != nil {
		return s.stat(ctx, key)
	}
	return s.Memory.Stat(ctx, key)
}

// Delete implements blobstore.Store.
func (s *faultyStore) Delete(ctx context.Context, key string) error {
	if !strings.HasPrefix(key, claimPrefix) {
		s.deletes.Add(1)
	}
	return s.Memory.Delete(ctx, key)
}

// errStoreDown is what a store that is down (a 5xx, a reset) returns.
var errStoreDown = fmt.Errorf("%w: 503 Service Unavailable", blobstore.ErrUnavailable)

// failingReader returns err from every Read.
type failingReader struct{ err error }

// Read implements io.Reader.
func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

// cutBody is the object at key in s whose body fails with then after its
// first n bytes, as a connection reset or a stall cut off by the store's
// timeout does.
func cutBody(ctx context.Context, s *blobstore.Memory, key string, n int64, then io.Reader) (io.ReadCloser, blobstore.Info, error) {
	rc, info, err := s.Get(ctx, key)
	if err != nil {
		return nil, info, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, n), then), rc}, info, nil
}

// stallFor blocks for d, as a store that does not answer until its own
// timeout cuts the call off, and then fails with ErrUnavailable; sooner
// with ctx's error when ctx ends.
func stallFor(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("%w: no answer within %s", blobstore.ErrUnavailable, d)
	}
}

// stallingReader is a body that stalls until the store's timeout d.
type stallingReader struct {
	ctx context.Context
	d   time.Duration
}

// Read implements io.Reader.
func (r stallingReader) Read([]byte) (int, error) { return 0, stallFor(r.ctx, r.d) }

// claimPuts counts the claims that a hook of PutIfAbsent sees asked for,
// and passes every call on to s.
func claimPuts(s *faultyStore, n *atomic.Int64) func(context.Context, string, io.ReaderAt, int64, blobstore.PutOptions) (blobstore.Info, error) {
	return func(ctx context.Context, key string, body io.ReaderAt, size int64, opts blobstore.PutOptions) (blobstore.Info, error) {
		if strings.HasPrefix(key, claimPrefix) {
			n.Add(1)
		}
		return s.Memory.PutIfAbsent(ctx, key, body, size, opts)
	}
}

// TestSharedStoreUnavailableAsksNoClaim: a Get that the store answers with
// a 5xx (ErrUnavailable) sends the fill to the upstream without asking the
// store for a claim, which would cost the client a second failed call.
func TestSharedStoreUnavailableAsksNoClaim(t *testing.T) {
	up := gemUpstream(t, nil)
	s := &faultyStore{Memory: blobstore.NewMemory()}
	var claims atomic.Int64
	s.get = func(context.Context, string) (io.ReadCloser, blobstore.Info, error) {
		return nil, blobstore.Info{}, errStoreDown
	}
	s.putIfAbsent = claimPuts(s, &claims)
	tp := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
	getGem(t, tp)
	tp.Wait()
	if n := up.count(sharedGemPath); n != 1 {
		t.Fatalf("upstream fetches of the gem: %d, want 1", n)
	}
	if n := claims.Load(); n != 0 {
		t.Errorf("%d claims asked of a store that just failed, want none", n)
	}
	if !bytes.Equal(storedObject(t, s.Memory, sharedGemKey), sharedGem) {
		t.Error("the verified gem was not written to the store")
	}
}

// TestSharedBodyResetFallsBack: a body from the store that fails midway (a
// connection reset) sends the fill to the upstream: the client gets the
// gem's bytes, nothing partial is stored locally, and the object, whose
// bytes were never wrong, is neither deleted nor written again.
func TestSharedBodyResetFallsBack(t *testing.T) {
	up := gemUpstream(t, nil)
	s := &faultyStore{Memory: blobstore.NewMemory()}
	putObject(t, s.Memory, sharedGemKey, sharedGem)
	s.get = func(ctx context.Context, key string) (io.ReadCloser, blobstore.Info, error) {
		return cutBody(ctx, s.Memory, key, 64<<10, failingReader{fmt.Errorf("%w: connection reset by peer", blobstore.ErrUnavailable)})
	}
	tp := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
	getGem(t, tp)
	tp.Wait()
	if n := up.count(sharedGemPath); n != 1 {
		t.Fatalf("upstream fetches of the gem: %d, want 1", n)
	}
	if e := tp.store.Lookup(sharedGemPath); e == nil || e.Size != int64(len(sharedGem)) {
		t.Fatalf("local entry after the fill: %+v, want the whole gem", e)
	}
	getGem(t, tp) // a local hit, with the right bytes
	if n := up.count(sharedGemPath); n != 1 {
		t.Fatalf("upstream fetches of the gem after a local hit: %d, want 1", n)
	}
	if n := s.deletes.Load(); n != 0 {
		t.Errorf("%d deletes of an object whose transfer failed, want none", n)
	}
	if n := testutil.ToFloat64(tp.m.SharedStore.CorruptReplaced); n != 0 {
		t.Errorf("corrupt objects replaced: %v, want 0", n)
	}
	if !bytes.Equal(storedObject(t, s.Memory, sharedGemKey), sharedGem) {
		t.Error("the object in the store changed")
	}
}

// TestSharedStoreStallBounded: a store that stalls, before its answer or
// in the middle of a body, until its own timeout cuts the call off, costs
// a client that timeout once: the gem then comes from the upstream, and
// no claim is asked of the stalled store on the way.
func TestSharedStoreStallBounded(t *testing.T) {
	const storeTimeout = time.Second
	for _, tc := range []struct {
		name string
		get  func(s *faultyStore) func(context.Context, string) (io.ReadCloser, blobstore.Info, error)
	}{
		{"before the answer", func(*faultyStore) func(context.Context, string) (io.ReadCloser, blobstore.Info, error) {
			return func(ctx context.Context, _ string) (io.ReadCloser, blobstore.Info, error) {
				return nil, blobstore.Info{}, stallFor(ctx, storeTimeout)
			}
		}},
		{"mid-body", func(s *faultyStore) func(context.Context, string) (io.ReadCloser, blobstore.Info, error) {
			return func(ctx context.Context, key string) (io.ReadCloser, blobstore.Info, error) {
				return cutBody(ctx, s.Memory, key, 64<<10, stallingReader{ctx: ctx, d: storeTimeout})
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := gemUpstream(t, nil)
			s := &faultyStore{Memory: blobstore.NewMemory()}
			putObject(t, s.Memory, sharedGemKey, sharedGem)
			s.get = tc.get(s)
			s.putIfAbsent = func(ctx context.Context, _ string, _ io.ReaderAt, _ int64, _ blobstore.PutOptions) (blobstore.Info, error) {
				return blobstore.Info{}, stallFor(ctx, storeTimeout)
			}
			tp := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
			start := time.Now()
			getGem(t, tp)
			if d := time.Since(start); d >= 2*storeTimeout {
				t.Errorf("served after %s, want less than twice the store's timeout of %s", d, storeTimeout)
			}
			if n := up.count(sharedGemPath); n != 1 {
				t.Fatalf("upstream fetches of the gem: %d, want 1", n)
			}
		})
	}
}

// TestSharedClaimTakenOverFirstIsWaitedFor: a replica whose takeover of an
// expired claim fails with ErrConflict (another waiter took it over first)
// waits for that waiter's object instead of fetching the gem itself.
func TestSharedClaimTakenOverFirstIsWaitedFor(t *testing.T) {
	up := gemUpstream(t, nil)
	s := &faultyStore{Memory: blobstore.NewMemory()}
	claimKey := claimPrefix + sharedGemKey
	putObject(t, s.Memory, claimKey, mustJSON(claimBody{Replica: "dead", LifetimeMillis: 200}))
	var tookOver atomic.Bool
	s.putIfMatch = func(ctx context.Context, key string, body []byte, version string) (blobstore.Info, error) {
		if key == claimKey && tookOver.CompareAndSwap(false, true) {
			// Replica b takes the claim over just before this one.
			if _, err := s.Memory.PutIfMatch(ctx, key, mustJSON(claimBody{Replica: "b", LifetimeMillis: 10000}), version); err != nil {
				return blobstore.Info{}, err
			}
			return blobstore.Info{}, blobstore.ErrConflict
		}
		return s.Memory.PutIfMatch(ctx, key, body, version)
	}
	// Once this replica reads b's claim, b writes the gem and releases it.
	bDone := make(chan error, 1)
	var bWrites sync.Once
	s.get = func(ctx context.Context, key string) (io.ReadCloser, blobstore.Info, error) {
		if key == claimKey && tookOver.Load() {
			bWrites.Do(func() {
				go func() {
					_, err := s.Memory.PutIfAbsent(context.Background(), sharedGemKey, bytes.NewReader(sharedGem), int64(len(sharedGem)), blobstore.PutOptions{})
					bDone <- errors.Join(err, s.Memory.Delete(context.Background(), claimKey))
				}()
			})
		}
		return s.Memory.Get(ctx, key)
	}
	tp := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
	getGem(t, tp)
	tp.Wait()
	if !tookOver.Load() {
		t.Fatal("the replica never tried to take the expired claim over")
	}
	if n := up.count(sharedGemPath); n != 0 {
		t.Fatalf("upstream fetches of the gem: %d, want 0 (replica b's object read from the store)", n)
	}
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
}
