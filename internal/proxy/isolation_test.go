package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gemproxy/gemproxy/internal/metrics"
)

// isolationGem is the gem the isolation tests' upstream serves as foo-bar.
var isolationGem = []byte("isolation gem bytes")

// bigAnswer is the size of the pass-through answer slow readers fetch:
// far more than the socket buffers between upstream, gemproxy and client.
const bigAnswer = 256 << 20

// isolationUpstream serves miniGems, reads push bodies whole before
// answering, and streams bigAnswer zero bytes for GET /api/v1/big.
func isolationUpstream(t *testing.T) *countingUpstream {
	t.Helper()
	gems := miniGems(isolationGem)
	return newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost:
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return
			}
			io.WriteString(w, "Successfully registered gem: foo-bar (1.0.0)")
		case r.URL.Path == "/api/v1/big":
			w.Header().Set("Content-Length", fmt.Sprint(bigAnswer))
			io.Copy(w, &zeroReader{n: bigAnswer})
		default:
			gems(w, r)
		}
	})
}

// circuitState is the breaker state gemproxy reports.
func (tp *testProxy) circuitState() float64 {
	return testutil.ToFloat64(tp.m.UpstreamCircuitState)
}

// settled waits until no upstream request is in flight.
func (tp *testProxy) settled(t *testing.T) {
	t.Helper()
	waitFor(t, func() bool { return testutil.ToFloat64(tp.m.UpstreamInFlight) == 0 })
}

// TestClientBodyFaultsNeverOpenTheCircuit: a malformed chunked body, a
// chunked body over the size limit, and an upload aborted mid-body are the
// client's fault. Many of them, from an anonymous client, leave the
// circuit closed, and a cold miss afterwards reaches the upstream.
func TestClientBodyFaultsNeverOpenTheCircuit(t *testing.T) {
	up := isolationUpstream(t)
	tp := newTestProxy(t, up.URL, func(o *Options) {
		o.MaxBodySize = 64 << 10
		o.Breaker = BreakerOptions{Failures: 2, Backoff: time.Minute, MaxBackoff: time.Minute}
	})
	chunked := "POST /api/v1/gems HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
	big := strings.Repeat("x", 48<<10)
	for i := 0; i < 5; i++ {
		if status, body := tp.doRaw(t, chunked+"5\r\nhello\r\nzz\r\n"); status != http.StatusBadRequest {
			t.Fatalf("malformed chunked body: %d %q, want 400", status, body)
		}
		if status, body := tp.doRaw(t, chunked+fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(big), big, len(big), big)); status != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked body over the limit: %d %q, want 413", status, body)
		}
		if got := tp.circuitState(); got != metrics.CircuitClosed {
			t.Fatalf("circuit state %v after %d malformed and %d over-limit bodies, want closed", got, i+1, i+1)
		}
		tp.abortedUpload(t)
	}
	tp.settled(t)
	if got := tp.circuitState(); got != metrics.CircuitClosed {
		t.Fatalf("circuit state %v after broken client bodies, want closed", got)
	}
	before := up.count("/info/foo-bar")
	if resp, body := tp.do(t, "GET", "/info/foo-bar"); resp.StatusCode != http.StatusOK {
		t.Fatalf("cold miss after broken client bodies: %d %q", resp.StatusCode, body)
	}
	if up.count("/info/foo-bar") != before+1 {
		t.Fatal("the cold miss did not reach the upstream")
	}
}

// abortedUpload starts a push with a Content-Length, sends part of the
// body (more than the 8 KiB fasthttp reads before calling the handler),
// and hangs up once the request is on its way upstream.
func (tp *testProxy) abortedUpload(t *testing.T) {
	t.Helper()
	tp.settled(t)
	conn, err := net.Dial("tcp", tp.listen(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /api/v1/gems HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\nContent-Length: %d\r\n\r\n%s", 60<<10, strings.Repeat("y", 16<<10))
	waitFor(t, func() bool { return testutil.ToFloat64(tp.m.UpstreamInFlight) > 0 })
}

// TestHalfOpenProbeIsAFill: once the back-off has elapsed, a client's
// write gets the circuit-open error without reaching the upstream and
// without taking the probe; the next cache fill is the probe and closes
// the circuit.
func TestHalfOpenProbeIsAFill(t *testing.T) {
	up := &switchable{}
	up.set(503, "")
	srv := newCountingUpstream(t, up.ServeHTTP)
	tp := newTestProxy(t, srv.URL, func(o *Options) {
		o.Breaker = BreakerOptions{Failures: 2, Backoff: 10 * time.Second, MaxBackoff: time.Minute}
	})
	for i := 0; i < 2; i++ {
		tp.do(t, "GET", "/api/v1/gems/miss.json")
	}
	if got := tp.circuitState(); got != metrics.CircuitOpen {
		t.Fatalf("circuit state %v after 2 failures, want open", got)
	}
	up.set(0, `{"v":1}`)
	tp.clock.Advance(11 * time.Second)
	calls := up.calls.Load()
	for i := 0; i < 3; i++ {
		resp, body := tp.do(t, "POST", "/api/v1/gems", "Authorization", "k")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "circuit open") {
			t.Fatalf("write while the circuit waits for a probe: %d %q, want 502 circuit open", resp.StatusCode, body)
		}
		resp, body = tp.do(t, "GET", "/api/v1/gems/private.json", "Cookie", "s=1")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "circuit open") {
			t.Fatalf("pass-through while the circuit waits for a probe: %d %q, want 502 circuit open", resp.StatusCode, body)
		}
	}
	if n := up.calls.Load() - calls; n != 0 {
		t.Fatalf("%d client requests reached the upstream as probes", n)
	}
	if _, body := tp.do(t, "GET", "/api/v1/gems/miss.json"); string(body) != `{"v":1}` {
		t.Fatalf("the probing fill got %q", body)
	}
	if got := tp.circuitState(); got != metrics.CircuitClosed {
		t.Fatalf("circuit state %v after a successful fill probe, want closed", got)
	}
	if resp, _ := tp.do(t, "POST", "/api/v1/gems", "Authorization", "k"); resp.StatusCode != http.StatusOK {
		t.Fatalf("write after the circuit closed: %d", resp.StatusCode)
	}
}

// dialSlow connects to addr with a small receive buffer, so that a client
// that reads slowly soon stops the stream instead of the kernel buffering
// it.
func dialSlow(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// trickle reads (or writes) 1 KiB per tick on conn until it is closed.
func trickle(conn net.Conn, write bool, tick <-chan time.Time) {
	buf := make([]byte, 1<<10)
	for range tick {
		var err error
		if write {
			_, err = conn.Write(buf)
		} else {
			_, err = conn.Read(buf)
		}
		if err != nil {
			return
		}
	}
}

// coldMiss fetches /info/foo-bar and the gem it lists, neither of them
// cached, and returns how long that took.
func coldMiss(t *testing.T, tp *testProxy, timeout time.Duration) time.Duration {
	t.Helper()
	tp.store.Delete("/info/foo-bar")
	tp.store.Delete("/gems/foo-bar-1.0.0.gem")
	client := &http.Client{Timeout: timeout}
	start := time.Now()
	for _, path := range []string{"/info/foo-bar", "/gems/foo-bar-1.0.0.gem"} {
		resp, err := client.Get("http://" + tp.listen(t) + path)
		if err != nil {
			t.Fatalf("cold miss %s: %v", path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != "MISS" {
			t.Fatalf("cold miss %s: %d %s %q %v", path, resp.StatusCode, resp.Header.Get("X-Cache"), body, err)
		}
	}
	return time.Since(start)
}

// TestClientPaceNeverHoldsAFillSlot: 64 clients reading a large
// pass-through answer slowly and 64 slow pushes, all in flight, take every
// pass-through slot, yet a cold miss (an /info and a gem) still completes
// in about its normal time, and the circuit stays closed, also once all
// those clients hang up.
func TestClientPaceNeverHoldsAFillSlot(t *testing.T) {
	const readers, pushers = 64, 64
	const idle = 10 * time.Second
	up := isolationUpstream(t)
	tp := newTestProxy(t, up.URL, func(o *Options) {
		o.Upstream.IdleTimeout = idle
		o.Upstream.FirstByteTimeout = idle
		o.Breaker = BreakerOptions{Failures: 2, Backoff: time.Minute, MaxBackoff: time.Minute}
	})
	addr := tp.listen(t)
	unloaded := coldMiss(t, tp, idle)

	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	var conns []net.Conn
	for i := 0; i < readers; i++ {
		conn := dialSlow(t, addr)
		io.WriteString(conn, "GET /api/v1/big HTTP/1.1\r\nHost: x\r\nCookie: s=1\r\n\r\n")
		go trickle(conn, false, ticker.C)
		conns = append(conns, conn)
	}
	for i := 0; i < pushers; i++ {
		conn := dialSlow(t, addr)
		fmt.Fprintf(conn, "POST /api/v1/gems HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\nContent-Length: %d\r\n\r\n%s", 1<<20, strings.Repeat("g", 16<<10))
		go trickle(conn, true, ticker.C)
		conns = append(conns, conn)
	}
	waitFor(t, func() bool { return testutil.ToFloat64(tp.m.UpstreamInFlight) == readers+pushers })

	loaded := coldMiss(t, tp, idle)
	bound := 20*unloaded + time.Second
	t.Logf("cold miss (/info + gem): %v unloaded, %v with %d slow readers and %d slow pushes in flight (bound %v)",
		unloaded, loaded, readers, pushers, bound)
	if loaded > bound {
		t.Errorf("cold miss took %v under client load, want at most %v", loaded, bound)
	}
	if got := tp.circuitState(); got != metrics.CircuitClosed {
		t.Errorf("circuit state %v under client load, want closed", got)
	}
	for _, conn := range conns {
		conn.Close()
	}
	tp.settled(t)
	if got := tp.circuitState(); got != metrics.CircuitClosed {
		t.Errorf("circuit state %v once the slow clients hung up, want closed", got)
	}
}

// TestStalledReaderIsCutWithoutBlame: a client that stops reading a
// pass-through answer has its stream cut after the idle timeout; that
// frees its slot at once (the only one here) without counting against the
// upstream.
func TestStalledReaderIsCutWithoutBlame(t *testing.T) {
	up := isolationUpstream(t)
	tp := newTestProxy(t, up.URL, func(o *Options) {
		o.Upstream.IdleTimeout = 300 * time.Millisecond
		o.Upstream.MaxPassThrough = 1
		o.Breaker = BreakerOptions{Failures: 1, Backoff: time.Minute, MaxBackoff: time.Minute}
	})
	conn := dialSlow(t, tp.listen(t))
	io.WriteString(conn, "GET /api/v1/big HTTP/1.1\r\nHost: x\r\nCookie: s=1\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("big pass-through answer: %v %v", resp, err)
	}
	// The client now reads nothing; the next pass-through needs the slot.
	client := &http.Client{Timeout: 5 * time.Second}
	req, _ := http.NewRequest("GET", "http://"+tp.listen(t)+"/api/v1/gems/foo-bar.json", nil)
	req.Header.Set("Cookie", "s=2")
	next, err := client.Do(req)
	if err != nil {
		t.Fatalf("a pass-through behind a client that stopped reading: %v", err)
	}
	next.Body.Close()
	if next.StatusCode != http.StatusOK {
		t.Fatalf("a pass-through behind a client that stopped reading: %d", next.StatusCode)
	}
	if got := tp.circuitState(); got != metrics.CircuitClosed {
		t.Fatalf("circuit state %v after a client stopped reading, want closed", got)
	}
	// The stalled client's stream was cut: it ends short.
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || n >= bigAnswer {
		t.Fatalf("stalled stream read %d of %d bytes, error %v; want it cut short", n, bigAnswer, err)
	}
}

// TestPassThroughUpstreamStallCounts: the other side of the idle cut: an
// upstream that stalls while a pass-through client waits for the answer is
// failing, and opens the circuit.
func TestPassThroughUpstreamStallCounts(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "4096")
		io.WriteString(w, strings.Repeat("s", 1024))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	tp := newTestProxy(t, up.URL, func(o *Options) {
		o.Upstream.IdleTimeout = 300 * time.Millisecond
		o.Breaker = BreakerOptions{Failures: 1, Backoff: time.Minute, MaxBackoff: time.Minute}
	})
	resp, err := http.Get("http://" + tp.listen(t) + "/api/v1/unlisted?x=1")
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a stalled upstream answer reached the client whole")
	}
	tp.settled(t)
	if got := tp.circuitState(); got != metrics.CircuitOpen {
		t.Fatalf("circuit state %v after the upstream stalled a pass-through, want open", got)
	}
}
