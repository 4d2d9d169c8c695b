package main

import (
	"net"
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
	go func() {
		buf := make([]byte, 1024)
		for range 3 {
			if _, err := server.Read(buf); err != nil {
				return
			}
		}
	}()
	go func() { _, _ = server.Write([]byte(answers)) }()
	w := &worker{conn: client, request: []byte("GET / HTTP/1.1\r\n\r\n"), buf: make([]byte, 80)}
	for _, want := range []int{200, 304, 206} {
		w.expect = want
		if err := w.roundTrip(); err != nil {
			t.Fatalf("answer %d: %v", want, err)
		}
	}
	if w.r != w.w {
		t.Fatalf("%d bytes left unread", w.w-w.r)
	}
}
