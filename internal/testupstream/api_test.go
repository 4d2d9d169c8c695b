package testupstream

import (
	"bytes"
	"compress/zlib"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/rubyfmt"
)

// TestArtifacts checks .gem, quick gemspec and specs files: headers, conditionals, ranges, 403 XML after yank, the /downloads redirect and HEAD /.
func TestArtifacts(t *testing.T) {
	f := newCIFixture(t, Options{})
	gem := f.gems["a-1.0.0"]
	r := do(t, "GET", f.url+"/gems/a-1.0.0.gem", nil)
	if r.status != 200 || !bytes.Equal(r.body, gem) || r.header.Get("Content-Type") != "application/octet-stream" ||
		r.header.Get("Content-Length") != itoa(len(gem)) || r.header.Get("ETag") != `"`+md5hex(gem)+`"` ||
		r.header.Get("Last-Modified") == "" || r.header.Get("Content-Encoding") != "" {
		t.Fatalf("gem: %d %v", r.status, r.header)
	}
	if r := do(t, "GET", f.url+"/gems/a-1.0.0.gem", nil, "If-None-Match", `"`+md5hex(gem)+`"`); r.status != 304 {
		t.Errorf("gem If-None-Match: %d", r.status)
	}
	if r := do(t, "GET", f.url+"/gems/a-1.0.0.gem", nil, "If-Modified-Since", f.clk.Now().Format(http.TimeFormat)); r.status != 304 {
		t.Errorf("gem If-Modified-Since: %d", r.status)
	}
	if r := do(t, "GET", f.url+"/gems/a-1.0.0.gem", nil, "Range", "bytes=100-"); r.status != 206 || !bytes.Equal(r.body, gem[100:]) {
		t.Errorf("gem Range: %d", r.status)
	}
	q := do(t, "GET", f.url+"/quick/Marshal.4.8/b-2.0.0.gemspec.rz", nil)
	zr, err := zlib.NewReader(bytes.NewReader(q.body))
	if err != nil {
		t.Fatal(err)
	}
	txt, _ := io.ReadAll(zr)
	if q.status != 200 || q.header.Get("Content-Type") != "application/octet-stream" || string(txt) != PlaceholderMarker+"b-2.0.0\n" {
		t.Errorf("quick spec: %d %q", q.status, txt)
	}
	for _, p := range []string{"/specs.4.8.gz", "/latest_specs.4.8.gz", "/prerelease_specs.4.8.gz"} {
		s := do(t, "GET", f.url+p, nil)
		if s.status != 200 || s.header.Get("Content-Type") != "application/octet-stream" || s.header.Get("Content-Encoding") != "" || len(gunzip(t, s.body)) < 2 {
			t.Errorf("%s: %d %v", p, s.status, s.header)
		}
		if r := do(t, "GET", f.url+p, nil, "If-Modified-Since", s.header.Get("Last-Modified")); r.status != 304 {
			t.Errorf("%s If-Modified-Since: %d", p, r.status)
		}
		if r := do(t, "GET", f.url+p, nil, "If-None-Match", s.header.Get("ETag")); r.status != 304 {
			t.Errorf("%s If-None-Match: %d", p, r.status)
		}
	}
	// specs.4.8.gz changes after a publish.
	before := do(t, "GET", f.url+"/specs.4.8.gz", nil).body
	f.clk.Advance(time.Minute)
	f.up.Publish(GemSpec{Name: "c", Version: "1.0"}, nil)
	if after := do(t, "GET", f.url+"/specs.4.8.gz", nil).body; bytes.Equal(before, after) {
		t.Error("specs.4.8.gz did not change after a publish")
	}

	f.up.Yank("a", "1.0.0", "")
	for _, p := range []string{"/gems/a-1.0.0.gem", "/quick/Marshal.4.8/a-1.0.0.gemspec.rz", "/gems/nope-1.gem", "/quick/Marshal.4.8/nope-1.gemspec.rz"} {
		r := do(t, "GET", f.url+p, nil)
		if r.status != 403 || !strings.HasPrefix(string(r.body), `<?xml version="1.0" encoding="UTF-8"?>`) ||
			!strings.Contains(string(r.body), "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>") || r.header.Get("Content-Type") != "application/xml" {
			t.Errorf("%s: %d %q", p, r.status, r.body)
		}
	}
	if r := do(t, "GET", f.url+"/downloads/b-2.0.0.gem", nil); r.status != 302 || r.header.Get("Location") != "/gems/b-2.0.0.gem" {
		t.Errorf("downloads redirect: %d %v", r.status, r.header)
	}
	if r := do(t, "HEAD", f.url+"/", nil); r.status != 200 {
		t.Errorf("HEAD /: %d", r.status)
	}
	if r := do(t, "GET", f.url+"/nope", nil); r.status != 404 {
		t.Errorf("unknown path: %d", r.status)
	}
}

// TestMarshalFuncIsUsed checks that a MarshalFunc is called once per publish batch and once per index generation for the specs files.
func TestMarshalFuncIsUsed(t *testing.T) {
	var calls []rubyfmt.MarshalInput
	fake := func(in rubyfmt.MarshalInput) (rubyfmt.MarshalOutput, error) {
		calls = append(calls, in)
		out := rubyfmt.MarshalOutput{QuickSpecs: map[string][]byte{}}
		for _, g := range in.Gems {
			out.QuickSpecs[g.FullName] = []byte("quick:" + g.FullName)
		}
		if in.Index != nil {
			out.Specs, out.LatestSpecs, out.PrereleaseSpecs = []byte("S"), []byte("L"), []byte("P")
		}
		return out, nil
	}
	up, ts := Start(t, Options{Marshal: fake})
	if err := up.PublishAll([]Item{{Spec: GemSpec{Name: "x", Version: "1"}}, {Spec: GemSpec{Name: "x", Version: "2.a"}}}); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || len(calls[0].Gems) != 2 || calls[0].Index != nil {
		t.Fatalf("publish batch made %d marshal calls", len(calls))
	}
	if r := do(t, "GET", ts.URL+"/quick/Marshal.4.8/x-2.a.gemspec.rz", nil); string(r.body) != "quick:x-2.a" {
		t.Errorf("quick spec = %q", r.body)
	}
	for i := 0; i < 2; i++ {
		if r := do(t, "GET", ts.URL+"/latest_specs.4.8.gz", nil); string(r.body) != "L" {
			t.Errorf("latest specs = %q", r.body)
		}
	}
	if len(calls) != 2 || calls[1].Index == nil {
		t.Fatalf("specs files: %d marshal calls (want one, cached)", len(calls))
	}
	idx := calls[1].Index
	if len(idx.Specs) != 1 || idx.Specs[0] != (rubyfmt.SpecTuple{Name: "x", Version: "1", Platform: "ruby"}) || len(idx.Prerelease) != 1 || idx.Prerelease[0].Version != "2.a" {
		t.Errorf("index = %+v", idx)
	}
}

// getJSON fetches a JSON document.
func getJSON(t *testing.T, url string, v any, hdr ...string) resp {
	t.Helper()
	r := do(t, "GET", url, nil, hdr...)
	if r.status == 200 {
		if err := json.Unmarshal(r.body, v); err != nil {
			t.Fatalf("%s: %v: %s", url, err, r.body)
		}
	}
	return r
}

// TestAPIReads checks the JSON/YAML read endpoints, their caching headers and 404 bodies.
func TestAPIReads(t *testing.T) {
	f := newCIFixture(t, Options{})
	var gemObj map[string]any
	r := getJSON(t, f.url+"/api/v1/gems/b.json", &gemObj)
	if r.status != 200 || gemObj["version"] != "2.0.0" || gemObj["sha"] != f.sha("b-2.0.0") || r.header.Get("Cache-Control") != "max-age=60, public" ||
		r.header.Get("Access-Control-Allow-Origin") != "*" || r.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("gem json: %d %v %v", r.status, gemObj, r.header)
	}
	// Keys in Rubygem#payload order; <, > and & escaped as \u003c etc., as
	// rubygems.org's JSON bodies are.
	wantKeys := `{"name":"b","downloads":0,"version":"2.0.0","version_created_at":"2026-05-01T12:02:00.000Z","version_downloads":0,"platform":"ruby",` +
		`"authors":"testupstream","info":"b test gem","licenses":[],"metadata":{},"yanked":false,"sha":"` + f.sha("b-2.0.0") + `","spec_sha":"`
	if !strings.HasPrefix(string(r.body), wantKeys) || !strings.HasSuffix(string(r.body), `"dependencies":{"development":[],"runtime":[{"name":"c","requirements":"\u003e= 1.0, \u003c 3"},{"name":"a","requirements":"~\u003e 1.0"}]}}`) {
		t.Errorf("gem json body: %s", r.body)
	}
	if y := do(t, "GET", f.url+"/api/v1/gems/b.yaml", nil); y.status != 200 || !strings.HasPrefix(string(y.body), "---\nname: b\ndownloads: 0\nversion: 2.0.0\n") || y.header.Get("Content-Type") != "text/yaml" {
		t.Errorf("gem yaml: %d %s", y.status, y.body)
	}
	var versions []map[string]any
	r = getJSON(t, f.url+"/api/v1/versions/b.json", &versions)
	if r.status != 200 || len(versions) != 2 || versions[0]["number"] != "3.0.0.pre1" || versions[0]["prerelease"] != true || !strings.HasPrefix(r.header.Get("ETag"), `W/"`) {
		t.Errorf("versions: %d %v", r.status, versions)
	}
	if c := do(t, "GET", f.url+"/api/v1/versions/b.json", nil, "If-None-Match", r.header.Get("ETag")); c.status != 304 {
		t.Errorf("versions revalidation: %d", c.status)
	}
	var latest map[string]string
	if getJSON(t, f.url+"/api/v1/versions/b/latest.json", &latest); latest["version"] != "2.0.0" {
		t.Errorf("latest = %v", latest)
	}
	if getJSON(t, f.url+"/api/v1/versions/zzz/latest.json", &latest); latest["version"] != "unknown" {
		t.Errorf("latest unknown = %v", latest)
	}
	if j := do(t, "GET", f.url+"/api/v1/versions/b/latest.json?callback=cb", nil); string(j.body) != `/**/cb({"version":"2.0.0"})` {
		t.Errorf("jsonp = %q", j.body)
	}
	var v2 map[string]any
	if r := getJSON(t, f.url+"/api/v2/rubygems/a/versions/1.0.0.json?platform=x86_64-linux", &v2); r.status != 200 || v2["platform"] != "x86_64-linux" || v2["number"] != "1.0.0" || v2["sha"] != f.sha("a-1.0.0-x86_64-linux") {
		t.Errorf("v2: %d %v", r.status, v2)
	}
	var search []map[string]any
	if getJSON(t, f.url+"/api/v1/search.json?query=a", &search); len(search) != 1 || search[0]["name"] != "a" {
		t.Errorf("search = %v", search)
	}
	var activity []map[string]any
	if getJSON(t, f.url+"/api/v1/activity/latest.json", &activity); len(activity) != 2 || activity[0]["name"] != "b" {
		t.Errorf("activity latest = %v", activity)
	}
	if getJSON(t, f.url+"/api/v1/activity/just_updated.json", &activity); len(activity) != 4 || activity[0]["version"] != "1.0.0" || activity[0]["platform"] != "x86_64-linux" {
		t.Errorf("just_updated = %v", activity)
	}
	var names []string
	if getJSON(t, f.url+"/api/v1/gems/a/reverse_dependencies.json", &names); len(names) != 1 || names[0] != "b" {
		t.Errorf("reverse deps = %v", names)
	}
	do(t, "GET", f.url+"/gems/a-1.0.0.gem", nil)
	var dl map[string]int
	if getJSON(t, f.url+"/api/v1/downloads.json", &dl); dl["total"] != 1 {
		t.Errorf("downloads = %v", dl)
	}
	if getJSON(t, f.url+"/api/v1/downloads/a-1.0.0.json", &dl); dl["total_downloads"] != 1 || dl["version_downloads"] != 1 {
		t.Errorf("version downloads = %v", dl)
	}
	var owners []map[string]any
	if getJSON(t, f.url+"/api/v1/gems/a/owners.json", &owners); len(owners) != 1 || owners[0]["email"] != DefaultOwner {
		t.Errorf("owners = %v", owners)
	}

	notFound := []struct {
		path, body, ctype string
	}{
		{"/api/v1/gems/zzz.json", TextRubygemNotFound, "text/plain; charset=utf-8"},
		{"/api/v1/versions/zzz.json", TextRubygemNotFound, "text/plain; charset=utf-8"},
		{"/api/v1/gems/zzz/owners.json", TextRubygemNotFound, "text/plain; charset=utf-8"},
		{"/api/v2/rubygems/zzz/versions/1.json", TextV2GemNotFound, "text/plain; charset=utf-8"},
		{"/api/v2/rubygems/a/versions/9.json", TextVersionNotFound, "text/plain; charset=utf-8"},
		{"/api/v1/dependencies?gems=a", TextDependencyAPIGone, "text/plain; charset=utf-8"},
		{"/api/v1/dependencies.json?gems=a", `{"error":"` + TextDependencyAPIGone + `","code":404}`, "application/json; charset=utf-8"},
		{"/api/v1/nothing/here.json", `{"status":404,"error":"Not Found"}`, "application/json; charset=utf-8"},
	}
	for _, tc := range notFound {
		r := do(t, "GET", f.url+tc.path, nil)
		if r.status != 404 || string(r.body) != tc.body || r.header.Get("Content-Type") != tc.ctype {
			t.Errorf("%s: %d %q %q", tc.path, r.status, r.body, r.header.Get("Content-Type"))
		}
	}
	if r := do(t, "GET", f.url+"/api/v1/search.json", nil); r.status != 400 {
		t.Errorf("search without query: %d", r.status)
	}
}
