package proxy

// Hit-path benchmarks: warm cache entries served through the Fiber app's
// handler with a prepared, reused fasthttp.RequestCtx (no network, no
// app.Test). Each iteration runs the whole handler (routing, lookup,
// headers, metrics; no access log) and serialises the response to
// io.Discard, so streamed bodies are copied out of the cache too.
//
//	go test -run '^$' -bench 'BenchmarkHit' -benchmem ./internal/proxy
//	go test -run '^$' -bench 'BenchmarkHitInfo$' -cpuprofile cpu.out ./internal/proxy
//	go tool pprof -top cpu.out
//
// bench/run.sh measures the same paths over the network against nginx.

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// benchContent is the upstream content shared by the hit benchmarks: a
// small gem with a ~1.5 KB /info and its API JSON, enough filler gems that
// /versions (~130 KB) exceeds the 64 KiB in-memory body limit (it is kept
// in memory as a memory class, as the binary configures it), and a 1 MiB
// gem streamed from the cache file.
var benchContent = sync.OnceValues(func() ([]testupstream.Item, error) {
	var items []testupstream.Item
	for i := range 3000 {
		spec := testupstream.GemSpec{Name: fmt.Sprintf("filler-gem-%04d", i), Version: "1.0.0"}
		// The filler .gem bytes are never requested: a stand-in keeps setup fast.
		items = append(items, testupstream.Item{Spec: spec, Gem: []byte("stand-in " + spec.FullName())})
	}
	for v := range 12 {
		spec := testupstream.GemSpec{Name: "benchsmall", Version: fmt.Sprintf("1.%d.0", v),
			Deps: []testupstream.Dep{{Name: "filler-gem-0001", Requirement: "~> 1.0"}}}
		gem, err := testupstream.BuildGem(spec)
		if err != nil {
			return nil, err
		}
		items = append(items, testupstream.Item{Spec: spec, Gem: gem})
	}
	big := testupstream.GemSpec{Name: "benchgem1m", Version: "1.0.0"}
	padded := big
	padded.Padding = 1 << 20
	gem, err := testupstream.BuildGem(padded)
	if err != nil {
		return nil, err
	}
	items = append(items, testupstream.Item{Spec: big, Gem: gem}, testupstream.Item{Spec: testupstream.GemSpec{Name: "benchlast", Version: "1.0.0"}})
	return items, nil
})

// benchProxy is a proxy in front of a testupstream filled with
// benchContent, on a fresh data directory, with TTLs long enough that
// every benchmarked request is a hit.
type benchProxy struct {
	p       *Proxy
	up      *testupstream.Server
	handler fasthttp.RequestHandler
}

// newBenchProxy builds a benchProxy (newTestProxy takes a *testing.T).
func newBenchProxy(b *testing.B) *benchProxy {
	b.Helper()
	items, err := benchContent()
	if err != nil {
		b.Fatal(err)
	}
	up, ts := testupstream.Start(b, testupstream.Options{})
	if err := up.PublishAll(items); err != nil {
		b.Fatal(err)
	}
	// The cache options of the gemproxy binary (cmd/gemproxy CacheOptions):
	// the compact index's /versions and /names stay in memory.
	store, err := cache.Open(b.TempDir(), cache.Options{
		MemoryClasses: []string{string(ClassVersions), string(ClassNames)},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	u, err := url.Parse(ts.URL)
	if err != nil {
		b.Fatal(err)
	}
	eps := MetricEndpoints()
	m := metrics.New(prometheus.NewRegistry(), metrics.Options{Endpoints: eps, Version: "bench"})
	policies := DefaultPolicies()
	for c, pol := range policies {
		pol.TTL = time.Hour
		policies[c] = pol
	}
	p, err := New(store, Options{
		Upstream: UpstreamOptions{URL: u},
		Metrics:  m,
		// Level warn and no AccessLog, as in bench/run.sh.
		Logger:   slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Version:  "bench",
		Policies: policies,
	})
	if err != nil {
		b.Fatal(err)
	}
	return &benchProxy{p: p, up: up, handler: p.App().Handler()}
}

// hitCase is one benchmarked request and the answer it must get.
type hitCase struct {
	path   string
	header map[string]string
	status int
	body   int // Content-Length of the answer (0 for 304)
}

// benchHit builds a benchProxy, warms the case's path (one miss), checks
// that the prepared request gets the expected answer from the cache, then
// serves it b.N times.
func benchHit(b *testing.B, describe func(up *testupstream.Server) hitCase) {
	bp := newBenchProxy(b)
	hc := describe(bp.up)
	var req fasthttp.Request
	req.Header.SetMethod(http.MethodGet)
	req.SetRequestURI(hc.path)
	req.Header.SetHost("gemproxy.bench")
	req.Header.SetUserAgent("bundler/v2.3.7 rubygems/v3.3.15 ruby/v3.1.2 (x86_64-pc-linux-gnu) command/install")

	// Warm: a plain GET stores the entry.
	var warm fasthttp.RequestCtx
	warm.Init(&req, nil, nil)
	bp.handler(&warm)
	if warm.Response.StatusCode() != http.StatusOK {
		b.Fatalf("warm %s: status %d: %s", hc.path, warm.Response.StatusCode(), warm.Response.Body())
	}
	_ = warm.Response.BodyWriteTo(io.Discard)
	warm.Response.Reset()

	for k, v := range hc.header {
		req.Header.Set(k, v)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	w := bufio.NewWriterSize(io.Discard, 64<<10)
	serve := func() {
		bp.handler(&ctx)
		if err := ctx.Response.Write(w); err != nil {
			b.Fatal(err)
		}
	}
	// Check one answer before timing.
	serve()
	if got := ctx.Response.StatusCode(); got != hc.status {
		b.Fatalf("%s: status %d, want %d", hc.path, got, hc.status)
	}
	if got := string(ctx.Response.Header.Peek("X-Cache")); got != "HIT" {
		b.Fatalf("%s: X-Cache %q, want HIT", hc.path, got)
	}
	if cl := ctx.Response.Header.ContentLength(); hc.status != http.StatusNotModified && cl != hc.body {
		b.Fatalf("%s: Content-Length %d, want %d", hc.path, cl, hc.body)
	}
	ctx.Response.Reset()
	upstreamBefore := len(bp.up.Log())

	b.ReportAllocs()
	b.SetBytes(int64(hc.body))
	b.ResetTimer()
	for range b.N {
		serve()
		ctx.Response.Reset()
	}
	b.StopTimer()
	_ = w.Flush()
	if n := len(bp.up.Log()) - upstreamBefore; n != 0 {
		b.Fatalf("%s: %d upstream requests during the timed loop, want 0", hc.path, n)
	}
}

// BenchmarkHitInfo serves a small /info/NAME (~1.5 KB, in-memory body).
func BenchmarkHitInfo(b *testing.B) {
	benchHit(b, func(up *testupstream.Server) hitCase {
		body, _ := up.Body("/info/benchsmall")
		return hitCase{path: "/info/benchsmall", status: http.StatusOK, body: len(body)}
	})
}

// BenchmarkHitAPIJSON serves /api/v1/gems/NAME.json (~0.7 KB, in-memory body).
func BenchmarkHitAPIJSON(b *testing.B) {
	benchHit(b, func(up *testupstream.Server) hitCase {
		const path = "/api/v1/gems/benchsmall.json"
		return hitCase{path: path, status: http.StatusOK, body: up.ServedSize(path)}
	})
}

// BenchmarkHitVersionsRange serves Bundler's /versions request from a
// client one publish behind: Range: bytes=<its length - 1>- with its old
// ETag, answered 206 with the new tail of the ~130 KB body.
func BenchmarkHitVersionsRange(b *testing.B) {
	benchHit(b, func(up *testupstream.Server) hitCase {
		body, _ := up.Body("/versions")
		old := lastLineStart(body)
		return hitCase{path: "/versions", header: map[string]string{
			"Range":         "bytes=" + strconv.Itoa(old-1) + "-",
			"If-None-Match": quotedMD5(body[:old]),
		}, status: http.StatusPartialContent, body: len(body) - old + 1}
	})
}

// BenchmarkHitVersions304 serves the same request from an up-to-date
// client: its ETag matches, the answer is 304.
func BenchmarkHitVersions304(b *testing.B) {
	benchHit(b, func(up *testupstream.Server) hitCase {
		body, _ := up.Body("/versions")
		return hitCase{path: "/versions", header: map[string]string{
			"Range":         "bytes=" + strconv.Itoa(len(body)-1) + "-",
			"If-None-Match": quotedMD5(body),
		}, status: http.StatusNotModified}
	})
}

// BenchmarkHitGem1MiB serves a 1 MiB .gem streamed from the cache file.
func BenchmarkHitGem1MiB(b *testing.B) {
	benchHit(b, func(up *testupstream.Server) hitCase {
		const path = "/gems/benchgem1m-1.0.0.gem"
		return hitCase{path: path, status: http.StatusOK, body: up.ServedSize(path)}
	})
}

// lastLineStart returns the offset of the last line of body.
func lastLineStart(body []byte) int {
	i := len(body) - 1
	for i > 0 && body[i-1] != '\n' {
		i--
	}
	return i
}

// quotedMD5 returns the ETag rubygems.org gives b.
func quotedMD5(b []byte) string {
	s := md5.Sum(b)
	return `"` + hex.EncodeToString(s[:]) + `"`
}

// BenchmarkHitGem1MiBTCP serves the 1 MiB .gem of BenchmarkHitGem1MiB
// over a loopback TCP connection kept alive, as bench/run.sh's wrk does:
// the path a real client takes (a stored body is written from the cache
// file's mapping, never sent with sendfile: see cache.Reader.SendTo). The
// client's reads are part of the time.
func BenchmarkHitGem1MiBTCP(b *testing.B) {
	const path = "/gems/benchgem1m-1.0.0.gem"
	bp := newBenchProxy(b)
	size := bp.up.ServedSize(path)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go bp.p.App().Listener(ln)
	b.Cleanup(func() { _ = bp.p.App().Shutdown() })
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: gemproxy.bench\r\n\r\n")
	br := bufio.NewReaderSize(conn, 64<<10)
	get := func() (*http.Response, int64) {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil {
			b.Fatal(err)
		}
		return resp, n
	}
	get()       // the miss that stores it
	bp.p.Wait() // its commit follows the last byte
	if resp, n := get(); resp.Header.Get("X-Cache") != "HIT" || n != int64(size) {
		b.Fatalf("%s: X-Cache %q, %d bytes, want a HIT of %d", path, resp.Header.Get("X-Cache"), n, size)
	}
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	for range b.N {
		get()
	}
}
