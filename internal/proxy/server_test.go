package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/testupstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestOversizedHeadersRejected(t *testing.T) {
	up := newCountingUpstream(t, miniGems(nil))
	tp := newTestProxy(t, up.URL, func(o *Options) { o.Server.MaxHeaderBytes = 4096 })
	status, _ := tp.doRaw(t, "GET /info/rack HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 8192)+"\r\n\r\n")
	if status != http.StatusRequestHeaderFieldsTooLarge && status != http.StatusBadRequest {
		t.Fatalf("status %d for 8 KiB of headers, want 431 or 400", status)
	}
	status, _ = tp.doRaw(t, "GET /info/"+strings.Repeat("a", 8192)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if status < 400 || status > 499 {
		t.Fatalf("status %d for an 8 KiB request line, want 4xx", status)
	}
	if up.total() != 0 {
		t.Fatal("oversized requests reached the upstream")
	}
}

func TestSlowLorisDropped(t *testing.T) {
	up := newCountingUpstream(t, miniGems(nil))
	tp := newTestProxy(t, up.URL, func(o *Options) { o.Server.ReadTimeout = 500 * time.Millisecond })
	conn, err := net.Dial("tcp", tp.listen(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /info/rack HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	closed := make(chan struct{})
	go func() {
		io.Copy(io.Discard, conn) // returns when the server drops us
		close(closed)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-closed:
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("slow client held the connection for %v", d)
			}
			return
		case <-tick.C:
			// One more header byte every 100ms: never a complete request.
			conn.Write([]byte("X"))
			if time.Since(start) > 5*time.Second {
				t.Fatal("slow-loris client still connected after 5s")
			}
		}
	}
}

func TestSlowDownloaderOfLargeGemNotCut(t *testing.T) {
	up, ts := testupstream.Start(t, testupstream.Options{})
	up.Publish(testupstream.GemSpec{Name: "big", Version: "1.0.0", Padding: 2 << 20}, nil)
	want, _ := testupstream.BuildGem(testupstream.GemSpec{Name: "big", Version: "1.0.0", Padding: 2 << 20})
	tp := newTestProxy(t, ts.URL, func(o *Options) { o.Server.ReadTimeout = 300 * time.Millisecond })
	tp.do(t, "GET", "/gems/big-1.0.0.gem") // warm
	conn, err := net.Dial("tcp", tp.listen(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(16 << 10)
	io.WriteString(conn, "GET /gems/big-1.0.0.gem HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReaderSize(conn, 16<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	buf := make([]byte, 256<<10)
	start := time.Now()
	for {
		// Read slowly: the whole download takes several read timeouts.
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("download cut after %d bytes and %v: %v", got.Len(), time.Since(start), err)
		}
		time.Sleep(30 * time.Millisecond)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("slow download got %d bytes, want %d", got.Len(), len(want))
	}
	if d := time.Since(start); d < time.Second {
		t.Fatalf("download took only %v: not slow enough to prove anything", d)
	}
}

func TestMaxConnections(t *testing.T) {
	up := newCountingUpstream(t, miniGems(nil))
	tp := newTestProxy(t, up.URL, func(o *Options) { o.Server.MaxConnections = 2 })
	addr := tp.listen(t)
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil {
			t.Fatal(err)
		}
		held = append(held, c) // keep-alive: the connection stays open
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return // refused outright: fine
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil && resp.StatusCode == 200 {
		t.Fatalf("a third connection was served with max_connections = 2 (%d held)", len(held))
	}
}

// TestRequestSmugglingRefused: two different Content-Lengths, or
// Content-Length with chunked, must not let a second request ride in the
// body of the first (RFC 9112 §6.1, §6.3): the smuggled request never
// reaches the upstream.
func TestRequestSmugglingRefused(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tp := newTestProxy(t, up.URL)
	tp.listen(t)
	smuggled := "GET /api/v1/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	for name, head := range map[string]string{
		"two Content-Lengths": "POST /api/v1/gems HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\nContent-Length: " +
			fmt.Sprint(len(smuggled)) + "\r\nContent-Length: 0\r\n\r\n",
		"Content-Length with chunked": "POST /api/v1/gems HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\nContent-Length: " +
			fmt.Sprint(len(smuggled)+5) + "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", tp.listen(t))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(conn, head+smuggled)
			io.Copy(io.Discard, conn) // until gemproxy closes the connection
			if n := up.count("/api/v1/smuggled"); n != 0 {
				t.Fatalf("the smuggled request reached the upstream %d times", n)
			}
		})
	}
}

// TestControlBytesInHeadersAreTheClientsFault: a control byte in a header
// value is a 400, never an upstream request, and never counts against the
// upstream: five of them must not open the circuit for everyone.
func TestControlBytesInHeadersAreTheClientsFault(t *testing.T) {
	up := newCountingUpstream(t, miniGems([]byte("gem")))
	tp := newTestProxy(t, up.URL, func(o *Options) {
		o.Breaker = BreakerOptions{Failures: 2, Backoff: time.Minute, MaxBackoff: time.Minute}
	})
	tp.listen(t)
	for _, req := range []string{
		"GET /api/v1/zzz HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
		"GET /api/v1/zzz HTTP/1.1\r\nHost: x\r\nX(A): b\r\n\r\n",
		"GET /api/v1/zzz HTTP/1.1\r\nHost: x\r\nAuthorization: k\x7f\r\n\r\n",
		"POST /api/v1/gems HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\nX-A: \x1b[31m\r\nContent-Length: 0\r\n\r\n",
		"GET /info/newgem HTTP/1.1\r\nHost: x\r\nUser-Agent: bundler\x01\r\n\r\n",
		"GET /info/newgem2 HTTP/1.1\r\nHost: x\r\nUser-Agent: bundler\x01\r\n\r\n",
	} {
		if status, body := tp.doRaw(t, req); status != http.StatusBadRequest {
			t.Errorf("%q: %d %q, want 400", req, status, body)
		}
	}
	if got := testutil.ToFloat64(tp.m.UpstreamCircuitState); got != metrics.CircuitClosed {
		t.Fatalf("circuit state %v after client mistakes, want closed", got)
	}
	if status, _ := tp.doRaw(t, "GET /info/foo-bar HTTP/1.1\r\nHost: x\r\n\r\n"); status != http.StatusOK {
		t.Fatalf("an innocent request afterwards: %d", status)
	}
}
