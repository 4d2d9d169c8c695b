package proxy

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// indexUpstream serves mutable compact-index files the way rubygems.org
// does: MD5 ETag, SHA-256 digests, 304 before Range, 206 for a satisfiable
// range and 416 beyond the end (http.ServeContent semantics).
type indexUpstream struct {
	mu    sync.Mutex
	files map[string][]byte
	// noDigest drops Repr-Digest and Digest (a misbehaving CDN).
	noDigest bool
	// wrongDigest sends the digest of another body.
	wrongDigest bool
}

// set replaces a file.
func (u *indexUpstream) set(path string, body []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.files[path] = append([]byte(nil), body...)
}

// ServeHTTP serves the files.
func (u *indexUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	body, ok := u.files[r.URL.Path]
	noDigest, wrong := u.noDigest, u.wrongDigest
	u.mu.Unlock()
	if !ok {
		w.WriteHeader(404)
		w.Write([]byte("This gem could not be found"))
		return
	}
	compactHeaders(w, body)
	if noDigest {
		w.Header().Del("Repr-Digest")
		w.Header().Del("Digest")
	}
	if wrong {
		s := sha256.Sum256([]byte("something else"))
		w.Header().Set("Repr-Digest", "sha-256=:"+base64.StdEncoding.EncodeToString(s[:])+":")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// newIndexProxy starts an indexUpstream with /versions and /info/rack.
func newIndexProxy(t *testing.T, versions, info string) (*testProxy, *indexUpstream, *countingUpstream) {
	t.Helper()
	iu := &indexUpstream{files: map[string][]byte{"/versions": []byte(versions), "/info/rack": []byte(info), "/names": []byte("---\nrack\n")}}
	up := newCountingUpstream(t, iu.ServeHTTP)
	return newTestProxy(t, up.URL), iu, up
}

const (
	testVersions = "created_at: 2024-04-01T00:00:05Z\n---\nrack 1.0.0,2.0.0 0123456789abcdef0123456789abcdef\n"
	testInfo     = "---\n1.0.0 |checksum:aa\n2.0.0 |checksum:bb\n"
)

// validators returns the compact-index headers expected for body.
func validators(body string) map[string]string {
	m := md5.Sum([]byte(body))
	s := sha256.Sum256([]byte(body))
	b64 := base64.StdEncoding.EncodeToString(s[:])
	return map[string]string{
		"Etag":          `"` + hex.EncodeToString(m[:]) + `"`,
		"Repr-Digest":   "sha-256=:" + b64 + ":",
		"Digest":        "sha-256=" + b64,
		"Accept-Ranges": "bytes",
		"Content-Type":  "text/plain; charset=utf-8",
	}
}

// checkValidators fails unless resp carries the full-body validators of body.
func checkValidators(t *testing.T, resp *http.Response, body string) {
	t.Helper()
	for k, v := range validators(body) {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestCompactIndexServing(t *testing.T) {
	tp, _, _ := newIndexProxy(t, testVersions, testInfo)
	etag := validators(testVersions)["Etag"]
	bare := strings.Trim(etag, `"`)
	n := len(testVersions)
	tests := []struct {
		name    string
		method  string
		header  []string
		status  int
		body    string
		headers map[string]string
	}{
		{name: "full", method: "GET", status: 200, body: testVersions},
		{name: "head", method: "HEAD", status: 200, body: "", headers: map[string]string{"Content-Length": fmt.Sprint(n)}},
		{name: "inm quoted", method: "GET", header: []string{"If-None-Match", etag}, status: 304},
		{name: "inm weak", method: "GET", header: []string{"If-None-Match", "W/" + etag}, status: 304},
		{name: "inm unquoted (bundler 2.5.0-2.5.4)", method: "GET", header: []string{"If-None-Match", bare}, status: 304},
		{name: "inm list", method: "GET", header: []string{"If-None-Match", `"nope", ` + etag}, status: 304},
		{name: "inm star", method: "GET", header: []string{"If-None-Match", "*"}, status: 304},
		{name: "inm before range", method: "GET", header: []string{"If-None-Match", etag, "Range", fmt.Sprintf("bytes=%d-", n-1)}, status: 304},
		{name: "inm mismatch", method: "GET", header: []string{"If-None-Match", `"0000"`}, status: 200, body: testVersions},
		{name: "range tail", method: "GET", header: []string{"Range", fmt.Sprintf("bytes=%d-", n-1)}, status: 206, body: "\n",
			headers: map[string]string{"Content-Range": fmt.Sprintf("bytes %d-%d/%d", n-1, n-1, n)}},
		{name: "range n-m", method: "GET", header: []string{"Range", "bytes=0-9"}, status: 206, body: testVersions[:10]},
		{name: "range suffix", method: "GET", header: []string{"Range", "bytes=-5"}, status: 206, body: testVersions[n-5:]},
		{name: "range end MaxInt64 is clamped", method: "GET", header: []string{"Range", "bytes=0-9223372036854775807"}, status: 206, body: testVersions},
		{name: "range beyond end is 200 not 416", method: "GET", header: []string{"Range", fmt.Sprintf("bytes=%d-", n)}, status: 200, body: testVersions},
		{name: "multiple ranges give full", method: "GET", header: []string{"Range", "bytes=0-1,3-4"}, status: 200, body: testVersions},
		{name: "if-range mismatch gives full", method: "GET", header: []string{"Range", "bytes=5-", "If-Range", `"old"`}, status: 200, body: testVersions},
		{name: "if-range match", method: "GET", header: []string{"Range", "bytes=5-", "If-Range", etag}, status: 206, body: testVersions[5:]},
		{name: "explicit gzip only is identity", method: "GET", header: []string{"Accept-Encoding", "gzip"}, status: 200, body: testVersions,
			headers: map[string]string{"Content-Encoding": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := tp.do(t, tt.method, "/versions", tt.header...)
			if resp.StatusCode != tt.status || string(body) != tt.body {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tt.status, tt.body)
			}
			checkValidators(t, resp, testVersions)
			for k, v := range tt.headers {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestCompactIndexGzip(t *testing.T) {
	tp, _, _ := newIndexProxy(t, testVersions, testInfo)
	tp.do(t, "GET", "/versions")
	for _, ae := range []string{"gzip;q=1.0,deflate;q=0.6,identity;q=0.3", "gzip, deflate, br"} {
		resp, body := tp.do(t, "GET", "/versions", "Accept-Encoding", ae)
		if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" {
			t.Fatalf("%q: Content-Encoding %q Vary %q", ae, resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		if string(plain) != testVersions {
			t.Fatalf("gzip body decodes to %q", plain)
		}
		checkValidators(t, resp, testVersions)
	}
	resp, body := tp.do(t, "GET", "/versions", "Accept-Encoding", "gzip;q=1.0", "Range", "bytes=3-")
	if resp.StatusCode != 206 || resp.Header.Get("Content-Encoding") != "" || string(body) != testVersions[3:] {
		t.Fatalf("ranged request: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), body)
	}
}

// refreshCounter reads gemproxy_compactindex_refreshes_total{path}.
func refreshCounter(tp *testProxy, path string) float64 {
	return testutil.ToFloat64(tp.m.CompactIndexRefreshes.WithLabelValues(path))
}

// refreshBytes reads gemproxy_compactindex_refresh_bytes_total{path}.
func refreshBytes(tp *testProxy, path string) float64 {
	return testutil.ToFloat64(tp.m.CompactIndexRefreshBytes.WithLabelValues(path))
}

func TestVersionsAppendRefresh(t *testing.T) {
	// A multi-megabyte /versions, as in production (20 MB there).
	var b strings.Builder
	b.WriteString("created_at: 2024-04-01T00:00:05Z\n---\n")
	for i := 0; b.Len() < 5<<20; i++ {
		fmt.Fprintf(&b, "gem%06d 1.0.%d,1.1.0 %032x\n", i, i%10, i)
	}
	base := b.String()
	tp, iu, up := newIndexProxy(t, base, testInfo)
	// Re-compressing 5 MB under the race detector can take longer than
	// the 2 s revalidation deadline; this test is about bytes moved.
	tp.opts.TunePolicy(ClassVersions, func(pol *Policy) { pol.RevalidateTimeout = time.Minute })
	if resp, body := tp.do(t, "GET", "/versions"); resp.StatusCode != 200 || string(body) != base {
		t.Fatalf("first fetch: %d, %d bytes", resp.StatusCode, len(body))
	}

	// Unchanged upstream: a 304, no body moved.
	tp.clock.Advance(2 * time.Minute)
	resp, body := tp.do(t, "GET", "/versions")
	if string(body) != base || resp.Header.Get("X-Cache") != "REVALIDATED" {
		t.Fatalf("unchanged refresh: %q", resp.Header.Get("X-Cache"))
	}
	if got := up.header("/versions").Get("Range"); got != fmt.Sprintf("bytes=%d-", len(base)-1) {
		t.Errorf("refresh Range = %q", got)
	}
	if refreshCounter(tp, "not_modified") != 1 || refreshBytes(tp, "not_modified") != 0 {
		t.Errorf("not_modified refreshes = %v (%v bytes)", refreshCounter(tp, "not_modified"), refreshBytes(tp, "not_modified"))
	}

	// Two pushes appended upstream: the refresh moves only the tail.
	grown := base + "rack 3.0.0 ffffffffffffffffffffffffffffffff\nnewgem 0.1.0 eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee\n"
	iu.set("/versions", []byte(grown))
	tp.clock.Advance(2 * time.Minute)
	resp, body = tp.do(t, "GET", "/versions")
	if string(body) != grown {
		t.Fatalf("after append: got %d bytes, want %d", len(body), len(grown))
	}
	checkValidators(t, resp, grown)
	moved := refreshBytes(tp, "append")
	t.Logf("/versions of %d bytes refreshed by append: %v bytes transferred", len(grown), moved)
	if refreshCounter(tp, "append") != 1 || moved > 1024 {
		t.Fatalf("append refreshes = %v moving %v bytes; want 1 moving under 1 KiB", refreshCounter(tp, "append"), moved)
	}
	if refreshCounter(tp, "full") != 0 {
		t.Fatalf("a full refresh happened")
	}
	// The stored entry serves Range appends for clients too.
	resp, body = tp.do(t, "GET", "/versions", "Range", fmt.Sprintf("bytes=%d-", len(base)-1))
	if resp.StatusCode != 206 || string(body) != grown[len(base)-1:] {
		t.Fatalf("client range after append: %d %q", resp.StatusCode, body)
	}
}

func TestCompactIndexRefreshFallsBackToFull(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(iu *indexUpstream)
		next   string
	}{
		{"no digest on 206", func(iu *indexUpstream) { iu.noDigest = true }, testVersions + "rack 3.0.0 ffffffffffffffffffffffffffffffff\n"},
		{"digest mismatch on 206", func(iu *indexUpstream) { iu.wrongDigest = true }, testVersions + "rack 3.0.0 ffffffffffffffffffffffffffffffff\n"},
		{"file shrank (monthly rebuild): 416", func(*indexUpstream) {}, "created_at: 2024-05-01T00:00:05Z\n---\nrack 2.0.0 0a\n"},
		{"file rewritten, same length: first byte differs", func(*indexUpstream) {}, strings.Repeat("x", len(testVersions)-1) + "y" + "more\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp, iu, _ := newIndexProxy(t, testVersions, testInfo)
			tp.do(t, "GET", "/versions")
			tt.mutate(iu)
			iu.set("/versions", []byte(tt.next))
			tp.clock.Advance(2 * time.Minute)
			resp, body := tp.do(t, "GET", "/versions")
			if tt.name == "digest mismatch on 206" {
				// The full body fails the same digest: nothing is stored and
				// the previous copy is served, marked stale.
				if string(body) != testVersions || resp.Header.Get("X-Cache") != "STALE" {
					t.Fatalf("served %q (%s), want the stale copy", body, resp.Header.Get("X-Cache"))
				}
				return
			}
			if string(body) != tt.next {
				t.Fatalf("served %q, want %q", body, tt.next)
			}
			if refreshCounter(tp, "full") != 1 || refreshCounter(tp, "append") != 0 {
				t.Fatalf("refresh paths: full=%v append=%v", refreshCounter(tp, "full"), refreshCounter(tp, "append"))
			}
		})
	}
}

func TestInfoCoherentWithVersions(t *testing.T) {
	tp, iu, up := newIndexProxy(t, testVersions, testInfo)
	tp.opts.TunePolicy(ClassInfo, func(pol *Policy) { pol.TTL = 10 * time.Minute })
	tp.do(t, "GET", "/versions")
	tp.do(t, "GET", "/info/rack")
	// A push: /info/rack grows and /versions names its new MD5.
	newInfo := testInfo + "3.0.0 |checksum:cc\n"
	sum := md5.Sum([]byte(newInfo))
	iu.set("/info/rack", []byte(newInfo))
	iu.set("/versions", []byte(testVersions+"rack 3.0.0 "+hex.EncodeToString(sum[:])+"\n"))
	// /versions expires (past its TTL and stale-while-revalidate window);
	// /info/rack is still fresh by its own TTL but must not be served
	// beside the new /versions.
	tp.clock.Advance(100 * time.Second)
	tp.do(t, "GET", "/versions")
	before := up.count("/info/rack")
	resp, body := tp.do(t, "GET", "/info/rack")
	if string(body) != newInfo {
		t.Fatalf("/info/rack after /versions refresh = %q, want %q", body, newInfo)
	}
	if up.count("/info/rack") != before+1 || resp.Header.Get("X-Cache") != "REVALIDATED" {
		t.Fatalf("/info/rack was not revalidated (X-Cache %q)", resp.Header.Get("X-Cache"))
	}
}

func TestCoherenceOnFreshInfo(t *testing.T) {
	tp, iu, up := newIndexProxy(t, testVersions, testInfo)
	tp.do(t, "GET", "/info/rack")
	// /info/rack is fresh; the /versions fetched next lists another MD5.
	newInfo := testInfo + "3.0.0 |checksum:cc\n"
	sum := md5.Sum([]byte(newInfo))
	iu.set("/info/rack", []byte(newInfo))
	iu.set("/versions", []byte(testVersions+"rack 3.0.0 "+hex.EncodeToString(sum[:])+"\n"))
	tp.do(t, "GET", "/versions")
	_, body := tp.do(t, "GET", "/info/rack")
	if string(body) != newInfo || up.count("/info/rack") != 2 {
		t.Fatalf("/info/rack = %q after %d fetches", body, up.count("/info/rack"))
	}
}

func TestFullIndexIfModifiedSince(t *testing.T) {
	lm := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("\x04\b[\x00"))
	zw.Close()
	specs := gz.Bytes()
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=31536000")
		w.Header().Set("ETag", `"s3etag"`)
		http.ServeContent(w, r, "", lm, bytes.NewReader(specs))
	})
	tp := newTestProxy(t, up.URL)
	resp, body := tp.do(t, "GET", "/specs.4.8.gz")
	if !bytes.Equal(body, specs) || resp.Header.Get("Last-Modified") != lm.Format(http.TimeFormat) {
		t.Fatalf("specs: %q Last-Modified %q", body, resp.Header.Get("Last-Modified"))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "max-age=60, public" {
		t.Errorf("Cache-Control %q: the origin's one-year max-age must not reach clients", cc)
	}
	if resp.Header.Get("Content-Encoding") != "" {
		t.Error("specs.4.8.gz must never carry Content-Encoding")
	}
	resp, _ = tp.do(t, "GET", "/specs.4.8.gz", "If-Modified-Since", lm.Add(time.Hour).Format(http.TimeFormat))
	if resp.StatusCode != 304 {
		t.Fatalf("If-Modified-Since: %d, want 304", resp.StatusCode)
	}
	tp.clock.Advance(2 * time.Minute)
	tp.do(t, "GET", "/specs.4.8.gz")
	h := up.header("/specs.4.8.gz")
	if h.Get("If-None-Match") != `"s3etag"` || h.Get("If-Modified-Since") != lm.Format(http.TimeFormat) {
		t.Fatalf("revalidation headers: %v", h)
	}
}
