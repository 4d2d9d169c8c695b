package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// lateStall is how long a call to the store of a late-probe test stalls
// while the store is down, before it fails with ErrUnavailable.
const lateStall = time.Second

// stalledStore is a faultyStore whose reads and writes stall for
// lateStall while down is set, as a store whose endpoint does not answer
// yet; used counts the calls of every key but the probe's, and claims the
// claims asked for.
func stalledStore() (s *faultyStore, down *atomic.Bool, used, claims *atomic.Int64) {
	s = &faultyStore{Memory: blobstore.NewMemory()}
	down, used, claims = new(atomic.Bool), new(atomic.Int64), new(atomic.Int64)
	call := func(ctx context.Context, key string) error {
		if !strings.HasPrefix(key, blobstore.ProbePrefix) {
			used.Add(1)
		}
		if down.Load() {
			return stallFor(ctx, lateStall)
		}
		return nil
	}
	s.get = func(ctx context.Context, key string) (io.ReadCloser, blobstore.Info, error) {
		if err := call(ctx, key); err != nil {
			return nil, blobstore.Info{}, err
		}
		return s.Memory.Get(ctx, key)
	}
	s.stat = func(ctx context.Context, key string) (blobstore.Info, error) {
		if err := call(ctx, key); err != nil {
			return blobstore.Info{}, err
		}
		return s.Memory.Stat(ctx, key)
	}
	s.putIfAbsent = func(ctx context.Context, key string, body io.ReaderAt, size int64, opts blobstore.PutOptions) (blobstore.Info, error) {
		if strings.HasPrefix(key, claimPrefix) {
			claims.Add(1)
		}
		if err := call(ctx, key); err != nil {
			return blobstore.Info{}, err
		}
		return s.Memory.PutIfAbsent(ctx, key, body, size, opts)
	}
	s.putIfMatch = func(ctx context.Context, key string, body []byte, version string) (blobstore.Info, error) {
		if err := call(ctx, key); err != nil {
			return blobstore.Info{}, err
		}
		return s.Memory.PutIfMatch(ctx, key, body, version)
	}
	return s, down, used, claims
}

// withUnprobed gives a test proxy the shared store s as one that could
// not be probed at start, probed again every 10 ms at first.
func withUnprobed(s blobstore.Store, replica string) func(*Options) {
	return func(o *Options) {
		o.Shared = SharedOptions{Store: s, Unprobed: true, ProbeRetry: 10 * time.Millisecond, Replica: replica}
	}
}

// withLog sends tp's log, INFO and up, to out.
func withLog(out io.Writer) func(*Options) {
	return func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(out, nil)) }
}

// sharedState is gemproxy_shared_store_state{state}.
func sharedState(tp *testProxy, st metrics.SharedState) float64 {
	return testutil.ToFloat64(tp.m.SharedStore.State.WithLabelValues(st.String()))
}

// lateUpstream serves sharedGem, its /info and a /versions that a test
// may change.
func lateUpstream(t *testing.T) (*indexUpstream, *countingUpstream) {
	iu := &indexUpstream{files: map[string][]byte{
		"/versions":   []byte(fleetVersions1),
		"/info/fleet": []byte("---\n" + infoLine("1.0.0", sharedGem)),
		sharedGemPath: sharedGem,
	}}
	return iu, newCountingUpstream(t, iu.ServeHTTP)
}

// TestSharedLateProbeSwitchesOn: a replica whose store does not answer at
// start serves a gem and /versions from the upstream at once, without a
// single call to the store (which would stall), and records the gem as
// pending. Once the store answers, the background probe switches the tier
// on in the conditional mode without a restart (gauge and INFO line), the
// gem is uploaded with no client request, and claims and the /versions
// pointer work: a cold gem is claimed, a new /versions is published.
func TestSharedLateProbeSwitchesOn(t *testing.T) {
	iu, up := lateUpstream(t)
	s, down, used, claims := stalledStore()
	down.Store(true)
	var logs bytes.Buffer
	out := &syncWriter{w: &logs, mu: new(sync.Mutex)}
	tp := newTestProxy(t, up.URL, withUnprobed(s, "a"), withPendingRetry(time.Hour), withLog(out))
	if g := sharedState(tp, metrics.SharedProbing); g != 1 {
		t.Fatalf("state probing: %v, want 1", g)
	}

	start := time.Now()
	getGem(t, tp)
	getVersions(t, tp, http.StatusOK)
	if d := time.Since(start); d >= lateStall/2 {
		t.Errorf("served after %s with the store down, want well under its stall of %s", d, lateStall)
	}
	if n := used.Load(); n != 0 {
		t.Fatalf("%d calls to the store before its probe succeeded, want none", n)
	}
	if keys, err := tp.store.PendingUploads(); err != nil || !slices.Equal(keys, []string{sharedGemPath}) {
		t.Fatalf("pending uploads with the tier off: %q, %v; want the gem", keys, err)
	}

	down.Store(false)
	waitFor(t, func() bool { return sharedState(tp, metrics.SharedConditional) == 1 })
	if g := sharedState(tp, metrics.SharedProbing); g != 0 {
		t.Errorf("state probing once on: %v, want 0", g)
	}
	waitUploaded(t, tp, s)

	// Claims: the gem, cold again here and in the store, is claimed.
	if err := errors.Join(tp.store.Delete(sharedGemPath), s.Memory.Delete(context.Background(), sharedGemKey)); err != nil {
		t.Fatal(err)
	}
	getGem(t, tp)
	// The /versions pointer: a new body from the upstream is published.
	iu.set("/versions", []byte(fleetVersions2))
	expire(tp)
	getVersions(t, tp, http.StatusOK)
	tp.Wait()
	if n := claims.Load(); n != 1 {
		t.Errorf("claims asked for the cold gem once on: %d, want 1", n)
	}
	if p := pointer(t, s.Memory); p.Generation != 1 || string(storedObject(t, s.Memory, p.Key)) != fleetVersions2 {
		t.Errorf("pointer once on: %+v, want generation 1 of the new /versions", p)
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	if !strings.Contains(logs.String(), `level=INFO msg="shared store on: gems, quick specs, claims and the /versions pointer shared" probed_late_after=`) ||
		!strings.Contains(logs.String(), "mode=conditional") {
		t.Errorf("no INFO line with the mode for the tier switched on:\n%s", logs.String())
	}
}

// TestSharedLateProbeRefused: a store that refuses the background probe
// with a permanent error (access denied) is logged and left out: the
// probing stops, the tier stays off (gauge), and the replica serves alone,
// keeping its fills pending for a later start: the worker of pending
// uploads, ticking meanwhile, does not try them.
func TestSharedLateProbeRefused(t *testing.T) {
	up := gemUpstream(t, nil)
	s := &faultyStore{Memory: blobstore.NewMemory()}
	var probes atomic.Int64
	s.putIfAbsent = func(context.Context, string, io.ReaderAt, int64, blobstore.PutOptions) (blobstore.Info, error) {
		probes.Add(1)
		return blobstore.Info{}, errors.New("403 AccessDenied")
	}
	var logs bytes.Buffer
	out := &syncWriter{w: &logs, mu: new(sync.Mutex)}
	tp := newTestProxy(t, up.URL, withUnprobed(s, "a"), withPendingRetry(10*time.Millisecond), withLog(out))
	waitFor(t, func() bool { return sharedState(tp, metrics.SharedOff) == 1 })
	getGem(t, tp)
	// Shown by the worker, which goes on to upload unless the tier is off.
	waitFor(t, func() bool { return testutil.ToFloat64(tp.m.SharedStore.PendingUploads) == 1 })
	tp.Wait()
	if n := probes.Load(); n != 1 {
		t.Errorf("%d calls to a store that refused the probe, want the probe's 1", n)
	}
	if g := sharedState(tp, metrics.SharedProbing); g != 0 {
		t.Errorf("state probing after the refusal: %v, want 0", g)
	}
	if n := tp.store.PendingCount(); n != 1 {
		t.Errorf("uploads pending: %d, want the gem", n)
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	if !strings.Contains(logs.String(), `level=WARN msg="shared store refused the probe; running without it until restarted"`) ||
		!strings.Contains(logs.String(), "403 AccessDenied") {
		t.Errorf("no WARN line for the refused probe:\n%s", logs.String())
	}
}
