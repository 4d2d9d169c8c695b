package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gemproxy/gemproxy/internal/metrics"
)

// miniGems is a tiny rubygems.org: one gem "foo-bar" 1.0.0 whose body is
// gem, with /info listing its checksum.
func miniGems(gem []byte) http.HandlerFunc {
	info := []byte("---\n" + infoLine("1.0.0", gem))
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/info/foo-bar":
			compactHeaders(w, info)
			w.Write(info)
		case "/gems/foo-bar-1.0.0.gem":
			w.Header().Set("Content-Type", "binary/octet-stream")
			w.Write(gem)
		case "/api/v1/gems/foo-bar.json":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Set("Cache-Control", "max-age=60, public")
			w.Header().Set("ETag", `W/"abc"`)
			if r.Header.Get("If-None-Match") == `W/"abc"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			fmt.Fprintf(w, `{"name":"foo-bar","ua":%q}`, r.UserAgent())
		default:
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>`))
		}
	}
}

func TestReadThroughGem(t *testing.T) {
	gem := []byte("pretend gem bytes")
	up := newCountingUpstream(t, miniGems(gem))
	tp := newTestProxy(t, up.URL)

	resp, body := tp.do(t, "GET", "/gems/foo-bar-1.0.0.gem", "User-Agent", "bundler/2.3.5")
	if resp.StatusCode != 200 || !bytes.Equal(body, gem) {
		t.Fatalf("first GET: %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Cache"); got != "MISS" {
		t.Errorf("X-Cache = %q, want MISS", got)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	if ua := up.header("/gems/foo-bar-1.0.0.gem").Get("User-Agent"); ua != "bundler/2.3.5 gemproxy/test" {
		t.Errorf("upstream User-Agent = %q", ua)
	}
	resp, body = tp.do(t, "GET", "/gems/foo-bar-1.0.0.gem")
	if resp.StatusCode != 200 || !bytes.Equal(body, gem) || resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("second GET: %d %q %q", resp.StatusCode, body, resp.Header.Get("X-Cache"))
	}
	if resp.Header.Get("Age") == "" {
		t.Error("no Age header on a hit")
	}
	// /downloads/ shares the entry.
	resp, body = tp.do(t, "GET", "/downloads/foo-bar-1.0.0.gem")
	if resp.StatusCode != 200 || !bytes.Equal(body, gem) || resp.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("/downloads: %d %q", resp.StatusCode, resp.Header.Get("X-Cache"))
	}
	// HEAD answers the length without a body.
	resp, body = tp.do(t, "HEAD", "/gems/foo-bar-1.0.0.gem")
	if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Length") != fmt.Sprint(len(gem)) {
		t.Fatalf("HEAD: %d body=%q Content-Length=%q", resp.StatusCode, body, resp.Header.Get("Content-Length"))
	}
	// Ranges: an end past the file (even MaxInt64) is clamped; a start
	// past it is a plain-text 416 that no cache may keep.
	resp, body = tp.do(t, "GET", "/gems/foo-bar-1.0.0.gem", "Range", "bytes=1-9223372036854775807")
	if resp.StatusCode != 206 || !bytes.Equal(body, gem[1:]) {
		t.Fatalf("Range to MaxInt64: %d %q", resp.StatusCode, body)
	}
	resp, body = tp.do(t, "GET", "/gems/foo-bar-1.0.0.gem", "Range", "bytes=1000-")
	if resp.StatusCode != 416 || resp.Header.Get("Cache-Control") != "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || len(body) == 0 {
		t.Fatalf("Range beyond the end: %d, Cache-Control %q, Content-Type %q, body %q",
			resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("Content-Type"), body)
	}
	if n := up.count("/gems/foo-bar-1.0.0.gem"); n != 1 {
		t.Errorf("upstream gem requests = %d, want 1", n)
	}
	if n := up.count("/info/foo-bar"); n != 1 {
		t.Errorf("upstream info requests = %d, want 1", n)
	}
}

func TestGemChecksumMismatchStoresNothing(t *testing.T) {
	good := []byte("the real gem")
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gems/foo-bar-1.0.0.gem" {
			w.Write([]byte("tampered gem"))
			return
		}
		miniGems(good)(w, r)
	})
	tp := newTestProxy(t, up.URL)
	resp, body := tp.do(t, "GET", "/gems/foo-bar-1.0.0.gem")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	mustContain(t, string(body), "SHA-256")
	if e := tp.store.Peek("/gems/foo-bar-1.0.0.gem"); e != nil {
		t.Fatalf("a gem failing its checksum was stored: %+v", e)
	}
	if got := testutil.ToFloat64(tp.m.CacheChecksumFailures.WithLabelValues("mismatch")); got != 1 {
		t.Errorf("checksum mismatch counter = %v", got)
	}
}

func TestGemWithUnknownChecksumIsServedNotStored(t *testing.T) {
	gem := []byte("some gem")
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/gems/foo-bar-2.0.0.gem":
			w.Write(gem)
		default:
			miniGems(gem)(w, r) // /info lists 1.0.0 only
		}
	})
	tp := newTestProxy(t, up.URL)
	for i := 0; i < 2; i++ {
		resp, body := tp.do(t, "GET", "/gems/foo-bar-2.0.0.gem")
		if resp.StatusCode != 200 || !bytes.Equal(body, gem) {
			t.Fatalf("GET %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := up.count("/gems/foo-bar-2.0.0.gem"); n != 2 {
		t.Errorf("unverified gem fetched %d times, want 2 (never stored)", n)
	}
	if got := testutil.ToFloat64(tp.m.CacheChecksumFailures.WithLabelValues("unknown")); got != 2 {
		t.Errorf("unknown checksum counter = %v, want 2", got)
	}
}

func TestS3ForbiddenBecomesCachedNotFound(t *testing.T) {
	up := newCountingUpstream(t, miniGems(nil))
	tp := newTestProxy(t, up.URL)
	for _, path := range []string{"/gems/nope-1.0.gem", "/quick/Marshal.4.8/nope-1.0.gemspec.rz"} {
		for i := 0; i < 2; i++ {
			resp, body := tp.do(t, "GET", path)
			if resp.StatusCode != 404 || strings.Contains(string(body), "xml") {
				t.Fatalf("%s: %d %q, want a plain 404", path, resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
				t.Errorf("%s Content-Type %q", path, ct)
			}
		}
		if n := up.count(path); n != 1 {
			t.Errorf("%s fetched %d times within the negative TTL, want 1", path, n)
		}
	}
	// After the negative TTL the upstream is asked again.
	tp.clock.Advance(61 * time.Second)
	tp.do(t, "GET", "/quick/Marshal.4.8/nope-1.0.gemspec.rz")
	if n := up.count("/quick/Marshal.4.8/nope-1.0.gemspec.rz"); n != 2 {
		t.Errorf("after the negative TTL: %d fetches, want 2", n)
	}
}

// s3NoSuchKey is S3's 404 error document for a missing key.
const s3NoSuchKey = `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message><Key>gems/nope-1.0.gem</Key><RequestId>R</RequestId><HostId>H</HostId></Error>`

// TestS3NotFoundIsPlainText: a 404 carrying S3's XML error (by its
// Content-Type or its body) is answered like the 403 rewrite, a plain-text
// body labelled text/plain; other 404s keep their body and label.
func TestS3NotFoundIsPlainText(t *testing.T) {
	tests := []struct {
		path, contentType, body string
		wantType, wantBody      string
	}{
		{"/gems/nope-1.0.gem", "application/xml", s3NoSuchKey, "text/plain; charset=utf-8", "This file could not be found\n"},
		{"/quick/Marshal.4.8/nope-1.0.gemspec.rz", "application/xml", s3NoSuchKey, "text/plain; charset=utf-8", "This file could not be found\n"},
		{"/specs.4.8.gz", "text/plain", s3NoSuchKey, "text/plain; charset=utf-8", "This file could not be found\n"},
		{"/gems/gone-1.0.gem", "", "<Error><Code>NoSuchKey</Code></Error>", "text/plain; charset=utf-8", "This file could not be found\n"},
		{"/gems/odd-1.0.gem", "text/xml", "Not Found", "text/plain; charset=utf-8", "This file could not be found\n"},
		{"/info/nope", "text/plain", "This gem could not be found", "text/plain", "This gem could not be found"},
		{"/api/v1/gems/nope.json", "", "This rubygem could not be found.", "text/plain; charset=utf-8", "This rubygem could not be found."},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/info/nope" && tt.path != "/info/nope" {
					w.WriteHeader(http.StatusNotFound) // the gem fill's checksum lookup
					return
				}
				w.Header()["Content-Type"] = []string{tt.contentType}
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(tt.body))
			})
			tp := newTestProxy(t, up.URL)
			for i := 0; i < 2; i++ { // the fill, then the stored negative entry
				resp, body := tp.do(t, "GET", tt.path)
				if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != tt.wantType || string(body) != tt.wantBody {
					t.Fatalf("GET %d: %d %q %q, want 404 %q %q", i, resp.StatusCode, resp.Header.Get("Content-Type"), body, tt.wantType, tt.wantBody)
				}
			}
		})
	}
}

func TestUpstreamErrorsPassThrough(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/gems/missing.json":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(404)
			w.Write([]byte("This rubygem could not be found."))
		case "/api/v1/search.json":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"Request is missing param 'query'"}`))
		case "/api/v1/downloads/top.json":
			w.WriteHeader(410)
			w.Write([]byte("This endpoint is not supported anymore"))
		}
	})
	tp := newTestProxy(t, up.URL)
	tests := []struct {
		path   string
		status int
		body   string
	}{
		{"/api/v1/gems/missing.json", 404, "This rubygem could not be found."},
		{"/api/v1/search.json", 400, `{"error":"Request is missing param 'query'"}`},
		{"/api/v1/downloads/top.json", 410, "This endpoint is not supported anymore"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := tp.do(t, "GET", tt.path)
			if resp.StatusCode != tt.status || string(body) != tt.body {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tt.status, tt.body)
			}
		})
	}
}

func TestRevalidationWith304KeepsBody(t *testing.T) {
	up := newCountingUpstream(t, miniGems(nil))
	tp := newTestProxy(t, up.URL)
	_, first := tp.do(t, "GET", "/api/v1/gems/foo-bar.json", "User-Agent", "curl/8")
	tp.clock.Advance(2 * time.Minute)
	resp, second := tp.do(t, "GET", "/api/v1/gems/foo-bar.json")
	if !bytes.Equal(first, second) || resp.Header.Get("X-Cache") != "REVALIDATED" {
		t.Fatalf("after 304: %q (X-Cache %q), want %q", second, resp.Header.Get("X-Cache"), first)
	}
	if inm := up.header("/api/v1/gems/foo-bar.json").Get("If-None-Match"); inm != `W/"abc"` {
		t.Errorf("revalidation If-None-Match = %q", inm)
	}
	resp, _ = tp.do(t, "GET", "/api/v1/gems/foo-bar.json")
	if resp.Header.Get("X-Cache") != "HIT" {
		t.Errorf("after renewal X-Cache = %q, want HIT", resp.Header.Get("X-Cache"))
	}
	if n := up.count("/api/v1/gems/foo-bar.json"); n != 2 {
		t.Errorf("upstream calls = %d, want 2", n)
	}
}

func TestRedirectsFollowedServerSide(t *testing.T) {
	gem := []byte("redirected gem")
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gems/foo-bar-1.0.0.gem" {
			http.Redirect(w, r, "/storage/foo-bar-1.0.0.gem", http.StatusFound)
			return
		}
		if r.URL.Path == "/storage/foo-bar-1.0.0.gem" {
			w.Write(gem)
			return
		}
		miniGems(gem)(w, r)
	})
	tp := newTestProxy(t, up.URL)
	resp, body := tp.do(t, "GET", "/gems/foo-bar-1.0.0.gem")
	if resp.StatusCode != 200 || !bytes.Equal(body, gem) {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
}

func TestRedirectToOtherHostRefused(t *testing.T) {
	other := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("evil")) })
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/x", http.StatusFound)
	})
	tp := newTestProxy(t, up.URL)
	resp, _ := tp.do(t, "GET", "/api/v1/gems/foo.json")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode)
	}
	if other.total() != 0 {
		t.Fatalf("gemproxy contacted a host other than the upstream")
	}
	// Unless the operator allows that host (a CDN serving gems).
	cdn := strings.TrimPrefix(other.URL, "http://")
	tp = newTestProxy(t, up.URL, func(o *Options) { o.Upstream.RedirectHosts = []string{cdn} })
	if resp, body := tp.do(t, "GET", "/api/v1/gems/foo.json"); resp.StatusCode != http.StatusOK || string(body) != "evil" {
		t.Fatalf("redirect to an allowed host: %d %q", resp.StatusCode, body)
	}
}

func TestConcurrentMissesCoalesce(t *testing.T) {
	const clients = 100
	gem := make([]byte, 3<<20)
	rand.Read(gem)
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gems/foo-bar-1.0.0.gem" {
			arrived <- struct{}{}
			<-release
		}
		miniGems(gem)(w, r)
	})
	tp := newTestProxy(t, up.URL)
	var wg sync.WaitGroup
	results := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body := tp.do(t, "GET", "/gems/foo-bar-1.0.0.gem")
			if resp.StatusCode != 200 || !bytes.Equal(body, gem) {
				results <- fmt.Errorf("status %d, %d bytes", resp.StatusCode, len(body))
				return
			}
			results <- nil
		}()
	}
	<-arrived
	// Every client must be waiting on the one fill before it is released.
	waitFor(t, func() bool { return testutil.ToFloat64(tp.m.CacheFillWaiters) == clients })
	close(release)
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := up.count("/gems/foo-bar-1.0.0.gem"); n != 1 {
		t.Fatalf("%d concurrent misses caused %d upstream requests, want 1", clients, n)
	}
	if got := testutil.ToFloat64(tp.m.Lookup("gem", metrics.ResultCoalesced)); got != clients-1 {
		t.Errorf("coalesced lookups = %v, want %d", got, clients-1)
	}
}

func TestFillSurvivesClientDisconnect(t *testing.T) {
	gem := []byte("gem for a patient fill")
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gems/foo-bar-1.0.0.gem" {
			arrived <- struct{}{}
			<-release
		}
		miniGems(gem)(w, r)
	})
	tp := newTestProxy(t, up.URL)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := tp.fill.lookup(ctx, fillRequest{rt: tp.mustRoute(t, "/gems/foo-bar-1.0.0.gem"), key: "/gems/foo-bar-1.0.0.gem"})
		done <- err
	}()
	<-arrived
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the disconnected client got a result instead of its context error")
	}
	close(release)
	waitFor(t, func() bool { return tp.store.Peek("/gems/foo-bar-1.0.0.gem") != nil })
	resp, body := tp.do(t, "GET", "/gems/foo-bar-1.0.0.gem")
	if resp.Header.Get("X-Cache") != "HIT" || !bytes.Equal(body, gem) {
		t.Fatalf("after the abandoned fill: %q %q", resp.Header.Get("X-Cache"), body)
	}
}

// mustRoute returns the GET route of path.
func (tp *testProxy) mustRoute(t *testing.T, path string) *Route {
	t.Helper()
	rt, _, _ := tp.router.Match("GET", path, new([maxParams]string))
	if rt == nil {
		t.Fatalf("no route for %s", path)
	}
	return rt
}

// waitFor polls cond until it holds, failing after ten seconds. It is for
// conditions with no event to wait on (a gauge reaching a value).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestUnknownAPIPassesThroughUncached(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60, public")
		w.Write([]byte("new endpoint " + r.URL.RawQuery))
	})
	tp := newTestProxy(t, up.URL)
	for i := 0; i < 2; i++ {
		resp, body := tp.do(t, "GET", "/api/v3/brand/new?x=1")
		if resp.StatusCode != 200 || string(body) != "new endpoint x=1" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	}
	if n := up.count("/api/v3/brand/new"); n != 2 {
		t.Errorf("upstream saw %d requests, want 2 (not cached)", n)
	}
}

// TestNegotiatedRouteKeepsFormats: /api/v1/profiles/NAME answers JSON or
// YAML by Accept; a request with a preference must neither get the cached
// default nor replace it.
func TestNegotiatedRouteKeepsFormats(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60, public")
		if strings.Contains(r.Header.Get("Accept"), "yaml") {
			w.Header().Set("Content-Type", "application/x-yaml")
			w.Write([]byte("---\nhandle: qrush\n"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"handle":"qrush"}`))
	})
	tp := newTestProxy(t, up.URL)
	for _, tc := range []struct{ accept, want string }{
		{"", `{"handle":"qrush"}`},
		{"application/x-yaml", "---\nhandle: qrush\n"},
		{"*/*", `{"handle":"qrush"}`},
		{"application/x-yaml", "---\nhandle: qrush\n"},
		{"application/json", `{"handle":"qrush"}`},
	} {
		var h []string
		if tc.accept != "" {
			h = []string{"Accept", tc.accept}
		}
		if _, body := tp.do(t, "GET", "/api/v1/profiles/qrush", h...); string(body) != tc.want {
			t.Fatalf("Accept %q: got %q, want %q", tc.accept, body, tc.want)
		}
	}
	if n := up.count("/api/v1/profiles/qrush"); n != 4 {
		t.Errorf("upstream saw %d requests, want 4 (no preference once, then YAML twice and JSON once uncached)", n)
	}
}

// TestOnlyKnownQueriesAreCached: a query is part of an API entry's key
// only when it names parameters the origin reads; junk passes through, so
// it cannot fill (or evict from) the cache.
func TestOnlyKnownQueriesAreCached(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60, public")
		w.Write([]byte(`["rack"]`))
	})
	tp := newTestProxy(t, up.URL)
	for i := 0; i < 2; i++ {
		tp.do(t, "GET", "/api/v1/search.json?query=rack&page=2")
		tp.do(t, "GET", "/api/v1/gems/rack.json?junk="+fmt.Sprint(i))
		tp.do(t, "GET", "/api/v1/search.json?query=rack&utm=x")
	}
	if n := up.count("/api/v1/search.json"); n != 3 {
		t.Errorf("upstream saw %d searches, want 3 (the known query once, the junk one twice)", n)
	}
	if n := up.count("/api/v1/gems/rack.json"); n != 2 {
		t.Errorf("upstream saw %d gem lookups with junk queries, want 2", n)
	}
	if e := tp.store.Peek("/api/v1/search.json?query=rack&page=2"); e == nil {
		t.Error("the search with known parameters was not cached")
	}
	if st := tp.store.Stats(); st.Classes[string(ClassAPI)].Entries != 1 {
		t.Errorf("API entries = %+v, want only the known search", st.Classes)
	}
}

func TestDependencyAPIAnsweredLocally(t *testing.T) {
	up := newCountingUpstream(t, miniGems(nil))
	tp := newTestProxy(t, up.URL)
	resp, body := tp.do(t, "GET", "/api/v1/dependencies?gems=rack")
	if resp.StatusCode != 404 || string(body) != dependencyAPIGone || resp.Header.Get("Cache-Control") != "max-age=30, public" {
		t.Fatalf("plain: %d %q, Cache-Control %q", resp.StatusCode, body, resp.Header.Get("Cache-Control"))
	}
	resp, body = tp.do(t, "GET", "/api/v1/dependencies.json?gems=rack")
	if resp.StatusCode != 404 || string(body) != `{"error":"`+dependencyAPIGone+`","code":404}` {
		t.Fatalf("json: %d %q", resp.StatusCode, body)
	}
	if up.total() != 0 {
		t.Fatal("the dependency API reached the upstream")
	}
}

func TestHostileInputRejected(t *testing.T) {
	up := newCountingUpstream(t, miniGems(nil))
	tp := newTestProxy(t, up.URL)
	long := strings.Repeat("a", 256)
	paths := []string{
		"/gems/../../etc/passwd.gem",
		"/gems/%2e%2e/%2e%2e/etc/passwd.gem",
		"/gems/..%2fetc%2fpasswd.gem",
		"/info/%2E%2E",
		"/info/foo%00bar",
		"/info/foo%5cbar",
		"/info/a%252e%252e",
		"/quick/Marshal.4.8/..%5c..%5cx.gemspec.rz",
		"/info/" + long,
		"/gems/" + long + ".gem",
		"/info/foo bar",
		"/info/fo%ZZ",
		"http://evil.example/healthz",
		"http://evil.example/readyz",
		"*",
		"/info/...",
		"/info/-",
		"/gems/foo.gem",
		"/gems/---.gem",
		"/gems/.-1.0.gem",
		"/quick/Marshal.4.8/foo.gemspec.rz",
		"/api/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
		"/api/..;/versions",
		"/api/v1/" + long,
		"/api/v1/gems/" + long + ".json",
		"/api/v2/rubygems/foo/versions/....json",
		"/api/v1/search.json?q=\x01",
		"/api/v1/search.json?q=x HTTP/1.0",
		"/api/v1/search.json?q=%zz",
		"/api/v1/search.json?q=\xc0\xae",
		"/api/v1/search.json?q=a#frag",
		"/api/v1/search.json?q=" + strings.Repeat("A", 2000),
		"/api/v1/gems/%2e%2e.json",
		"/info/ruby%0d%0aX-Injected:%201",
	}
	tp.listen(t)
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			req := p
			resp, _ := tp.doRaw(t, "GET "+req+" HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp < 400 || resp >= 500 {
				t.Fatalf("status %d, want 4xx", resp)
			}
		})
	}
	if n := up.total(); n != 0 {
		t.Fatalf("hostile input caused %d upstream requests: %v", n, up.counts)
	}
	if st := tp.store.Stats(); st.Bytes != 0 || len(st.Classes) != 0 {
		t.Fatalf("hostile input left cache entries: %+v", st)
	}
}

// TestTruncatedJSONNotStored: API JSON has no digest, but a body cut short
// behind an honest Content-Length no longer parses and is not stored.
func TestTruncatedJSONNotStored(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=60, public")
		w.Write([]byte(`{"name":"rack","version":"3.`))
	})
	tp := newTestProxy(t, up.URL)
	resp, body := tp.do(t, "GET", "/api/v1/gems/rack.json")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("truncated JSON: %d %q, want 502", resp.StatusCode, body)
	}
	if e := tp.store.Peek("/api/v1/gems/rack.json"); e != nil {
		t.Fatal("a truncated JSON body was stored")
	}
}
