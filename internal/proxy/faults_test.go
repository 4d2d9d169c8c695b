package proxy

import (
	"bytes"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/testupstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// faultTargets are the paths the fault matrix covers, one per cache class.
var faultTargets = []string{
	"/gems/faulty-1.0.0.gem",
	"/info/faulty",
	"/versions",
	"/names",
	"/quick/Marshal.4.8/faulty-1.0.0.gemspec.rz",
	"/specs.4.8.gz",
	"/api/v1/gems/faulty.json",
}

// faultMatrix lists each upstream misbehaviour with the statuses a client
// may get when gemproxy has no copy.
var faultMatrix = []struct {
	name  string
	fault testupstream.Fault
	want  []int
}{
	{"reset", testupstream.Fault{Reset: true}, []int{502}},
	{"truncated body", testupstream.Fault{Truncate: true}, []int{502}},
	{"lying Content-Length", testupstream.Fault{LieLength: 100}, []int{502}},
	{"stall mid-body", testupstream.Fault{StallAfter: 10}, []int{502, 504}},
	{"stall before body", testupstream.Fault{Stall: true}, []int{502, 504}},
	{"500", testupstream.Fault{Status: 500}, []int{502}},
	{"503", testupstream.Fault{Status: 503}, []int{502}},
	{"429", testupstream.Fault{Status: 429, RetryAfter: "7"}, []int{429}},
}

// newFaultProxy starts a testupstream with one gem and gemproxy in front
// of it with short upstream timeouts and the breaker off, then tweak.
func newFaultProxy(t *testing.T, tweak ...func(*Options)) (*testProxy, *testupstream.Server) {
	t.Helper()
	up, ts := testupstream.Start(t, testupstream.Options{MaxStall: 5 * time.Second})
	up.Publish(testupstream.GemSpec{Name: "faulty", Version: "1.0.0", Padding: 64 << 10}, nil)
	tp := newTestProxy(t, ts.URL, func(o *Options) {
		o.Upstream.IdleTimeout = 300 * time.Millisecond
		o.Upstream.FirstByteTimeout = 300 * time.Millisecond
		for _, c := range Classes {
			o.TunePolicy(c, func(pol *Policy) { pol.IdleTimeout, pol.FirstByteTimeout = 300*time.Millisecond, 300*time.Millisecond })
		}
		o.Breaker.Failures = -1
		for _, f := range tweak {
			f(o)
		}
	})
	return tp, up
}

func TestFaultMatrixColdMiss(t *testing.T) {
	for _, fm := range faultMatrix {
		t.Run(fm.name, func(t *testing.T) {
			tp, up := newFaultProxy(t)
			for _, path := range faultTargets {
				if path == "/gems/faulty-1.0.0.gem" {
					// The gem fill reads /info first: let that succeed so
					// the fault hits the gem body itself.
					tp.do(t, "GET", "/info/faulty")
					tp.store.Delete("/info/faulty")
				}
				up.SetFault(path, fm.fault)
				resp, body := tp.do(t, "GET", path)
				if !slices.Contains(fm.want, resp.StatusCode) {
					t.Errorf("%s: status %d %q, want one of %v", path, resp.StatusCode, body, fm.want)
				}
				if fm.fault.Status == 429 && (resp.Header.Get("Retry-After") != "7" || string(body) != "Retry later\n" ||
					resp.Header.Get("Content-Type") != "text/plain") {
					t.Errorf("%s: 429 not passed on verbatim: Retry-After %q, Content-Type %q, body %q",
						path, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"), body)
				}
				if e := tp.store.Peek(path); e != nil {
					t.Errorf("%s: an entry was stored from a faulty answer: status %d, %d bytes", path, e.Status, e.Size)
				}
				up.ClearFaults()
				// A later clean request succeeds and is stored.
				resp, body = tp.do(t, "GET", path)
				want, _ := up.Body(path)
				if resp.StatusCode != 200 || (want != nil && !bytes.Equal(body, want)) {
					t.Errorf("%s after the fault: %d, %d bytes", path, resp.StatusCode, len(body))
				}
				if tp.store.Peek(path) == nil {
					t.Errorf("%s: clean answer not stored", path)
				}
				tp.store.Delete("/info/faulty") // the gem fill cached it
			}
			verifyClean(t, tp)
		})
	}
}

func TestFaultMatrixStaleCopy(t *testing.T) {
	for _, fm := range faultMatrix {
		t.Run(fm.name, func(t *testing.T) {
			tp, up := newFaultProxy(t)
			for _, path := range faultTargets {
				tp.do(t, "GET", path)
			}
			before := map[string][]byte{}
			for _, path := range faultTargets {
				_, before[path] = tp.do(t, "GET", path)
			}
			tp.clock.Advance(10 * time.Minute) // past every TTL and SWR window
			for _, path := range faultTargets {
				up.SetFault(path, fm.fault)
				resp, body := tp.do(t, "GET", path)
				if resp.StatusCode != 200 || !bytes.Equal(body, before[path]) {
					t.Errorf("%s: %d %q; want the previous copy", path, resp.StatusCode, body)
				}
				up.ClearFaults()
			}
			verifyClean(t, tp)
		})
	}
}

func TestCorruptGemNeverStored(t *testing.T) {
	tp, up := newFaultProxy(t)
	up.SetFault("/gems/", testupstream.Fault{Corrupt: true})
	resp, body := tp.do(t, "GET", "/gems/faulty-1.0.0.gem")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("corrupted gem: %d %q", resp.StatusCode, body)
	}
	if tp.store.Peek("/gems/faulty-1.0.0.gem") != nil {
		t.Fatal("a corrupted gem was stored")
	}
	up.ClearFaults()
	resp, body = tp.do(t, "GET", "/gems/faulty-1.0.0.gem")
	want, _ := testupstream.BuildGem(testupstream.GemSpec{Name: "faulty", Version: "1.0.0", Padding: 64 << 10})
	if resp.StatusCode != 200 || !bytes.Equal(body, want) {
		t.Fatalf("after the fault: %d, %d bytes", resp.StatusCode, len(body))
	}
	verifyClean(t, tp)
}

// TestUpstreamContentEncoding: whatever Content-Encoding the upstream
// sends, a client that asked for no encoding gets the identity body, or a
// 502 for a coding gemproxy cannot decode; never encoded bytes as identity.
func TestUpstreamContentEncoding(t *testing.T) {
	tp, up := newFaultProxy(t)
	for _, ce := range []string{"gzip", "x-gzip", "X-GZIP", "gzip, identity", "identity, gzip", "gzip, gzip", "identity"} {
		for _, path := range faultTargets {
			tp.store.Delete(path) // the identity body from upstream now, not a copy from before
			_, want := tp.do(t, "GET", path)
			tp.store.Delete(path)
			up.SetFault(path, testupstream.Fault{ContentEncoding: ce})
			resp, body := tp.do(t, "GET", path)
			up.ClearFaults()
			if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, want) {
				t.Errorf("%s with Content-Encoding %q: %d, Content-Encoding %q, %d bytes; want 200 with the %d identity bytes",
					path, ce, resp.StatusCode, resp.Header.Get("Content-Encoding"), len(body), len(want))
			}
			if tp.store.Peek(path) == nil {
				t.Errorf("%s with Content-Encoding %q: the decoded body was not stored", path, ce)
			}
		}
	}
	for _, ce := range []string{"br", "deflate", "compress", "zstd", "gzip, br", "x-unknown"} {
		for _, path := range faultTargets {
			tp.do(t, "GET", "/info/faulty") // the gem's checksum, so the fault hits the gem itself
			tp.store.Delete(path)
			up.SetFault(path, testupstream.Fault{ContentEncoding: ce})
			if resp, body := tp.do(t, "GET", path); resp.StatusCode != http.StatusBadGateway {
				t.Errorf("%s with Content-Encoding %q: %d %q, want 502", path, ce, resp.StatusCode, body)
			}
			up.ClearFaults()
			if tp.store.Peek(path) != nil {
				t.Errorf("%s with Content-Encoding %q was stored", path, ce)
			}
		}
	}
	// A decoded body is checked like any other: a gzip stream that is
	// intact around a corrupted body is still refused.
	for _, path := range []string{"/info/faulty", "/versions", "/gems/faulty-1.0.0.gem"} {
		tp.do(t, "GET", "/info/faulty")
		tp.store.Delete(path)
		up.SetFault(path, testupstream.Fault{ContentEncoding: "x-gzip", Corrupt: true})
		if resp, _ := tp.do(t, "GET", path); resp.StatusCode != http.StatusBadGateway || tp.store.Peek(path) != nil {
			t.Errorf("%s corrupted inside x-gzip: %d, stored %v; want 502 and nothing stored", path, resp.StatusCode, tp.store.Peek(path) != nil)
		}
		up.ClearFaults()
	}
	verifyClean(t, tp)
}

// verifyClean fails when the cache holds anything partial or wrong.
func verifyClean(t *testing.T, tp *testProxy) {
	t.Helper()
	problems, err := tp.store.Verify()
	if err != nil || len(problems) > 0 {
		t.Fatalf("cache verify: %v %v", problems, err)
	}
}

// TestBreakerCountsBodyFailures: an upstream that sends headers and then
// cuts off or stalls is failing; after Failures of those the circuit opens
// and the upstream is left alone, and the in-flight gauge covered the body.
func TestBreakerCountsBodyFailures(t *testing.T) {
	for _, fm := range []struct {
		name  string
		fault testupstream.Fault
	}{
		{"truncated body", testupstream.Fault{Truncate: true}},
		{"stall mid-body", testupstream.Fault{StallAfter: 10}},
	} {
		t.Run(fm.name, func(t *testing.T) {
			tp, up := newFaultProxy(t, func(o *Options) {
				o.Breaker = BreakerOptions{Failures: 3, Backoff: time.Minute, MaxBackoff: time.Minute}
			})
			up.SetFault("/names", fm.fault)
			for i := 0; i < 3; i++ {
				tp.do(t, "GET", "/names")
			}
			if got := testutil.ToFloat64(tp.m.UpstreamCircuitState); got != metrics.CircuitOpen {
				t.Fatalf("circuit state %v after 3 body failures, want open", got)
			}
			before := up.Requests("/names")
			tp.do(t, "GET", "/names")
			if n := up.Requests("/names") - before; n != 0 {
				t.Errorf("the upstream got %d requests while the circuit was open", n)
			}
			if got := testutil.ToFloat64(tp.m.UpstreamInFlight); got != 0 {
				t.Errorf("upstream in flight %v after every body was closed", got)
			}
		})
	}
}
