package proxy

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// sharedGemPath is the gem the shared-tier tests fill, and sharedGemKey
// its object key.
const (
	sharedGemPath = "/gems/fleet-1.0.0.gem"
	sharedGemKey  = "gems/fleet-1.0.0.gem"
)

// sharedGem is the body of sharedGemPath: 1.6 MB, so that its fills stream
// (liveBodyMin) and are published only once stored.
var sharedGem = bytes.Repeat([]byte("fleet gem "), 160000)

// gemUpstream serves sharedGem and its /info; gate, when not nil, holds
// every gem answer until it is closed.
func gemUpstream(t *testing.T, gate chan struct{}) *countingUpstream {
	info := "---\n" + infoLine("1.0.0", sharedGem)
	return newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/info/fleet":
			compactHeaders(w, []byte(info))
			io.WriteString(w, info)
		case sharedGemPath:
			if gate != nil {
				<-gate
			}
			w.Write(sharedGem)
		default:
			http.NotFound(w, r)
		}
	})
}

// withShared gives a test proxy the shared store s in mode.
func withShared(s blobstore.Store, mode blobstore.Mode, replica string) func(*Options) {
	return func(o *Options) { o.Shared = SharedOptions{Store: s, Mode: mode, Replica: replica} }
}

// getGem fetches sharedGemPath through tp and checks the answer.
func getGem(t *testing.T, tp *testProxy) {
	t.Helper()
	resp, body := tp.do(t, "GET", sharedGemPath)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, sharedGem) {
		t.Fatalf("GET %s: %d, %d bytes, want 200 and %d bytes", sharedGemPath, resp.StatusCode, len(body), len(sharedGem))
	}
}

// storedObject is the object at key in s, nil when there is none.
func storedObject(t *testing.T, s blobstore.Store, key string) []byte {
	t.Helper()
	rc, _, err := s.Get(context.Background(), key)
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putObject stores body at key in s.
func putObject(t *testing.T, s blobstore.Store, key string, body []byte) {
	t.Helper()
	if _, err := s.PutIfAbsent(context.Background(), key, bytes.NewReader(body), int64(len(body)), blobstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

// sharedRequests is gemproxy_shared_store_requests_total{op,result}.
func sharedRequests(tp *testProxy, op metrics.SharedOp, r metrics.SharedResult) float64 {
	return testutil.ToFloat64(tp.m.SharedStore.Requests.WithLabelValues(op.String(), r.String()))
}

// TestSharedWriteOnceThenReadThrough: a cold gem is fetched upstream once,
// written to the shared store from the local copy (and its claim removed),
// and a second replica on an empty data directory serves it from the store
// with no upstream fetch of the gem, counting its bytes as read from the
// store, not from the upstream.
func TestSharedWriteOnceThenReadThrough(t *testing.T) {
	up := gemUpstream(t, nil)
	s := blobstore.NewMemory()
	a := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
	getGem(t, a)
	a.Wait()
	if got := storedObject(t, s, sharedGemKey); !bytes.Equal(got, sharedGem) {
		t.Fatalf("shared store holds %d bytes at %s, want the gem's %d", len(got), sharedGemKey, len(sharedGem))
	}
	if claim := storedObject(t, s, claimPrefix+sharedGemKey); claim != nil {
		t.Fatalf("the claim was left behind: %s", claim)
	}
	b := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "b"))
	getGem(t, b)
	getGem(t, b) // a local hit now
	b.Wait()
	if n := up.count(sharedGemPath); n != 1 {
		t.Fatalf("upstream fetches of the gem: %d, want 1", n)
	}
	if n := sharedRequests(b, metrics.SharedGet, metrics.SharedOK); n != 1 {
		t.Fatalf("replica b read the store %v times, want 1", n)
	}
	if n := sharedRequests(b, metrics.SharedPut, metrics.SharedOK); n != 0 {
		t.Fatalf("replica b wrote %v objects, want none", n)
	}
	if n := testutil.ToFloat64(b.m.UpstreamBytes("gem")); n != 0 {
		t.Errorf("replica b counted %v upstream bytes of gems, want 0", n)
	}
	if n := testutil.ToFloat64(b.m.SharedStore.Bytes.WithLabelValues(metrics.SharedGet.String())); n != float64(len(sharedGem)) {
		t.Errorf("replica b counted %v bytes read from the store, want %d", n, len(sharedGem))
	}
}

// corruptGem is sharedGem with one bit flipped.
func corruptGem() []byte {
	bad := bytes.Clone(sharedGem)
	bad[100] ^= 1
	return bad
}

// TestSharedCorruptObjectReplaced: an object in the store that fails
// verification is served to nobody, is replaced by the verified copy that
// the replica fetched upstream, and a fresh replica then serves the gem
// from the store with no upstream fetch.
func TestSharedCorruptObjectReplaced(t *testing.T) {
	for _, mode := range []blobstore.Mode{blobstore.Conditional, blobstore.Unconditional} {
		t.Run(mode.String(), func(t *testing.T) {
			up := gemUpstream(t, nil)
			s := blobstore.NewMemory()
			putObject(t, s, sharedGemKey, corruptGem())
			a := newTestProxy(t, up.URL, withShared(s, mode, "a"))
			getGem(t, a)
			a.Wait()
			if got := storedObject(t, s, sharedGemKey); !bytes.Equal(got, sharedGem) {
				t.Fatalf("the store holds %d bytes at %s that are not the verified gem (corrupt ones: %v)", len(got), sharedGemKey, bytes.Equal(got, corruptGem()))
			}
			if n := testutil.ToFloat64(a.m.SharedStore.CorruptReplaced); n != 1 {
				t.Errorf("corrupt objects replaced: %v, want 1", n)
			}
			b := newTestProxy(t, up.URL, withShared(s, mode, "b"))
			getGem(t, b)
			b.Wait()
			if n := up.count(sharedGemPath); n != 1 {
				t.Fatalf("upstream fetches of the gem: %d, want 1 (replica a's)", n)
			}
		})
	}
}

// TestSharedCorruptQuickSpecReplaced: a quick spec in the store that is
// not a zlib stream is replaced by the upstream's, which a fresh replica
// then reads from the store.
func TestSharedCorruptQuickSpecReplaced(t *testing.T) {
	const path, key = "/quick/Marshal.4.8/fleet-1.0.0.gemspec.rz", "quick/Marshal.4.8/fleet-1.0.0.gemspec.rz"
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(bytes.Repeat([]byte("gemspec "), 1000))
	zw.Close()
	spec := z.Bytes()
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		w.Write(spec)
	})
	s := blobstore.NewMemory()
	putObject(t, s, key, []byte("not a zlib stream"))
	for _, replica := range []string{"a", "fresh"} {
		tp := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, replica))
		if resp, body := tp.do(t, "GET", path); resp.StatusCode != http.StatusOK || !bytes.Equal(body, spec) {
			t.Fatalf("replica %s: %d, %q", replica, resp.StatusCode, body)
		}
		tp.Wait()
	}
	if got := storedObject(t, s, key); !bytes.Equal(got, spec) {
		t.Fatalf("the store holds %q, not the upstream's quick spec", got)
	}
	if n := up.count(path); n != 1 {
		t.Fatalf("upstream fetches of the quick spec: %d, want 1", n)
	}
}

// TestSharedCorruptObjectReplacedMeanwhile: a replica that read a corrupt
// object does not delete the verified copy that another replica wrote in
// its place meanwhile.
func TestSharedCorruptObjectReplacedMeanwhile(t *testing.T) {
	up := gemUpstream(t, nil)
	s := blobstore.NewMemory()
	bad := corruptGem()
	putObject(t, s, sharedGemKey, bad)
	badInfo, err := s.Stat(context.Background(), sharedGemKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(context.Background(), sharedGemKey); err != nil {
		t.Fatal(err)
	}
	putObject(t, s, sharedGemKey, sharedGem) // another replica's verified copy
	tp := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
	if err := tp.fill.shared.dropCorrupt(context.Background(), sharedGemKey, badInfo.Version); !errors.Is(err, blobstore.ErrExists) {
		t.Errorf("dropCorrupt = %v, want ErrExists: it would write over another version", err)
	}
	if got := storedObject(t, s, sharedGemKey); !bytes.Equal(got, sharedGem) {
		t.Fatalf("the verified copy was lost: the store holds %d bytes", len(got))
	}
	if n := sharedRequests(tp, metrics.SharedDelete, metrics.SharedOK); n != 0 {
		t.Errorf("%v deletes, want none", n)
	}
}

// TestSharedObjectVerified: an object in the store whose bytes do not
// match the gem's checksum is refused; the gem comes from the upstream.
func TestSharedObjectVerified(t *testing.T) {
	up := gemUpstream(t, nil)
	s := blobstore.NewMemory()
	bad := bytes.Clone(sharedGem)
	bad[100] ^= 1
	putObject(t, s, sharedGemKey, bad)
	tp := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
	getGem(t, tp)
	getGem(t, tp)
	if n := up.count(sharedGemPath); n != 1 {
		t.Fatalf("upstream fetches of the gem: %d, want 1", n)
	}
	if n := testutil.ToFloat64(tp.m.ChecksumFailure(metrics.ChecksumMismatch)); n != 1 {
		t.Fatalf("checksum mismatches counted: %v, want 1", n)
	}
}

// failingStore fails every call with err.
type failingStore struct{ err error }

// Get implements blobstore.Store.
func (f failingStore) Get(context.Context, string) (io.ReadCloser, blobstore.Info, error) {
	return nil, blobstore.Info{}, f.err
}

// Stat implements blobstore.Store.
func (f failingStore) Stat(context.Context, string) (blobstore.Info, error) {
	return blobstore.Info{}, f.err
}

// PutIfAbsent implements blobstore.Store.
func (f failingStore) PutIfAbsent(context.Context, string, io.ReaderAt, int64, blobstore.PutOptions) (blobstore.Info, error) {
	return blobstore.Info{}, f.err
}

// PutIfMatch implements blobstore.Store.
func (f failingStore) PutIfMatch(context.Context, string, []byte, string) (blobstore.Info, error) {
	return blobstore.Info{}, f.err
}

// Delete implements blobstore.Store.
func (f failingStore) Delete(context.Context, string) error { return f.err }

// TestSharedStoreFailureFallsBack: a store that fails every call costs
// nothing but metrics and one warning: gems come from the upstream.
func TestSharedStoreFailureFallsBack(t *testing.T) {
	up := gemUpstream(t, nil)
	var logs bytes.Buffer
	out := &syncWriter{w: &logs, mu: new(sync.Mutex)}
	tp := newTestProxy(t, up.URL, withShared(failingStore{fmt.Errorf("%w: down", blobstore.ErrUnavailable)}, blobstore.Conditional, "a"),
		func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(out, nil)) })
	getGem(t, tp)
	tp.Wait()
	if n := up.count(sharedGemPath); n != 1 {
		t.Fatalf("upstream fetches of the gem: %d, want 1", n)
	}
	for _, op := range []metrics.SharedOp{metrics.SharedGet, metrics.SharedPut} {
		if n := sharedRequests(tp, op, metrics.SharedError); n < 1 {
			t.Errorf("%s errors counted: %v, want at least 1", op, n)
		}
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	if n := strings.Count(logs.String(), "shared store failed"); n != 1 {
		t.Errorf("%d warnings about the store, want 1:\n%s", n, logs.String())
	}
}

// TestSharedClaimCoalescesReplicas: while replica a fetches a cold gem
// under its claim, replica b waits for the object instead of asking the
// upstream; the gem is fetched once.
func TestSharedClaimCoalescesReplicas(t *testing.T) {
	gate := make(chan struct{})
	up := gemUpstream(t, gate)
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release) // before the upstream closes, even when the test fails
	s := blobstore.NewMemory()
	a := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
	b := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "b"))
	aDone := make(chan struct{})
	go func() {
		defer close(aDone)
		getGem(t, a)
	}()
	waitFor(t, func() bool { return storedObject(t, s, claimPrefix+sharedGemKey) != nil })
	bDone := make(chan struct{})
	go func() {
		defer close(bDone)
		getGem(t, b)
	}()
	waitFor(t, func() bool { return testutil.ToFloat64(b.m.SharedStore.CoalescedWaits) == 1 })
	release()
	<-aDone
	<-bDone
	if n := up.count(sharedGemPath); n != 1 {
		t.Fatalf("upstream fetches of the gem: %d, want 1", n)
	}
}

// TestSharedClaimExpires: a claim left by a replica that died holds the
// others back for its lifetime only; then one takes it over, fetches the
// gem and releases the claim.
func TestSharedClaimExpires(t *testing.T) {
	up := gemUpstream(t, nil)
	s := blobstore.NewMemory()
	dead := mustJSON(claimBody{Replica: "dead", LifetimeMillis: 200})
	putObject(t, s, claimPrefix+sharedGemKey, dead)
	tp := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
	start := time.Now()
	getGem(t, tp)
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Fatalf("served after %s, before the dead claim expired", d)
	}
	tp.Wait()
	if claim := storedObject(t, s, claimPrefix+sharedGemKey); claim != nil {
		t.Fatalf("the claim taken over was left behind: %s", claim)
	}
	if !bytes.Equal(storedObject(t, s, sharedGemKey), sharedGem) {
		t.Fatal("the gem was not written to the store")
	}
}
