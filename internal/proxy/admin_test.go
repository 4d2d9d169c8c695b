package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// testAdminToken is the admin token of the tests' proxies.
const testAdminToken = "test-admin-token-0123456789"

// newAdminProxy builds a proxy with the admin API (token "" for none) in
// front of an upstream answering every path with its own path, logging
// into lc unless it is nil, and caches adminPaths through it.
func newAdminProxy(t *testing.T, token string, lc *logCapture) (*testProxy, *countingUpstream) {
	t.Helper()
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60, public")
		io.WriteString(w, r.URL.Path)
	})
	tp := newTestProxy(t, up.URL, func(o *Options) {
		o.AdminToken = token
		if lc != nil {
			lc.capture(o)
		}
	})
	for _, p := range adminPaths {
		if resp, body := tp.do(t, "GET", p); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %q", p, resp.StatusCode, body)
		}
	}
	return tp, up
}

// cachedKeys lists the keys of paths still cached.
func cachedKeys(tp *testProxy, paths []string) []string {
	var out []string
	for _, p := range paths {
		if tp.store.Peek(p) != nil {
			out = append(out, p)
		}
	}
	return out
}

// bearer is the Authorization header value for token.
func bearer(token string) string { return "Bearer " + token }

// adminPaths are some of the paths used below.
var adminPaths = []string{"/info/rack", "/info/rails", "/info/railties", "/api/v1/gems/rails.json"}

// TestAdminAbsentWithoutToken: without a token every /-/ path is answered
// exactly as an unknown path, and changes nothing.
func TestAdminAbsentWithoutToken(t *testing.T) {
	tp, up := newAdminProxy(t, "", nil)
	before := up.total()
	for _, tc := range []struct{ method, path, unknown string }{
		{"GET", AdminStatsPath, "/no/such/path"},
		{"POST", AdminPurgePath + "?prefix=/", "/no/such/path?prefix=/"},
		{"POST", AdminVerifyPath, "/no/such/path"},
		{"GET", "/-/", "/no/"},
	} {
		resp, body := tp.do(t, tc.method, tc.path, "Authorization", bearer(testAdminToken))
		wantResp, wantBody := tp.do(t, tc.method, tc.unknown, "Authorization", bearer(testAdminToken))
		if resp.StatusCode != wantResp.StatusCode || !bytes.Equal(body, wantBody) ||
			resp.Header.Get("Content-Type") != wantResp.Header.Get("Content-Type") || resp.StatusCode/100 != 4 {
			t.Errorf("%s %s: %d %q; an unknown path gets %d %q", tc.method, tc.path, resp.StatusCode, body, wantResp.StatusCode, wantBody)
		}
	}
	if got := cachedKeys(tp, adminPaths); len(got) != len(adminPaths) {
		t.Errorf("cached after the requests: %v", got)
	}
	if up.total() != before {
		t.Errorf("the upstream got %d requests", up.total()-before)
	}
}

// TestAdminRefusesWithoutTheToken: a missing or wrong token gets 401 with
// WWW-Authenticate: Bearer, and nothing is purged. Refusals are logged,
// no token is.
func TestAdminRefusesWithoutTheToken(t *testing.T) {
	var lc logCapture
	tp, _ := newAdminProxy(t, testAdminToken, &lc)
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer n0t-the-t0ken", bearer(testAdminToken + "x"),
		bearer(testAdminToken[:len(testAdminToken)-1]), testAdminToken, "Basic " + testAdminToken, "Bearer  " + testAdminToken} {
		for _, target := range []struct{ method, path string }{
			{"GET", AdminStatsPath}, {"POST", AdminPurgePath + "?prefix=/"}, {"POST", AdminVerifyPath},
		} {
			var header []string
			if auth != "" {
				header = []string{"Authorization", auth}
			}
			resp, body := tp.do(t, target.method, target.path, header...)
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("%s %s with Authorization %q: %d %q, WWW-Authenticate %q; want 401, Bearer",
					target.method, target.path, auth, resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
			}
		}
	}
	if got := cachedKeys(tp, adminPaths); len(got) != len(adminPaths) {
		t.Errorf("cached after refused purges: %v, want %v", got, adminPaths)
	}
	lc.mu.Lock()
	defer lc.mu.Unlock()
	logged := lc.buf.String()
	if !strings.Contains(logged, "admin request refused") || strings.Contains(logged, testAdminToken[:8]) || strings.Contains(logged, "n0t-the-t0ken") {
		t.Errorf("log of refused admin requests:\n%s", logged)
	}
}

// TestAdminStatsMatchesStore: GET /-/stats is the store's Stats as JSON.
func TestAdminStatsMatchesStore(t *testing.T) {
	tp, _ := newAdminProxy(t, testAdminToken, nil)
	tp.do(t, "GET", "/info/rack") // a hit
	resp, body := tp.do(t, "GET", AdminStatsPath, "Authorization", bearer(testAdminToken))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /-/stats: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var got cache.Stats
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	want := tp.store.Stats()
	if got.Bytes != want.Bytes || got.Writes != want.Writes || got.Evictions != want.Evictions || len(got.Classes) != len(want.Classes) {
		t.Errorf("stats %+v, store says %+v", got, want)
	}
	for class, w := range want.Classes {
		g := got.Classes[class]
		if g.Entries != w.Entries || g.Bytes != w.Bytes || g.Hits != w.Hits || !g.Oldest.Equal(w.Oldest) || !g.Newest.Equal(w.Newest) {
			t.Errorf("class %s: %+v, store says %+v", class, g, w)
		}
	}
	if want.Classes["info"].Entries != 3 || want.Classes["info"].Hits != 1 {
		t.Errorf("store stats %+v: want 3 info entries and 1 hit", want.Classes["info"])
	}
}

// TestAdminPurgeByPrefix: POST /-/purge removes exactly the entries whose
// key starts with the prefix; a prefix that is not a path is refused.
func TestAdminPurgeByPrefix(t *testing.T) {
	tp, _ := newAdminProxy(t, testAdminToken, nil)
	for _, bad := range []string{"", "?prefix=", "?prefix=info/", "?prefix=*"} {
		resp, body := tp.do(t, "POST", AdminPurgePath+bad, "Authorization", bearer(testAdminToken))
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST /-/purge%s: %d %q, want 400", bad, resp.StatusCode, body)
		}
	}
	resp, body := tp.do(t, "POST", AdminPurgePath+"?prefix=/info/rail", "Authorization", bearer(testAdminToken))
	var res PurgeResult
	if err := json.Unmarshal(body, &res); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /-/purge: %d %q %v", resp.StatusCode, body, err)
	}
	if res.Removed != 2 || res.File.Bytes == 0 || res.File.Reusable == 0 {
		t.Errorf("purge result %+v: want 2 removed and the file's usage", res)
	}
	if got, want := cachedKeys(tp, adminPaths), []string{"/info/rack", "/api/v1/gems/rails.json"}; !slices.Equal(got, want) {
		t.Errorf("cached after purging /info/rail: %v, want %v", got, want)
	}
}

// TestAdminOtherSpellingsUnreachable: only the exact paths reach the admin
// API; every other spelling is an unknown or refused path, purges
// nothing and is not sent upstream.
func TestAdminOtherSpellingsUnreachable(t *testing.T) {
	tp, up := newAdminProxy(t, testAdminToken, nil)
	before := up.total()
	auth := "Authorization: " + bearer(testAdminToken) + "\r\n"
	for _, target := range []string{"//-/stats", "/-/stats/", "/%2D/stats", "/%2d/stats", "/-/Stats", "/-//stats",
		"/-/./stats", "/./-/stats", "/-/stats%2F", "/-/%73tats", "/x/../-/stats"} {
		for _, method := range []string{"GET", "POST"} {
			if method == "POST" {
				target = strings.Replace(target, "stats", "purge", 1) + "?prefix=/"
			}
			status, body := tp.doRaw(t, method+" "+target+" HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Length: 0\r\nConnection: close\r\n\r\n")
			if status != http.StatusNotFound && status != http.StatusBadRequest && status != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d %q; want 400, 404 or 405", method, target, status, body)
			}
		}
	}
	if got := cachedKeys(tp, adminPaths); len(got) != len(adminPaths) {
		t.Errorf("cached after the requests: %v", got)
	}
	if up.total() != before {
		t.Errorf("the upstream got %d requests", up.total()-before)
	}
	// The exact path does answer on that same server.
	if status, body := tp.doRaw(t, "GET "+AdminStatsPath+" HTTP/1.1\r\nHost: x\r\n"+auth+"Connection: close\r\n\r\n"); status != http.StatusOK {
		t.Errorf("GET %s: %d %q", AdminStatsPath, status, body)
	}
}

// corruptOnDisk flips a byte in every copy of a stretch of body found in
// the bbolt file at path, as bit rot would, under the running store (which
// reads the file through a shared mapping).
func corruptOnDisk(t *testing.T, path string, body []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	needle := body[len(body)/2 : len(body)/2+64]
	copies := 0
	for off := 0; ; copies++ {
		i := bytes.Index(data[off:], needle)
		if i < 0 {
			break
		}
		off += i
		if _, err := f.WriteAt([]byte{data[off] ^ 0xff}, int64(off)); err != nil {
			t.Fatal(err)
		}
		off++
	}
	if copies == 0 {
		t.Fatal("the body is not in the file")
	}
}

// TestAdminVerifyRemovesCorruptedEntry corrupts a cached gem on disk under
// the running proxy: POST /-/verify reports it and removes it through the
// live store, and the next GET fetches it again from the upstream.
func TestAdminVerifyRemovesCorruptedEntry(t *testing.T) {
	spec := testupstream.GemSpec{Name: "rotten", Version: "1.0.0", Padding: 300 << 10}
	up, ts := testupstream.Start(t, testupstream.Options{})
	up.Publish(spec, nil)
	gem, err := testupstream.BuildGem(spec)
	if err != nil {
		t.Fatal(err)
	}
	tp := newTestProxy(t, ts.URL, func(o *Options) { o.AdminToken = testAdminToken })
	const path = "/gems/rotten-1.0.0.gem"
	for range 2 {
		if resp, body := tp.do(t, "GET", path); resp.StatusCode != http.StatusOK || !bytes.Equal(body, gem) {
			t.Fatalf("GET %s: %d, %d bytes", path, resp.StatusCode, len(body))
		}
	}
	corruptOnDisk(t, filepath.Join(tp.dir, cache.FileName), gem)

	req, _ := http.NewRequest("POST", "http://"+tp.listen(t)+AdminVerifyPath, nil)
	req.Header.Set("Authorization", bearer(testAdminToken))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("POST /-/verify: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var lines []VerifyLine
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		var l VerifyLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 2 {
		t.Fatalf("verify answered %+v; want a problem line and a summary", lines)
	}
	if p := lines[0].Problem; p == nil || p.Key != path || !p.Removed || !strings.Contains(p.Reason, "MD5") {
		t.Errorf("problem line %+v", lines[0])
	}
	last := lines[len(lines)-1]
	if !last.Done || last.Error != "" || last.Problems != 1 || last.Removed != 1 || last.Checked != last.Total || last.File == nil {
		t.Errorf("summary line %+v", last)
	}

	requests := up.Requests(path)
	got, body := tp.do(t, "GET", path)
	if got.StatusCode != http.StatusOK || got.Header.Get("X-Cache") != "MISS" || !bytes.Equal(body, gem) {
		t.Errorf("GET after verify: %d %s, %d bytes (intact %v)", got.StatusCode, got.Header.Get("X-Cache"), len(body), bytes.Equal(body, gem))
	}
	if up.Requests(path) != requests+1 {
		t.Errorf("the upstream got %d requests for the gem after verify, want 1", up.Requests(path)-requests)
	}
}
