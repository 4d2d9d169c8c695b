package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/accesslog"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// recorded is what the upstream received for one request.
type recorded struct {
	method, path, query string
	header              http.Header
	bodySHA             string
	bodyLen             int64
}

// recordingUpstream records every request and answers with respond.
type recordingUpstream struct {
	mu   sync.Mutex
	reqs []recorded
}

// handler returns an http.HandlerFunc recording into u, then calling respond.
func (u *recordingUpstream) handler(respond func(w http.ResponseWriter, r *http.Request, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		var keep bytes.Buffer
		n, _ := io.Copy(io.MultiWriter(h, &limitedBuffer{&keep, 1 << 20}), r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), hex.EncodeToString(h.Sum(nil)), n})
		u.mu.Unlock()
		respond(w, r, keep.Bytes())
	}
}

// last returns the last recorded request.
func (u *recordingUpstream) last(t *testing.T) recorded {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("upstream received nothing")
	}
	return u.reqs[len(u.reqs)-1]
}

// limitedBuffer keeps at most limit bytes.
type limitedBuffer struct {
	b     *bytes.Buffer
	limit int
}

// Write keeps a prefix and reports everything written.
func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.limit - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// TestPushToHostWithTrailingSlash: `gem push --host http://gemproxy:9292/`
// asks for //api/v1/gems; it reaches the upstream as /api/v1/gems, and an
// answer without Content-Type gets none added.
func TestPushToHostWithTrailingSlash(t *testing.T) {
	rec := &recordingUpstream{}
	up := newCountingUpstream(t, rec.handler(func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header()["Content-Type"] = nil // no sniffed type either
		io.WriteString(w, "Successfully registered gem: x (1.0)")
	}))
	tp := newTestProxy(t, up.URL)
	conn, err := net.Dial("tcp", tp.listen(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST //api/v1/gems HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\nContent-Length: 3\r\n\r\ngem")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := rec.last(t); resp.StatusCode != 200 || got.path != "/api/v1/gems" || got.bodyLen != 3 {
		t.Fatalf("client got %d; upstream got %s %s with %d bytes", resp.StatusCode, got.method, got.path, got.bodyLen)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		t.Errorf("Content-Type %q added to an answer that had none", ct)
	}
}

func TestWritesForwardedUnchanged(t *testing.T) {
	rec := &recordingUpstream{}
	up := newCountingUpstream(t, rec.handler(func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("WWW-Authenticate", `Basic realm="Application"`)
		w.Header().Set("Retry-After", "7")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Cache-Control", "private, no-store")
		w.Header().Set("Vary", "Cookie, Authorization")
		w.WriteHeader(401)
		io.WriteString(w, "You have enabled multifactor authentication but no OTP code provided. Please fill it and retry.")
	}))
	tp := newTestProxy(t, up.URL)
	gem := bytes.Repeat([]byte("gem\x00bytes"), 1000)
	addr := tp.listen(t)
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/gems?x=1", bytes.NewReader(gem))
	req.Header.Set("Authorization", "rubygems_0123456789abcdef")
	req.Header.Set("OTP", "123456")
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Accept", "*/*")
	req.Header.Set("User-Agent", "RubyGems/3.3.15 x86_64-linux Ruby/3.1.2")
	req.Header.Set("Keep-Alive", "30")
	req.Header.Set("Te", "trailers")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || string(body) != "You have enabled multifactor authentication but no OTP code provided. Please fill it and retry." {
		t.Fatalf("client got %d %q", resp.StatusCode, body)
	}
	for k, v := range map[string]string{"Www-Authenticate": `Basic realm="Application"`, "Retry-After": "7",
		"Access-Control-Allow-Origin": "*", "Cache-Control": "private, no-store", "Vary": "Cookie, Authorization", "Content-Type": "text/plain"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("response %s = %q, want %q", k, got, v)
		}
	}
	got := rec.last(t)
	sum := sha256.Sum256(gem)
	if got.method != "POST" || got.path != "/api/v1/gems" || got.query != "x=1" || got.bodySHA != hex.EncodeToString(sum[:]) {
		t.Fatalf("upstream got %s %s?%s body %s", got.method, got.path, got.query, got.bodySHA)
	}
	for k, v := range map[string]string{"Authorization": "rubygems_0123456789abcdef", "Otp": "123456",
		"Content-Type": "application/octet-stream", "Accept": "*/*", "Content-Length": fmt.Sprint(len(gem)),
		"User-Agent": "RubyGems/3.3.15 x86_64-linux Ruby/3.1.2 gemproxy/test"} {
		if v == "" {
			continue
		}
		if got.header.Get(k) != v && !(k == "Content-Length" && got.bodyLen == int64(len(gem))) {
			t.Errorf("upstream %s = %q, want %q", k, got.header.Get(k), v)
		}
	}
	for _, k := range []string{"Keep-Alive", "Te"} {
		if got.header.Get(k) != "" {
			t.Errorf("hop-by-hop %s forwarded", k)
		}
	}
}

func TestMultipartPushAndYankFormForwarded(t *testing.T) {
	rec := &recordingUpstream{}
	up := newCountingUpstream(t, rec.handler(func(w http.ResponseWriter, r *http.Request, body []byte) {
		if r.Method == "DELETE" {
			io.WriteString(w, "Successfully deleted gem: rack (1.0.0)")
			return
		}
		io.WriteString(w, "Successfully registered gem: rack (1.0.0)")
	}))
	tp := newTestProxy(t, up.URL)
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	fw, _ := mw.CreateFormFile("gem", "rack-1.0.0.gem")
	fw.Write([]byte("gem body"))
	mw.WriteField("attestations", `[{"x":1}]`)
	mw.Close()
	pr, _ := http.NewRequest("POST", "http://gemproxy/api/v1/gems", bytes.NewReader(form.Bytes()))
	pr.Header.Set("Authorization", "key")
	pr.Header.Set("Content-Type", mw.FormDataContentType())
	presp, err := tp.App().Test(pr, -1)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(presp.Body)
	if string(body) != "Successfully registered gem: rack (1.0.0)" {
		t.Fatalf("push answer %q", body)
	}
	got := rec.last(t)
	sum := sha256.Sum256(form.Bytes())
	if got.header.Get("Content-Type") != mw.FormDataContentType() || got.bodySHA != hex.EncodeToString(sum[:]) {
		t.Fatalf("multipart not forwarded byte-for-byte: %q %s", got.header.Get("Content-Type"), got.bodySHA)
	}

	req := strings.NewReader("gem_name=rack&version=1.0.0")
	r, _ := http.NewRequest("DELETE", "http://gemproxy/api/v1/gems/yank", req)
	r.Header.Set("Authorization", "key")
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	yresp, err := tp.App().Test(r, -1)
	if err != nil {
		t.Fatal(err)
	}
	yb, _ := io.ReadAll(yresp.Body)
	if string(yb) != "Successfully deleted gem: rack (1.0.0)" {
		t.Fatalf("yank answer %q", yb)
	}
	got = rec.last(t)
	if got.method != "DELETE" || got.path != "/api/v1/gems/yank" || got.bodyLen != int64(len("gem_name=rack&version=1.0.0")) {
		t.Fatalf("yank forwarded as %s %s with %d body bytes", got.method, got.path, got.bodyLen)
	}
}

func TestWriteInvalidatesCachedEntries(t *testing.T) {
	gem := []byte("rack gem")
	info := "---\n" + infoLine("1.0.0", gem)
	var mu sync.Mutex
	current := info
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == "POST":
			current += infoLine("2.0.0", gem)
			io.WriteString(w, "Successfully registered gem: rack (2.0.0)")
		case r.Method == "DELETE":
			current = "---\n" + infoLine("2.0.0", gem)
			io.WriteString(w, "Successfully deleted gem: rack (1.0.0)")
		case r.URL.Path == "/info/rack":
			compactHeaders(w, []byte(current))
			io.WriteString(w, current)
		case r.URL.Path == "/gems/rack-1.0.0.gem":
			w.Write(gem)
		case r.URL.Path == "/api/v1/gems/rack.json":
			w.Header().Set("Cache-Control", "max-age=60, public")
			fmt.Fprintf(w, `{"info":%q}`, current)
		}
	})
	// The yank names its gem in a form body (gem yank) or in the query
	// (the API documentation's form); both invalidate.
	for _, tc := range []struct{ keep, inQuery bool }{{false, false}, {true, false}, {false, true}} {
		keep := tc.keep
		t.Run(fmt.Sprintf("keep_yanked=%v,query=%v", keep, tc.inQuery), func(t *testing.T) {
			mu.Lock()
			current = info
			mu.Unlock()
			tp := newTestProxy(t, up.URL, func(o *Options) { o.KeepYanked = keep })
			tp.do(t, "GET", "/info/rack")
			tp.do(t, "GET", "/api/v1/gems/rack.json")
			tp.do(t, "GET", "/gems/rack-1.0.0.gem")
			tp.do(t, "POST", "/api/v1/gems", "Authorization", "k")
			_, body := tp.do(t, "GET", "/info/rack")
			if !strings.Contains(string(body), "2.0.0") {
				t.Fatalf("/info/rack right after push = %q", body)
			}
			_, body = tp.do(t, "GET", "/api/v1/gems/rack.json")
			if !strings.Contains(string(body), "2.0.0") {
				t.Fatalf("API after push = %q", body)
			}
			r, _ := http.NewRequest("DELETE", "http://gemproxy/api/v1/gems/yank", strings.NewReader("gem_name=rack&version=1.0.0"))
			if tc.inQuery {
				r, _ = http.NewRequest("DELETE", "http://gemproxy/api/v1/gems/yank?gem_name=rack&version=1.0.0", nil)
			}
			r.Header.Set("Authorization", "k")
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if _, err := tp.App().Test(r, -1); err != nil {
				t.Fatal(err)
			}
			if e := tp.store.Peek("/gems/rack-1.0.0.gem"); (e != nil) != keep {
				t.Fatalf("yanked gem kept=%v, want %v", e != nil, keep)
			}
			_, body = tp.do(t, "GET", "/info/rack")
			if strings.Contains(string(body), "1.0.0") {
				t.Fatalf("/info/rack right after yank = %q", body)
			}
		})
	}
}

func TestCredentialedRequestsBypassCache(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60, public")
		fmt.Fprintf(w, "answer for %q %q %q", r.Header.Get("Authorization"), r.Header.Get("OTP"), r.Header.Get("Cookie"))
	})
	tp := newTestProxy(t, up.URL)
	_, anon := tp.do(t, "GET", "/api/v1/gems/rack.json")
	for _, h := range [][]string{{"Authorization", "key-a"}, {"OTP", "111111"}, {"Cookie", "session=1"}} {
		t.Run(h[0], func(t *testing.T) {
			for i := 0; i < 2; i++ {
				resp, body := tp.do(t, "GET", "/api/v1/gems/rack.json", h...)
				if bytes.Equal(body, anon) || resp.Header.Get("X-Cache") == "HIT" {
					t.Fatalf("credentialed request answered from the cache: %q", body)
				}
			}
		})
	}
	// The anonymous entry was never replaced by a credentialed answer.
	_, again := tp.do(t, "GET", "/api/v1/gems/rack.json")
	if !bytes.Equal(again, anon) {
		t.Fatalf("anonymous entry changed to %q", again)
	}
	if n := up.count("/api/v1/gems/rack.json"); n != 7 {
		t.Fatalf("upstream saw %d requests, want 7 (1 anonymous + 6 credentialed)", n)
	}
}

func TestPrivateResponsesNeverStored(t *testing.T) {
	tests := []struct{ name, header, value string }{
		{"private", "Cache-Control", "private, max-age=60"},
		{"no-store", "Cache-Control", "no-store"},
		{"no-cache", "Cache-Control", "max-age=60, no-cache"},
		{"set-cookie", "Set-Cookie", "session=abc"},
		{"vary authorization", "Vary", "Accept-Encoding, Authorization"},
		{"vary cookie", "Vary", "Cookie"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.header != "Cache-Control" {
					w.Header().Set("Cache-Control", "max-age=60, public")
				}
				w.Header().Add(tt.header, tt.value)
				io.WriteString(w, "private data")
			})
			tp := newTestProxy(t, up.URL)
			tp.do(t, "GET", "/api/v1/versions/rack.json")
			tp.do(t, "GET", "/api/v1/versions/rack.json")
			if n := up.count("/api/v1/versions/rack.json"); n != 2 {
				t.Fatalf("upstream saw %d requests, want 2 (never stored)", n)
			}
			if tp.store.Peek("/api/v1/versions/rack.json") != nil {
				t.Fatal("a private response was stored")
			}
		})
	}
}

func TestInterleavedCredentialsGetTheirOwnAnswers(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		who := "anonymous"
		if u, p, ok := r.BasicAuth(); ok {
			who = "basic:" + u + ":" + p
		} else if a := r.Header.Get("Authorization"); a != "" {
			who = "key:" + a
		}
		if who == "anonymous" {
			w.Header().Set("Cache-Control", "max-age=60, public")
		} else {
			w.Header().Set("Cache-Control", "private, no-store")
			w.Header().Set("Vary", "Cookie, Authorization")
		}
		fmt.Fprintf(w, "%s sees %s", who, r.URL.Path)
	})
	tp := newTestProxy(t, up.URL)
	who := [][]string{{"Authorization", "rubygems_aaaa"}, {"Authorization", "rubygems_bbbb"},
		{"Authorization", "Basic dXNlcjE6cHcx"}, {"Authorization", "Basic dXNlcjI6cHcy"}, nil}
	want := []string{"key:rubygems_aaaa", "key:rubygems_bbbb", "basic:user1:pw1", "basic:user2:pw2", "anonymous"}
	paths := []string{"/api/v1/gems.json", "/api/v1/web_hooks.json", "/api/v1/profile/me.json", "/api/v1/gems/rack.json"}
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for round := 0; round < 4; round++ {
		for i := range who {
			for _, path := range paths {
				wg.Add(1)
				go func(i int, path string) {
					defer wg.Done()
					_, body := tp.do(t, "GET", path, who[i]...)
					if exp := want[i] + " sees " + path; string(body) != exp {
						errs <- fmt.Errorf("%v on %s got %q", who[i], path, body)
					}
				}(i, path)
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestCredentialsNeverLogged(t *testing.T) {
	const key = "rubygems_5ecret0000000000000000000000000000000000000"
	const otp = "987654"
	const basic = "Basic c2VjcmV0dXNlcjpzZWNyZXRwYXNzd29yZA=="
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
	})
	var logs bytes.Buffer
	var mu sync.Mutex
	out := &syncWriter{w: &logs, mu: &mu}
	access := accesslog.New(out, accesslog.Options{})
	defer access.Close()
	tp := newTestProxy(t, up.URL, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
		o.AccessLog = access
	})
	_, body := tp.do(t, "POST", "/api/v1/gems", "Authorization", key, "OTP", otp)
	_, body2 := tp.do(t, "GET", "/api/v1/profile/me.json", "Authorization", basic)
	tp.store.Sweep()
	if err := access.Flush(); err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	mfs, _ := tp.reg.Gather()
	for _, mf := range mfs {
		metrics.WriteString(mf.String())
	}
	mu.Lock()
	all := logs.String() + string(body) + string(body2) + metrics.String()
	mu.Unlock()
	if !strings.Contains(logs.String(), "endpoint=push") {
		t.Fatalf("no access log line captured: %q", logs.String())
	}
	for _, secret := range []string{key, otp, "c2VjcmV0dXNlcjpzZWNyZXRwYXNzd29yZA", "secretpassword"} {
		if strings.Contains(all, secret) {
			t.Fatalf("secret %q appears in logs, metrics or error bodies", secret)
		}
	}
}

// syncWriter serialises writes to w.
type syncWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

// Write writes p under the mutex.
func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestOnlyTheUpstreamIsContacted(t *testing.T) {
	other := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "wrong host") })
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60, public")
		io.WriteString(w, "upstream")
	})
	tp := newTestProxy(t, up.URL)
	otherHost := strings.TrimPrefix(other.URL, "http://")
	tp.do(t, "GET", "/api/v1/gems/rack.json", "X-Gemfile-Source", other.URL, "Host", otherHost)
	tp.do(t, "POST", "/api/v1/gems", "Authorization", "k", "X-Forwarded-Host", otherHost)
	tp.doRaw(t, "GET "+other.URL+"/api/v1/gems/rack.json HTTP/1.1\r\nHost: "+otherHost+"\r\n\r\n")
	tp.doRaw(t, "GET //"+otherHost+"/api/v1/x HTTP/1.1\r\nHost: x\r\n\r\n")
	tp.doRaw(t, "GET /api/v1/x@"+otherHost+" HTTP/1.1\r\nHost: x\r\n\r\n")
	if other.total() != 0 {
		t.Fatalf("another host received %d requests", other.total())
	}
}

func TestOversizedPushRefusedBeforeUpstream(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	tp := newTestProxy(t, up.URL, func(o *Options) { o.MaxBodySize = 1 << 20 })
	// The first bytes of the body follow the headers at once, as gem push does.
	status, _ := tp.doRaw(t, fmt.Sprintf("POST /api/v1/gems HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\nContent-Length: %d\r\n\r\n%s", 2<<20, strings.Repeat("x", 64<<10)))
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", status)
	}
	if up.total() != 0 {
		t.Fatal("an oversized push reached the upstream")
	}
}

// TestBrokenClientBodyIsTheClientsFault: a chunked body over the limit
// gets 413 and a malformed chunked body 400, not a 502 blaming upstream.
func TestBrokenClientBodyIsTheClientsFault(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	tp := newTestProxy(t, up.URL, func(o *Options) { o.MaxBodySize = 64 << 10 })
	tp.listen(t)
	chunk := strings.Repeat("x", 32<<10)
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"over the limit", fmt.Sprintf("%x\r\n%s\r\n%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n", len(chunk), chunk, len(chunk), chunk, len(chunk), chunk), http.StatusRequestEntityTooLarge},
		{"malformed chunk size", "zz\r\nabc\r\n0\r\n\r\n", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := tp.doRaw(t, "POST /api/v1/gems HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\nTransfer-Encoding: chunked\r\n\r\n"+tc.body)
			if status != tc.want {
				t.Fatalf("status %d %q, want %d", status, body, tc.want)
			}
		})
	}
}

// TestEmptyWriteBodyKeepsContentLength: RubyGems 3.6 asks POST
// /api/v1/webauthn_verification with Content-Length: 0; it reaches the
// upstream the same way, not as an empty chunked body (which servers that
// want a length refuse with 411). (A DELETE without a body goes out
// without either header, as net/http sends it.)
func TestEmptyWriteBodyKeepsContentLength(t *testing.T) {
	rec := &recordingUpstream{}
	tes := make(chan []string, 1)
	up := newCountingUpstream(t, rec.handler(func(w http.ResponseWriter, r *http.Request, body []byte) {
		tes <- r.TransferEncoding
		w.WriteHeader(http.StatusUnprocessableEntity)
	}))
	tp := newTestProxy(t, up.URL)
	tp.listen(t)
	for _, method := range []string{"POST", "PUT", "PATCH"} {
		status, body := tp.doRaw(t, method+" /api/v1/webauthn_verification HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\nContent-Length: 0\r\n\r\n")
		got, te := rec.last(t), <-tes
		if status != http.StatusUnprocessableEntity || got.method != method || got.bodyLen != 0 {
			t.Fatalf("%s: client got %d %q; upstream got %s with %d bytes", method, status, body, got.method, got.bodyLen)
		}
		if cl := got.header.Values("Content-Length"); len(cl) != 1 || cl[0] != "0" || len(te) != 0 {
			t.Errorf("%s: upstream got Content-Length %q, Transfer-Encoding %q; want Content-Length 0 as sent", method, cl, te)
		}
	}
}

func TestWriteRedirectNotFollowed(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	tp := newTestProxy(t, up.URL)
	resp, _ := tp.do(t, "POST", "/api/v1/gems", "Authorization", "k")
	if resp.StatusCode != http.StatusFound || up.count("/elsewhere") != 0 {
		t.Fatalf("status %d, /elsewhere requests %d: a write redirect was followed", resp.StatusCode, up.count("/elsewhere"))
	}
}

// zeroReader yields n zero bytes without allocating.
type zeroReader struct{ n int64 }

// Read fills p with zeros.
func (z *zeroReader) Read(p []byte) (int, error) {
	if z.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > z.n {
		p = p[:z.n]
	}
	clear(p)
	z.n -= int64(len(p))
	return len(p), nil
}

func TestLargePushIsStreamed(t *testing.T) {
	const size = 200 << 20
	var got int64
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, "Successfully registered gem: big (1.0.0)")
	})
	tp := newTestProxy(t, up.URL)
	addr := tp.listen(t)
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/gems", &zeroReader{n: size})
	req.ContentLength = size
	req.Header.Set("Authorization", "k")
	req.Header.Set("Content-Type", "application/octet-stream")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	client := &http.Client{Timeout: 2 * time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("200 MiB push: %d MiB allocated in total by the process while streaming", allocated>>20)
	if got != size {
		t.Fatalf("upstream received %d bytes", got)
	}
	// Buffering the body anywhere would allocate at least its size.
	if allocated > 32<<20 {
		t.Fatalf("%d MiB allocated for a 200 MiB push: the body is buffered", allocated>>20)
	}
}

// TestYankInvalidatesWhatTheOriginYanks: a yank naming one gem in the query
// and another in the body yanks the query's (Rails' params), and gemproxy
// drops that gem, not the body's.
func TestYankInvalidatesWhatTheOriginYanks(t *testing.T) {
	for _, tc := range []struct{ name, query, body string }{
		{"query wins over body", "gem_name=alpha&version=1.0.0", "gem_name=beta&version=1.0.0"},
		{"last of a repeated key", "gem_name=beta&gem_name=alpha", "gem_name=beta&version=1.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, ts := testupstream.Start(t, testupstream.Options{Keys: map[string]testupstream.KeyInfo{"key": {Owner: testupstream.DefaultOwner}}})
			up.Publish(testupstream.GemSpec{Name: "alpha", Version: "1.0.0"}, nil)
			up.Publish(testupstream.GemSpec{Name: "beta", Version: "1.0.0"}, nil)
			tp := newTestProxy(t, ts.URL)
			for _, path := range []string{"/gems/alpha-1.0.0.gem", "/gems/beta-1.0.0.gem"} {
				if resp, _ := tp.do(t, "GET", path); resp.StatusCode != 200 {
					t.Fatalf("GET %s: %d", path, resp.StatusCode)
				}
			}
			r, _ := http.NewRequest("DELETE", "http://gemproxy/api/v1/gems/yank?"+tc.query, strings.NewReader(tc.body))
			r.Header.Set("Authorization", "key")
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := tp.App().Test(r, -1)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := io.ReadAll(resp.Body); string(b) != "Successfully deleted gem: alpha (1.0.0)" {
				t.Fatalf("yank answered %d %q", resp.StatusCode, b)
			}
			if e := tp.store.Peek("/gems/alpha-1.0.0.gem"); e != nil {
				t.Error("the gem the origin yanked is still cached")
			}
			if e := tp.store.Peek("/gems/beta-1.0.0.gem"); e == nil {
				t.Error("the gem the origin kept was dropped")
			}
			want, _ := up.Body("/info/alpha")
			if _, body := tp.do(t, "GET", "/info/alpha"); !bytes.Equal(body, want) {
				t.Errorf("/info/alpha right after the yank = %q, upstream has %q", body, want)
			}
		})
	}
}
