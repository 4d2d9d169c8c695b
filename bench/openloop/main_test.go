package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	prev := -1
	for v := uint64(0); v < 1<<20; v += 1 + v/97 {
		b := bucketOf(v)
		if b < prev {
			t.Fatalf("bucketOf(%d) = %d, below the bucket of a smaller value (%d)", v, b, prev)
		}
		prev = b
		if top := bucketTop(b); top < v || float64(top-v) > float64(v)/subBuckets+1 {
			t.Fatalf("bucketTop(bucketOf(%d)) = %d: not the top of a bucket 1/%d wide", v, top, subBuckets)
		}
	}
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	p := h.percentiles()
	if p.P50 < 500 || p.P50 > 508 || p.P99 < 990 || p.P99 > 1000 || p.Max != 1000 {
		t.Fatalf("percentiles of 1..1000 µs = %+v", p)
	}
}

func TestWorkerReadsAnswers(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	answers := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" +
		"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\ncontent-length: 99\r\n\r\n" +
		"HTTP/1.1 206 Partial Content\r\nContent-Length: 3\r\n\r\nabc"
	go func() { _, _ = server.Write([]byte(answers)) }()
	w := &worker{conn: client, buf: make([]byte, 80)}
	for _, want := range []int{200, 304, 206} {
		w.expect = want
		if err := w.readAnswer(); err != nil {
			t.Fatalf("answer %d: %v", want, err)
		}
	}
	if w.r != w.w {
		t.Fatalf("%d bytes left unread", w.w-w.r)
	}
}

// testRun runs openloop for 250 ms (50 ms of warm-up) at 2000 req/s, over
// 4 connections, against handler.
func testRun(t *testing.T, handler http.HandlerFunc, expect int, timeout time.Duration) result {
	t.Helper()
	srv := httptest.NewServer(handler)
	defer srv.Close()
	u, err := url.Parse(srv.URL + "/info/rack")
	if err != nil {
		t.Fatal(err)
	}
	res, err := run(config{target: u.String(), host: u.Host, request: buildRequest(u, nil), rate: 2000,
		duration: 200 * time.Millisecond, warmup: 50 * time.Millisecond, timeout: timeout, conns: 4, expect: expect})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRunSendsEveryScheduledRequest(t *testing.T) {
	var got atomic.Int64
	res := testRun(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/info/rack" {
			http.NotFound(w, r)
			return
		}
		got.Add(1)
		_, _ = w.Write([]byte("---\n1.0.0 |checksum:abc\n"))
	}, 200, time.Second)
	// 500 requests are due in 250 ms; the 400 after the warm-up are measured.
	if got.Load() != 500 || res.Requests != 400 || res.Errors != 0 {
		t.Fatalf("server saw %d requests; result %d ok, %d errors (%s); want 500 seen, 400 ok, 0 errors",
			got.Load(), res.Requests, res.Errors, res.FirstError)
	}
	if res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 || res.Response.P50 <= 0 {
		t.Fatalf("latency %+v, response %+v: not recorded", res.Latency, res.Response)
	}
}

func TestRunCountsWrongStatusesAsErrors(t *testing.T) {
	res := testRun(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}, 200, time.Second)
	if res.Requests != 0 || res.Errors != 400 || !strings.Contains(res.FirstError, "unexpected status 503") {
		t.Fatalf("result %d ok, %d errors (%q); want 0 ok, 400 errors, unexpected status 503", res.Requests, res.Errors, res.FirstError)
	}
}

func TestRunCountsUnansweredRequestsAsErrors(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var answered atomic.Int64
	res := testRun(t, func(w http.ResponseWriter, r *http.Request) {
		// The first 200 requests (100 ms) are answered; then the server
		// stalls and never answers again.
		if answered.Add(1) > 200 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}, 200, 100*time.Millisecond)
	// 100 of the 200 answered were measured; the 300 other measured
	// requests were stuck or never sent, and every one is an error.
	if res.Requests != 100 || res.Errors != 300 {
		t.Fatalf("result %d ok, %d errors (%q); want 100 ok and 300 errors", res.Requests, res.Errors, res.FirstError)
	}
}

func TestRunReconnectsWhenTheServerClosesConnections(t *testing.T) {
	res := testRun(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = w.Write([]byte("ok"))
	}, 200, time.Second)
	// A request written just as the server closed its connection fails;
	// every other one is answered over a new connection, and none is lost.
	if res.Requests+res.Errors != 400 || res.Requests < 200 {
		t.Fatalf("result %d ok, %d errors (%q); want 400 in all, most of them ok", res.Requests, res.Errors, res.FirstError)
	}
}

func TestRunFailsWhenTheServerIsDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u, err := url.Parse(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	_, err = run(config{target: u.String(), host: u.Host, request: buildRequest(u, nil), rate: 100,
		duration: time.Second, timeout: time.Second, conns: 2, expect: 200})
	if err == nil || !strings.Contains(err.Error(), "connect "+u.Host) {
		t.Fatalf("run against a closed port: %v; want a connect error", err)
	}
}
