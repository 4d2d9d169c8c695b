package testupstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// faultFixture is a server with one published gem "f-1.0.0" (~60 KB).
type faultFixture struct {
	up     *Server          // the upstream
	ts     *httptest.Server // serving it
	gem    []byte           // the published gem
	client *http.Client     // client without keep-alive
}

// newFaultFixture starts the server; its client never reuses connections
// (so Go's transport cannot transparently retry a reset GET).
func newFaultFixture(t *testing.T, opts Options) *faultFixture {
	t.Helper()
	up, ts := Start(t, opts)
	gem := buildGem(t, GemSpec{Name: "f", Version: "1.0.0", Padding: 60_000})
	up.Publish(GemSpec{Name: "f", Version: "1.0.0"}, gem)
	tr := &http.Transport{DisableKeepAlives: true, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &faultFixture{up: up, ts: ts, gem: gem, client: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

// get performs a GET and returns the response with the body fully read
// (or the read error).
func (f *faultFixture) get(ctx context.Context, path string) (*http.Response, []byte, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", f.ts.URL+path, nil)
	res, err := f.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// TestFaultStatus checks Status faults with Retry-After and bodies.
func TestFaultStatus(t *testing.T) {
	tests := []struct {
		name                    string
		fault                   Fault
		status                  int
		body, retryAfter, ctype string
	}{
		{"503 with retry-after", Fault{Status: 503, RetryAfter: "7"}, 503, "Service Unavailable\n", "7", "text/plain"},
		{"429 rack-attack body", Fault{Status: 429, RetryAfter: "7"}, 429, "Retry later\n", "7", "text/plain"},
		{"500 custom body", Fault{Status: 500, Body: "Server error. Please try again."}, 500, "Server error. Please try again.", "", "text/plain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFaultFixture(t, Options{})
			f.up.SetFault("/gems/", tc.fault)
			res, b, err := f.get(context.Background(), "/gems/f-1.0.0.gem")
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tc.status || string(b) != tc.body || res.Header.Get("Retry-After") != tc.retryAfter || res.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("got %d %q %v", res.StatusCode, b, res.Header)
			}
		})
	}
}

// TestFaultReset checks that a Reset fault fails the request and is still counted.
func TestFaultReset(t *testing.T) {
	f := newFaultFixture(t, Options{})
	f.up.SetFault("/versions", Fault{Reset: true})
	if _, _, err := f.get(context.Background(), "/versions"); err == nil {
		t.Fatal("reset fault: request succeeded")
	}
	if n := f.up.Requests("/versions"); n != 1 {
		t.Errorf("reset request counted %d times, want 1 (logged before the fault)", n)
	}
	if res, _, err := f.get(context.Background(), "/names"); err != nil || res.StatusCode != 200 {
		t.Errorf("other paths must be unaffected: %v", err)
	}
}

// TestFaultBodyAlterations checks Truncate, LieLength, Corrupt, Header and
// SendStatus on several endpoints.
func TestFaultBodyAlterations(t *testing.T) {
	tests := []struct {
		name    string
		fault   Fault
		wantErr bool
		check   func(t *testing.T, full, got []byte, res *http.Response)
	}{
		{"truncate", Fault{Truncate: true}, true, func(t *testing.T, full, got []byte, res *http.Response) {
			if res.ContentLength != int64(len(full)) || !bytes.Equal(got, full[:len(full)/2]) {
				t.Errorf("Content-Length %d, received %d of %d bytes", res.ContentLength, len(got), len(full))
			}
		}},
		{"lie length", Fault{LieLength: 10}, true, func(t *testing.T, full, got []byte, res *http.Response) {
			if res.ContentLength != int64(len(full)+10) || !bytes.Equal(got, full) {
				t.Errorf("Content-Length %d, received %d of %d bytes", res.ContentLength, len(got), len(full))
			}
		}},
		{"corrupt", Fault{Corrupt: true}, false, func(t *testing.T, full, got []byte, res *http.Response) {
			if len(got) != len(full) || res.Header.Get("Content-Length") != itoa(len(full)) ||
				(res.Header.Get("ETag") != "" && res.Header.Get("ETag") != `"`+md5hex(full)+`"`) {
				t.Fatalf("corrupt changed length or headers: %d %v", len(got), res.Header)
			}
			diff := 0
			for i := range got {
				if got[i] != full[i] {
					diff++
					if i != len(full)/2 || got[i] != full[i]^0xFF {
						t.Errorf("byte %d changed unexpectedly", i)
					}
				}
			}
			if diff != 1 {
				t.Errorf("%d bytes differ, want 1", diff)
			}
		}},
		{"x-gzip twice", Fault{ContentEncoding: "x-gzip, gzip"}, false, func(t *testing.T, full, got []byte, res *http.Response) {
			if res.Header.Get("Content-Encoding") != "x-gzip, gzip" || res.Header.Get("Content-Length") != itoa(len(got)) {
				t.Fatalf("Content-Encoding %q, Content-Length %q for %d bytes", res.Header.Get("Content-Encoding"), res.Header.Get("Content-Length"), len(got))
			}
			if plain := gunzip(t, gunzip(t, got)); !bytes.Equal(plain, full) {
				t.Errorf("decodes to %d bytes, want the %d identity bytes", len(plain), len(full))
			}
		}},
		{"mislabelled br", Fault{ContentEncoding: "br"}, false, func(t *testing.T, full, got []byte, res *http.Response) {
			if res.Header.Get("Content-Encoding") != "br" || !bytes.Equal(got, full) {
				t.Errorf("Content-Encoding %q on %d bytes, want br on the identity bytes", res.Header.Get("Content-Encoding"), len(got))
			}
		}},
		{"header and status", Fault{Header: http.Header{"set-cookie": {"a=1"}, "Cache-Control": {"private"}}, SendStatus: 203}, false,
			func(t *testing.T, full, got []byte, res *http.Response) {
				if res.StatusCode != 203 || !bytes.Equal(got, full) || res.Header.Get("Set-Cookie") != "a=1" ||
					strings.Join(res.Header.Values("Cache-Control"), ",") != "private" {
					t.Errorf("got %d, %d of %d bytes, headers %v", res.StatusCode, len(got), len(full), res.Header)
				}
			}},
	}
	for _, tc := range tests {
		for _, path := range []string{"/gems/f-1.0.0.gem", "/versions", "/info/f", "/api/v1/gems/f.json"} {
			t.Run(tc.name+path, func(t *testing.T) {
				f := newFaultFixture(t, Options{})
				_, full, err := f.get(context.Background(), path)
				if err != nil {
					t.Fatal(err)
				}
				f.up.SetFault(path, tc.fault)
				res, got, err := f.get(context.Background(), path)
				if res == nil {
					t.Fatalf("no response: %v", err)
				}
				if tc.wantErr != (err != nil) {
					t.Fatalf("read error = %v, want error %v", err, tc.wantErr)
				}
				if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("read error %v, want unexpected EOF", err)
				}
				tc.check(t, full, got, res)
			})
		}
	}
}

// TestFaultStallRelease checks that closing Release completes a stalled body.
func TestFaultStallRelease(t *testing.T) {
	f := newFaultFixture(t, Options{})
	release := make(chan struct{})
	f.up.SetFault("/gems/", Fault{StallAfter: 100, Release: release})
	res, err := f.client.Get(f.ts.URL + "/gems/f-1.0.0.gem")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	head := make([]byte, 100)
	if _, err := io.ReadFull(res.Body, head); err != nil {
		t.Fatal(err)
	}
	close(release)
	rest, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(head, rest...); !bytes.Equal(got, f.gem) {
		t.Errorf("released stall delivered %d bytes, want the full %d", len(got), len(f.gem))
	}
}

// TestFaultStallClientCancel checks that a cancelled client ends a stall.
func TestFaultStallClientCancel(t *testing.T) {
	f := newFaultFixture(t, Options{})
	f.up.SetFault("/versions", Fault{Stall: true})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", f.ts.URL+"/versions", nil)
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(res.Body)
		done <- err
	}()
	cancel()
	if err := <-done; err == nil {
		t.Error("cancelled stalled read succeeded")
	}
	res.Body.Close()
	f.up.ClearFaults()
	if res, _, err := f.get(context.Background(), "/versions"); err != nil || res.StatusCode != 200 {
		t.Errorf("after cancel: %v", err)
	}
}

// TestFaultStallDoesNotBlockShutdown checks that Server.Close lets httptest.Server.Close return during a stall.
func TestFaultStallDoesNotBlockShutdown(t *testing.T) {
	up := New(Options{})
	up.Publish(GemSpec{Name: "s", Version: "1"}, nil)
	ts := httptest.NewServer(up)
	up.SetFault("/", Fault{StallAfter: 5})
	res, err := http.Get(ts.URL + "/versions")
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(res.Body)
		read <- err
	}()
	up.Close()
	closed := make(chan struct{})
	go func() {
		ts.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("httptest.Server.Close hangs on a stalled handler after Server.Close")
	}
	if err := <-read; err == nil {
		t.Error("aborted stall delivered a complete body")
	}
	res.Body.Close()
}

// TestFaultStallMax checks that Options.MaxStall aborts a stall.
func TestFaultStallMax(t *testing.T) {
	f := newFaultFixture(t, Options{MaxStall: 50 * time.Millisecond})
	f.up.SetFault("/versions", Fault{Stall: true})
	if _, _, err := f.get(context.Background(), "/versions"); err == nil {
		t.Error("stall beyond MaxStall completed")
	}
}

// TestFaultCountAndPrefix checks Count, longest-prefix matching, ClearFaults, Requests and Reset.
func TestFaultCountAndPrefix(t *testing.T) {
	f := newFaultFixture(t, Options{})
	f.up.SetFault("/info/", Fault{Status: 500, Count: 2})
	f.up.SetFault("/info/f", Fault{Status: 503, Count: 1})
	f.up.SetFault("/gems/", Fault{Status: 502})
	var got []int
	for i := 0; i < 4; i++ {
		res, _, err := f.get(context.Background(), "/info/f")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, res.StatusCode)
	}
	if want := []int{503, 500, 500, 200}; !equalInts(got, want) {
		t.Errorf("statuses = %v, want %v (longest prefix first, counts consumed)", got, want)
	}
	for i := 0; i < 3; i++ {
		if res, _, _ := f.get(context.Background(), "/gems/f-1.0.0.gem"); res.StatusCode != 502 {
			t.Errorf("Count 0 fault stopped applying: %d", res.StatusCode)
		}
	}
	f.up.ClearFaults()
	if res, _, _ := f.get(context.Background(), "/gems/f-1.0.0.gem"); res.StatusCode != 200 {
		t.Errorf("after ClearFaults: %d", res.StatusCode)
	}
	if n := f.up.Requests("/info/f"); n != 4 {
		t.Errorf("Requests(/info/f) = %d, want 4", n)
	}
	f.up.Reset()
	if n := f.up.Requests("/info/f"); n != 0 || len(f.up.Log()) != 0 {
		t.Error("Reset did not clear the log")
	}
}

// equalInts compares int slices.
func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFaultHTTP2Truncate checks that body faults abort HTTP/2 streams (no hijacking there).
func TestFaultHTTP2Truncate(t *testing.T) {
	up := New(Options{})
	up.Publish(GemSpec{Name: "h", Version: "1", Padding: 50_000}, nil)
	ts := httptest.NewUnstartedServer(up)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	t.Cleanup(up.Close)
	up.SetFault("/gems/", Fault{Truncate: true})
	res, err := ts.Client().Get(ts.URL + "/gems/h-1.gem")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.ProtoMajor != 2 {
		t.Fatalf("proto %s, want HTTP/2", res.Proto)
	}
	if _, err := io.ReadAll(res.Body); err == nil {
		t.Error("truncated HTTP/2 body read without error")
	}
}

// TestLatencyAndLog checks SetLatency and the fields of a logged request.
func TestLatencyAndLog(t *testing.T) {
	f := newFaultFixture(t, Options{})
	f.up.SetLatency(50 * time.Millisecond)
	start := time.Now()
	req, _ := http.NewRequest("POST", f.ts.URL+"/api/v1/gems?x=1", strings.NewReader("body"))
	req.Header.Set("Authorization", "k")
	res, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("latency not applied: %v", d)
	}
	f.up.SetLatency(0)
	log := f.up.Log()
	last := log[len(log)-1]
	if last.Method != "POST" || last.Path != "/api/v1/gems" || last.RawQuery != "x=1" || last.Header.Get("Authorization") != "k" ||
		last.BodyLen != 4 || last.BodySHA256 != gemSHA256Hex([]byte("body")) || last.Header.Get("Host") == "" {
		t.Errorf("log entry = %+v", last)
	}
}
