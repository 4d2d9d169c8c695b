package testupstream

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// ciFixture publishes a small set of gems with a fake clock.
type ciFixture struct {
	up   *Server           // the upstream
	url  string            // its base URL
	clk  *Clock            // its clock
	gems map[string][]byte // published gems by full name
}

// newCIFixture starts a server and publishes a 1.0.0, b 2.0.0 (deps),
// b 3.0.0.pre1 and a 1.0.0-x86_64-linux, one minute apart.
func newCIFixture(t *testing.T, opts Options) *ciFixture {
	t.Helper()
	clk := newClock()
	opts.Now = clk.Now
	up, ts := Start(t, opts)
	f := &ciFixture{up: up, url: ts.URL, clk: clk, gems: map[string][]byte{}}
	for _, spec := range []GemSpec{
		{Name: "a", Version: "1.0.0"},
		{Name: "b", Version: "2.0.0", Deps: []Dep{{Name: "c", Requirement: ">= 1.0, < 3"}, {Name: "a", Requirement: "~> 1.0"}}, RequiredRuby: ">= 2.3"},
		{Name: "b", Version: "3.0.0.pre1"},
		{Name: "a", Version: "1.0.0", Platform: "x86_64-linux"},
	} {
		clk.Advance(time.Minute)
		gem, err := BuildGem(spec)
		if err != nil {
			t.Fatal(err)
		}
		f.gems[spec.FullName()] = gem
		up.Publish(spec, gem)
	}
	return f
}

// sha returns the hex SHA-256 of a fixture gem.
func (f *ciFixture) sha(full string) string { return gemSHA256Hex(f.gems[full]) }

// TestCompactIndexBytes checks the exact bytes of /versions, /info and /names after publish, yank and rebuild.
func TestCompactIndexBytes(t *testing.T) {
	f := newCIFixture(t, Options{})
	infoA := "---\n" +
		"1.0.0 |checksum:" + f.sha("a-1.0.0") + ",created_at:2026-05-01T12:01:00Z\n" +
		"1.0.0-x86_64-linux |checksum:" + f.sha("a-1.0.0-x86_64-linux") + ",created_at:2026-05-01T12:04:00Z\n"
	infoB := "---\n" +
		"2.0.0 a:~> 1.0,c:< 3&>= 1.0|checksum:" + f.sha("b-2.0.0") + ",ruby:>= 2.3,created_at:2026-05-01T12:02:00Z\n" +
		"3.0.0.pre1 |checksum:" + f.sha("b-3.0.0.pre1") + ",rubygems:> 1.3.1,created_at:2026-05-01T12:03:00Z\n"
	infoA1 := "---\n1.0.0 |checksum:" + f.sha("a-1.0.0") + ",created_at:2026-05-01T12:01:00Z\n"
	infoB1 := "---\n2.0.0 a:~> 1.0,c:< 3&>= 1.0|checksum:" + f.sha("b-2.0.0") + ",ruby:>= 2.3,created_at:2026-05-01T12:02:00Z\n"
	versions := "created_at: 2026-05-01T12:00:00Z\n---\n" +
		"a 1.0.0 " + md5hex([]byte(infoA1)) + "\n" +
		"b 2.0.0 " + md5hex([]byte(infoB1)) + "\n" +
		"b 3.0.0.pre1 " + md5hex([]byte(infoB)) + "\n" +
		"a 1.0.0-x86_64-linux " + md5hex([]byte(infoA)) + "\n"

	check := func(stage, path, want string) {
		t.Helper()
		r := do(t, "GET", f.url+path, nil)
		if r.status != 200 || string(r.body) != want {
			t.Errorf("%s: GET %s = %d\n%s\nwant\n%s", stage, path, r.status, r.body, want)
		}
	}
	check("publish", "/info/a", infoA)
	check("publish", "/info/b", infoB)
	check("publish", "/versions", versions)
	check("publish", "/names", "---\na\nb\n")

	f.clk.Advance(time.Minute)
	if !f.up.Yank("a", "1.0.0", "") {
		t.Fatal("Yank returned false")
	}
	if f.up.Yank("a", "1.0.0", "") || f.up.Yank("zzz", "1", "") {
		t.Fatal("Yank of a yanked or unknown version returned true")
	}
	infoAY := "---\n1.0.0-x86_64-linux |checksum:" + f.sha("a-1.0.0-x86_64-linux") + ",created_at:2026-05-01T12:04:00Z\n"
	versions += "a -1.0.0 " + md5hex([]byte(infoAY)) + "\n"
	check("yank", "/info/a", infoAY)
	check("yank", "/versions", versions)
	check("yank", "/names", "---\na\nb\n")

	old := versions
	f.clk.Advance(time.Hour)
	f.up.RebuildVersions()
	rebuilt := "created_at: 2026-05-01T13:05:00Z\n---\n" +
		"a 1.0.0-x86_64-linux " + md5hex([]byte(infoAY)) + "\n" +
		"b 2.0.0,3.0.0.pre1 " + md5hex([]byte(infoB)) + "\n"
	check("rebuild", "/versions", rebuilt)
	if strings.HasPrefix(rebuilt, old) {
		t.Error("rebuilt /versions is a prefix of the old one")
	}

	f.up.Yank("a", "1.0.0", "x86_64-linux")
	check("yank all", "/info/a", "---\n")
	check("yank all", "/names", "---\nb\n")
	f.up.RebuildVersions()
	check("rebuild after yank all", "/versions", "created_at: 2026-05-01T13:05:01Z\n---\nb 2.0.0,3.0.0.pre1 "+md5hex([]byte(infoB))+"\n")
	f.up.Yank("b", "2.0.0", "")
	f.up.Yank("b", "3.0.0.pre1", "")
	check("empty", "/names", "---\n\n")
}

// TestCompactIndexInfoV1 checks that InfoV1 drops created_at from /info lines.
func TestCompactIndexInfoV1(t *testing.T) {
	f := newCIFixture(t, Options{InfoV1: true})
	r := do(t, "GET", f.url+"/info/b", nil)
	want := "---\n2.0.0 a:~> 1.0,c:< 3&>= 1.0|checksum:" + f.sha("b-2.0.0") + ",ruby:>= 2.3\n3.0.0.pre1 |checksum:" + f.sha("b-3.0.0.pre1") + ",rubygems:> 1.3.1\n"
	if string(r.body) != want {
		t.Errorf("v1 info = %q, want %q", r.body, want)
	}
}

// TestCompactIndexHeaders checks the compact-index headers (ETag = MD5, digests = SHA-256) in every digest style, and HEAD.
func TestCompactIndexHeaders(t *testing.T) {
	for _, style := range []struct {
		name         string
		opt          DigestStyle
		digest, repr func([]byte) string
	}{
		{"rails", DigestRails, func(b []byte) string { return "sha-256=" + sha256b64(b) }, func(b []byte) string { return "sha-256=:" + sha256b64(b) + ":" }},
		{"fastly", DigestFastly, func(b []byte) string { return `sha-256="` + sha256b64(b) + `"` }, func(b []byte) string { return `sha-256="` + sha256b64(b) + `"` }},
		{"none", DigestNone, func([]byte) string { return "" }, func([]byte) string { return "" }},
	} {
		t.Run(style.name, func(t *testing.T) {
			f := newCIFixture(t, Options{Digest: style.opt})
			for _, path := range []string{"/versions", "/info/a", "/names"} {
				r := do(t, "GET", f.url+path, nil)
				want := map[string]string{
					"Content-Type":   "text/plain; charset=utf-8",
					"Accept-Ranges":  "bytes",
					"ETag":           `"` + md5hex(r.body) + `"`,
					"Cache-Control":  "max-age=60, public",
					"Digest":         style.digest(r.body),
					"Repr-Digest":    style.repr(r.body),
					"Last-Modified":  f.clk.Now().Format(http.TimeFormat),
					"Content-Length": itoa(len(r.body)),
				}
				for k, v := range want {
					if got := r.header.Get(k); got != v {
						t.Errorf("%s %s: %s = %q, want %q", style.name, path, k, got, v)
					}
				}
				h := do(t, "HEAD", f.url+path, nil)
				if h.status != 200 || len(h.body) != 0 || h.header.Get("ETag") != r.header.Get("ETag") || h.header.Get("Content-Length") != itoa(len(r.body)) {
					t.Errorf("HEAD %s = %d %v", path, h.status, h.header)
				}
			}
		})
	}
}

// TestCompactIndexUnknownInfo checks the 404 of /info for an unknown gem.
func TestCompactIndexUnknownInfo(t *testing.T) {
	f := newCIFixture(t, Options{})
	r := do(t, "GET", f.url+"/info/nope", nil)
	if r.status != 404 || string(r.body) != TextInfoNotFound || r.header.Get("Content-Type") != "text/plain; charset=utf-8" ||
		r.header.Get("Cache-Control") != "max-age=60, public" || r.header.Get("ETag") != "" {
		t.Errorf("unknown info: %d %q %v", r.status, r.body, r.header)
	}
}

// TestCompactIndexConditionalAndRange checks If-None-Match before Range, 206 tails, 416 and ignored ranges.
func TestCompactIndexConditionalAndRange(t *testing.T) {
	f := newCIFixture(t, Options{})
	full := do(t, "GET", f.url+"/versions", nil).body
	n := len(full)
	etag := `"` + md5hex(full) + `"`
	lm := f.clk.Now().Format(http.TimeFormat)
	tests := []struct {
		name   string
		hdr    []string
		status int
		body   []byte
		crange string
	}{
		{"plain", nil, 200, full, ""},
		{"tail", []string{"Range", "bytes=10-"}, 206, full[10:], "bytes 10-" + itoa(n-1) + "/" + itoa(n)},
		{"last byte", []string{"Range", "bytes=" + itoa(n-1) + "-"}, 206, full[n-1:], "bytes " + itoa(n-1) + "-" + itoa(n-1) + "/" + itoa(n)},
		{"closed", []string{"Range", "bytes=2-5"}, 206, full[2:6], "bytes 2-5/" + itoa(n)},
		{"suffix", []string{"Range", "bytes=-4"}, 206, full[n-4:], "bytes " + itoa(n-4) + "-" + itoa(n-1) + "/" + itoa(n)},
		{"clamped end", []string{"Range", "bytes=5-999999"}, 206, full[5:], "bytes 5-" + itoa(n-1) + "/" + itoa(n)},
		{"at length", []string{"Range", "bytes=" + itoa(n) + "-"}, 416, nil, "bytes */" + itoa(n)},
		{"beyond length", []string{"Range", "bytes=" + itoa(n+50) + "-"}, 416, nil, "bytes */" + itoa(n)},
		{"zero suffix", []string{"Range", "bytes=-0"}, 416, nil, "bytes */" + itoa(n)},
		{"multiple ranges", []string{"Range", "bytes=0-1,3-4"}, 200, full, ""},
		{"bad unit", []string{"Range", "items=0-1"}, 200, full, ""},
		{"inverted", []string{"Range", "bytes=5-2"}, 200, full, ""},
		{"inm match beats range", []string{"If-None-Match", etag, "Range", "bytes=10-"}, 304, nil, ""},
		{"inm match beats 416", []string{"If-None-Match", etag, "Range", "bytes=" + itoa(n) + "-"}, 304, nil, ""},
		{"inm weak", []string{"If-None-Match", "W/" + etag}, 304, nil, ""},
		{"inm list", []string{"If-None-Match", `"nope", ` + etag}, 304, nil, ""},
		{"inm two headers", []string{"If-None-Match", `"nope"`, "If-None-Match", etag}, 304, nil, ""},
		{"inm star", []string{"If-None-Match", "*"}, 304, nil, ""},
		{"inm unquoted", []string{"If-None-Match", md5hex(full)}, 304, nil, ""},
		{"inm mismatch + range", []string{"If-None-Match", `"0123"`, "Range", "bytes=10-"}, 206, full[10:], "bytes 10-" + itoa(n-1) + "/" + itoa(n)},
		{"if-range match", []string{"If-Range", etag, "Range", "bytes=10-"}, 206, full[10:], "bytes 10-" + itoa(n-1) + "/" + itoa(n)},
		{"if-range mismatch", []string{"If-Range", `"0123"`, "Range", "bytes=10-"}, 200, full, ""},
		{"if-range date", []string{"If-Range", lm, "Range", "bytes=10-"}, 206, full[10:], "bytes 10-" + itoa(n-1) + "/" + itoa(n)},
		{"ims not modified", []string{"If-Modified-Since", lm}, 304, nil, ""},
		{"ims older", []string{"If-Modified-Since", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Format(http.TimeFormat)}, 200, full, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, "GET", f.url+"/versions", nil, tc.hdr...)
			if r.status != tc.status || !bytes.Equal(r.body, tc.body) {
				t.Fatalf("status %d body %q, want %d %q", r.status, r.body, tc.status, tc.body)
			}
			if got := r.header.Get("Content-Range"); got != tc.crange {
				t.Errorf("Content-Range = %q, want %q", got, tc.crange)
			}
			if got := r.header.Get("ETag"); got != etag {
				t.Errorf("ETag = %q, want full-body %q", got, etag)
			}
			if tc.status == 200 || tc.status == 206 {
				if got := r.header.Get("Repr-Digest"); got != "sha-256=:"+sha256b64(full)+":" {
					t.Errorf("Repr-Digest = %q, want the full body's", got)
				}
			}
		})
	}
}

// TestCompactIndexIgnoreRangeAndGzip checks the IgnoreRange and GzipCompactIndex options.
func TestCompactIndexIgnoreRangeAndGzip(t *testing.T) {
	f := newCIFixture(t, Options{IgnoreRange: true, GzipCompactIndex: true})
	plain := do(t, "GET", f.url+"/versions", nil)
	r := do(t, "GET", f.url+"/versions", nil, "Range", "bytes=5-")
	if r.status != 200 || !bytes.Equal(r.body, plain.body) {
		t.Errorf("IgnoreRange: %d", r.status)
	}
	g := do(t, "GET", f.url+"/versions", nil, "Accept-Encoding", "gzip")
	if g.header.Get("Content-Encoding") != "gzip" || g.header.Get("ETag") != plain.header.Get("ETag") || g.header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("gzip response headers %v", g.header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(g.body))
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := io.ReadAll(zr)
	if !bytes.Equal(dec, plain.body) {
		t.Error("gzip body does not decode to the identity body")
	}
	if id := do(t, "GET", f.url+"/versions", nil, "Accept-Encoding", "gzip;q=0"); id.header.Get("Content-Encoding") != "" {
		t.Error("gzip;q=0 got a gzip body")
	}
}

// TestInfoChecksumMatchesServedGem checks that every /info checksum is the SHA-256 of the served .gem.
func TestInfoChecksumMatchesServedGem(t *testing.T) {
	f := newCIFixture(t, Options{})
	for _, name := range []string{"a", "b"} {
		info := do(t, "GET", f.url+"/info/"+name, nil).body
		for _, line := range strings.Split(strings.TrimSpace(string(info)), "\n")[1:] {
			number, rest, _ := strings.Cut(line, " ")
			_, reqs, _ := strings.Cut(rest, "|")
			sum := strings.TrimPrefix(strings.Split(reqs, ",")[0], "checksum:")
			g := do(t, "GET", f.url+"/gems/"+name+"-"+number+".gem", nil)
			if g.status != 200 || gemSHA256Hex(g.body) != sum {
				t.Errorf("%s-%s: served gem sha %s, info says %s", name, number, gemSHA256Hex(g.body), sum)
			}
		}
	}
}

// TestBodyAndInfoMD5 checks the Body and InfoMD5 accessors against /versions.
func TestBodyAndInfoMD5(t *testing.T) {
	f := newCIFixture(t, Options{})
	b, ok := f.up.Body("/info/a")
	if !ok || md5hex(b) != f.up.InfoMD5("a") {
		t.Error("Body/InfoMD5 disagree")
	}
	last := strings.Split(strings.TrimSpace(string(must(f.up.Body("/versions")))), "\n")
	if !strings.HasSuffix(last[len(last)-1], " "+f.up.InfoMD5("a")) {
		t.Error("last /versions line for a does not carry the current info MD5")
	}
	if _, ok := f.up.Body("/info/none"); ok || f.up.InfoMD5("none") != "" {
		t.Error("unknown gem reported")
	}
}

// must drops the ok of a (value, ok) pair.
func must(b []byte, _ bool) []byte { return b }
