package s3store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/blobstore/blobtest"
	"github.com/gemproxy/gemproxy/internal/breaker"
	"github.com/gemproxy/gemproxy/internal/testweed"
)

// newTestStore builds a store on endpoint and bucket with test
// credentials (never the machine's chain, which could reach for an
// instance role), then applies tweak.
func newTestStore(t testing.TB, endpoint, bucket string, tweak func(*Options)) *Store {
	t.Helper()
	opts := Options{
		Bucket:      bucket,
		Endpoint:    endpoint,
		Region:      "us-east-1",
		Credentials: testweed.Credentials(),
		Logger:      slog.New(slog.DiscardHandler),
	}
	if tweak != nil {
		tweak(&opts)
	}
	s, err := New(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// breakerOff disables the breaker, for tests that count on every call
// reaching the store.
var breakerOff = breaker.Options{Failures: -1}

// newFakeStore is a store on a fresh fake, with one attempt per call and
// short deadlines unless tweak says otherwise.
func newFakeStore(t *testing.T, tweak func(*Options)) (*Store, *fakeS3) {
	f := newFakeS3(t)
	return newTestStore(t, f.srv.URL, fakeBucket, func(o *Options) {
		o.MaxAttempts = 1
		o.Timeout = 300 * time.Millisecond
		o.Breaker = breakerOff
		if tweak != nil {
			tweak(o)
		}
	}), f
}

// TestFakeCompliance runs the compliance suite on the fake, which checks
// the fake as much as the client; the same suite runs on SeaweedFS.
func TestFakeCompliance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Store {
		s, _ := newFakeStore(t, func(o *Options) { o.Timeout = 10 * time.Second })
		return s
	})
}

// TestProbeDetectsUnconditionalStore: a server that ignores If-None-Match
// and If-Match probes as Unconditional, and the probe object is removed.
func TestProbeDetectsUnconditionalStore(t *testing.T) {
	s, f := newFakeStore(t, nil)
	f.ignoreConditions.Store(true)
	mode, err := blobstore.Probe(t.Context(), s)
	if err != nil || mode != blobstore.Unconditional {
		t.Fatalf("Probe = %v, %v; want unconditional", mode, err)
	}
	if n := f.count(); n != 0 {
		t.Fatalf("the probe left %d objects", n)
	}
	f.ignoreConditions.Store(false)
	if mode, err := blobstore.Probe(t.Context(), s); err != nil || mode != blobstore.Conditional {
		t.Fatalf("Probe of a conditional store = %v, %v", mode, err)
	}
}

// TestPrefix: keys are stored under the prefix.
func TestPrefix(t *testing.T) {
	s, f := newFakeStore(t, func(o *Options) { o.Prefix = "fleet-a" })
	if _, err := s.PutIfAbsent(t.Context(), "gems/a-1.gem", bytes.NewReader([]byte("x")), 1, blobstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	_, ok := f.objects["fleet-a/gems/a-1.gem"]
	f.mu.Unlock()
	if !ok {
		t.Fatalf("object not under the prefix: %v", f.objects)
	}
}

// fault is an injected behaviour of the fake: it returns true when it
// answered the request itself.
type fault = func(f *fakeS3, w http.ResponseWriter, r *http.Request) bool

// answer is a fault that answers every request with status.
func answer(status int) fault {
	return func(_ *fakeS3, w http.ResponseWriter, r *http.Request) bool {
		s3Error(w, status, "Injected"+strconv.Itoa(status))
		return true
	}
}

// reset is a fault that drops the connection without an answer.
func reset(_ *fakeS3, w http.ResponseWriter, r *http.Request) bool {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
	return true
}

// conditionalOnly applies fn to conditional writes only.
func conditionalOnly(fn fault) fault {
	return func(f *fakeS3, w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Match") == "" {
			return false
		}
		return fn(f, w, r)
	}
}

// inject makes fn the fake's fault hook.
func inject(f *fakeS3, fn fault) {
	f.setFault(func(w http.ResponseWriter, r *http.Request) bool { return fn(f, w, r) })
}

// TestFaults: what each call returns when the store fails in each way.
func TestFaults(t *testing.T) {
	tests := []struct {
		name  string
		fault fault
		// want is the error each call must wrap; nil means any error but
		// the sentinels of the contract (a permanent one).
		want error
	}{
		{"503", answer(http.StatusServiceUnavailable), blobstore.ErrUnavailable},
		{"500", answer(http.StatusInternalServerError), blobstore.ErrUnavailable},
		{"429 throttle", answer(http.StatusTooManyRequests), blobstore.ErrUnavailable},
		{"connection reset", reset, blobstore.ErrUnavailable},
		{"stall", (*fakeS3).stall, blobstore.ErrUnavailable},
		{"403 denied", answer(http.StatusForbidden), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, f := newFakeStore(t, nil)
			put := []byte("gem bytes")
			ptr, err := s.PutIfAbsent(t.Context(), "versions/pointer", bytes.NewReader(put), int64(len(put)), blobstore.PutOptions{})
			if err != nil {
				t.Fatal(err)
			}
			inject(f, tc.fault)
			calls := map[string]func() error{
				"Get": func() error {
					_, _, err := s.Get(t.Context(), "gems/a-1.gem")
					return err
				},
				"Stat": func() error { _, err := s.Stat(t.Context(), "gems/a-1.gem"); return err },
				"PutIfAbsent": func() error {
					_, err := s.PutIfAbsent(t.Context(), "gems/a-1.gem", bytes.NewReader(put), int64(len(put)), blobstore.PutOptions{})
					return err
				},
				"PutIfMatch": func() error {
					_, err := s.PutIfMatch(t.Context(), "versions/pointer", []byte("gen 2"), ptr.Version)
					return err
				},
				"Delete": func() error { return s.Delete(t.Context(), "gems/a-1.gem") },
			}
			for name, call := range calls {
				start := time.Now()
				err := call()
				if took := time.Since(start); took > 3*time.Second {
					t.Errorf("%s took %s", name, took)
				}
				switch {
				case err == nil:
					t.Errorf("%s succeeded", name)
				case tc.want != nil && !errors.Is(err, tc.want):
					t.Errorf("%s = %v; want %v", name, err, tc.want)
				case tc.want == nil && isContractSentinel(err):
					t.Errorf("%s = %v; want a permanent error", name, err)
				}
			}
		})
	}
}

// isContractSentinel reports whether err is one of the classified errors.
func isContractSentinel(err error) bool {
	for _, s := range []error{blobstore.ErrUnavailable, blobstore.ErrNotFound, blobstore.ErrExists, blobstore.ErrConflict} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// TestConcurrentConditionalConflict: a 409 ConditionalRequestConflict on
// a conditional write is a lost race, not a failure.
func TestConcurrentConditionalConflict(t *testing.T) {
	s, f := newFakeStore(t, func(o *Options) { o.Breaker.Failures = 1 })
	ptr, err := s.PutIfAbsent(t.Context(), "versions/pointer", bytes.NewReader([]byte("gen 1")), 5, blobstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inject(f, conditionalOnly(answer(http.StatusConflict)))
	if _, err := s.PutIfAbsent(t.Context(), "gems/a-1.gem", bytes.NewReader([]byte("x")), 1, blobstore.PutOptions{}); !errors.Is(err, blobstore.ErrExists) {
		t.Fatalf("PutIfAbsent answered 409 = %v; want ErrExists", err)
	}
	if _, err := s.PutIfMatch(t.Context(), "versions/pointer", []byte("gen 2"), ptr.Version); !errors.Is(err, blobstore.ErrConflict) {
		t.Fatalf("PutIfMatch answered 409 = %v; want ErrConflict", err)
	}
	if _, err := s.Stat(t.Context(), "versions/pointer"); err != nil {
		t.Fatalf("a lost race opened the breaker: %v", err)
	}
}

// TestTransientErrorRetried: one 503 is retried and the call succeeds.
func TestTransientErrorRetried(t *testing.T) {
	s, f := newFakeStore(t, func(o *Options) { o.MaxAttempts = 3; o.Timeout = 10 * time.Second })
	var failed atomic.Bool
	f.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if failed.Swap(true) {
			return false
		}
		return answer(http.StatusServiceUnavailable)(f, w, r)
	})
	if _, err := s.PutIfAbsent(t.Context(), "gems/a-1.gem", bytes.NewReader([]byte("x")), 1, blobstore.PutOptions{}); err != nil {
		t.Fatalf("PutIfAbsent after one 503: %v", err)
	}
	if n := f.requests.Load(); n != 2 {
		t.Fatalf("%d requests; want 2 (a 503 and its retry)", n)
	}
}

// TestBodyFaults: a Get body cut short or stalled is an error from Read,
// classified ErrUnavailable, never a clean io.EOF.
func TestBodyFaults(t *testing.T) {
	const size = 64 << 10
	tests := []struct {
		name string
		// after is what the fault does once half the body is sent.
		after fault
	}{
		{"cut", reset},
		{"stall", (*fakeS3).stall},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, f := newFakeStore(t, func(o *Options) { o.MinRate = 1 << 30 })
			f.setFault(func(w http.ResponseWriter, r *http.Request) bool {
				w.Header().Set("Content-Length", strconv.Itoa(size))
				w.Header().Set("ETag", `"x"`)
				w.Write(make([]byte, size/2))
				w.(http.Flusher).Flush()
				return tc.after(f, w, r)
			})
			rc, info, err := s.Get(t.Context(), "gems/a-1.gem")
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			n, err := io.Copy(io.Discard, rc)
			if !errors.Is(err, blobstore.ErrUnavailable) || n >= info.Size {
				t.Fatalf("read %d of %d bytes, then %v; want ErrUnavailable", n, info.Size, err)
			}
		})
	}
}

// TestBreaker: consecutive failures open the breaker, after which calls
// fail at once without reaching the store; lost races and misses do not
// count as failures.
func TestBreaker(t *testing.T) {
	s, f := newFakeStore(t, func(o *Options) {
		o.Breaker = breaker.Options{Failures: 2, Backoff: time.Hour, MaxBackoff: time.Hour}
	})
	for range 3 {
		if _, err := s.Stat(t.Context(), "gems/missing.gem"); !errors.Is(err, blobstore.ErrNotFound) {
			t.Fatalf("Stat of a missing object = %v", err)
		}
	}
	inject(f, answer(http.StatusInternalServerError))
	for range 2 {
		if _, err := s.Stat(t.Context(), "gems/a-1.gem"); !errors.Is(err, blobstore.ErrUnavailable) {
			t.Fatalf("Stat = %v; want ErrUnavailable", err)
		}
	}
	before := f.requests.Load()
	_, err := s.Stat(t.Context(), "gems/a-1.gem")
	if !errors.Is(err, blobstore.ErrUnavailable) || !errors.Is(err, breaker.ErrOpen) {
		t.Fatalf("Stat with the breaker open = %v; want ErrUnavailable and breaker.ErrOpen", err)
	}
	if f.requests.Load() != before {
		t.Fatal("a call reached the store with the breaker open")
	}
}

// TestCallerCancel: a caller that gives up gets its context's error, and
// the breaker does not count it against the store.
func TestCallerCancel(t *testing.T) {
	s, f := newFakeStore(t, func(o *Options) {
		o.Timeout = time.Minute
		o.Breaker = breaker.Options{Failures: 1, Backoff: time.Hour, MaxBackoff: time.Hour}
	})
	arrived := make(chan struct{}, 1)
	f.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		arrived <- struct{}{}
		return f.stall(w, r)
	})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-arrived
		cancel()
	}()
	if _, err := s.Stat(ctx, "gems/a-1.gem"); !errors.Is(err, context.Canceled) || errors.Is(err, blobstore.ErrUnavailable) {
		t.Fatalf("cancelled Stat = %v; want context.Canceled only", err)
	}
	f.setFault(nil)
	if _, err := s.Stat(t.Context(), "gems/a-1.gem"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat after a cancelled call = %v; want ErrNotFound (breaker closed)", err)
	}
}

// TestProbeRetryable: the probe of a server that is down, closed, failing
// with a 5xx or stalling (past the store's timeout, or past the caller's
// deadline) fails with an error worth probing again after; one that
// denies access or has no such bucket fails for good.
func TestProbeRetryable(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fault     func(f *fakeS3, w http.ResponseWriter, r *http.Request) bool
		closed    bool
		retryable bool
		// deadline, when set, bounds the probe, shorter than the store's
		// timeout.
		deadline time.Duration
	}{
		{"503", func(_ *fakeS3, w http.ResponseWriter, _ *http.Request) bool {
			s3Error(w, http.StatusServiceUnavailable, "SlowDown")
			return true
		}, false, true, 0},
		{"stall", (*fakeS3).stall, false, true, 0},
		{"stall past the deadline", (*fakeS3).stall, false, true, 50 * time.Millisecond},
		{"closed", nil, true, true, 0},
		{"access denied", func(_ *fakeS3, w http.ResponseWriter, _ *http.Request) bool {
			s3Error(w, http.StatusForbidden, "AccessDenied")
			return true
		}, false, false, 0},
		{"no such bucket", func(_ *fakeS3, w http.ResponseWriter, _ *http.Request) bool {
			s3Error(w, http.StatusNotFound, "NoSuchBucket")
			return true
		}, false, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, f := newFakeStore(t, nil)
			if tc.fault != nil {
				f.setFault(func(w http.ResponseWriter, r *http.Request) bool { return tc.fault(f, w, r) })
			}
			if tc.closed {
				f.srv.Close()
			}
			ctx := t.Context()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			_, err := blobstore.Probe(ctx, s)
			if err == nil || blobstore.ProbeRetryable(err) != tc.retryable {
				t.Fatalf("Probe: %v; retryable %v, want %v", err, blobstore.ProbeRetryable(err), tc.retryable)
			}
		})
	}
}
