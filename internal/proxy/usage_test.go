package proxy

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/gemproxy/gemproxy/internal/status"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// withStatusPage gives tp a status page over its registry, as serve does.
func withStatusPage(tp *testProxy) *status.Page {
	tp.opts.Status = status.New(tp.reg, status.Options{})
	return tp.opts.Status
}

// renderStatus renders page.
func renderStatus(t *testing.T, page *status.Page) string {
	t.Helper()
	var buf bytes.Buffer
	if err := page.Render(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestRootForBrowsers checks that / answers a browser (Accept with
// text/html) with the status page, and every other request, RubyGems'
// probes first, exactly as without one.
func TestRootForBrowsers(t *testing.T) {
	const plain = "gemproxy: a caching mirror of rubygems.org\n"
	browser := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	tests := []struct {
		name, method, accept string
		page                 bool // a status page is configured
		wantHTML             bool
	}{
		{"browser", http.MethodGet, browser, true, true},
		{"browser HEAD", http.MethodHead, browser, true, true},
		{"RubyGems probe", http.MethodHead, "", true, false},
		{"GET without Accept", http.MethodGet, "", true, false},
		{"GET any", http.MethodGet, "*/*", true, false},
		{"JSON client", http.MethodGet, "application/json", true, false},
		{"browser without a status page", http.MethodGet, browser, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTestProxy(t, "http://127.0.0.1:1")
			if tt.page {
				withStatusPage(tp)
			}
			resp, body := tp.do(t, tt.method, "/", "Accept", tt.accept)
			ct := resp.Header.Get("Content-Type")
			switch {
			case resp.StatusCode != http.StatusOK:
				t.Errorf("status %d, want 200", resp.StatusCode)
			case tt.wantHTML && (ct != status.ContentType || resp.Header.Get("Cache-Control") != "no-store"):
				t.Errorf("Content-Type %q, Cache-Control %q: want the status page, never cached", ct, resp.Header.Get("Cache-Control"))
			case tt.wantHTML && tt.method == http.MethodGet && !bytes.HasPrefix(body, []byte("<!DOCTYPE html>")):
				t.Errorf("body %.60q…, want the status page", body)
			case !tt.wantHTML && ct != contentTypeTextPlain:
				t.Errorf("Content-Type %q, want %q", ct, contentTypeTextPlain)
			case !tt.wantHTML && tt.method == http.MethodGet && string(body) != plain:
				t.Errorf("body %q, want %q", body, plain)
			}
		})
	}
}

// TestStatusPageCountsGems checks that requests naming a gem that was
// served rank it on the page, and that answers of 400 and above (a gem
// that does not exist) do not.
func TestStatusPageCountsGems(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/info/rack" {
			http.NotFound(w, r)
			return
		}
		compactHeaders(w, []byte("---\n1.0.0 |checksum:00\n"))
		w.Write([]byte("---\n1.0.0 |checksum:00\n"))
	})
	tp := newTestProxy(t, up.URL)
	page := withStatusPage(tp)
	for range 3 {
		tp.do(t, http.MethodGet, "/info/rack")
	}
	tp.do(t, http.MethodGet, "/info/nope")
	html := renderStatus(t, page)
	mustContain(t, html, `<li data-gem="rack"><span class="name">rack</span> <span class="num" data-value="3">3</span>`)
	if strings.Contains(html, `data-gem="nope"`) {
		t.Error("a gem answered 404 is ranked")
	}
}

// TestStatusPageShowsUpstreamFailure checks that the page names the last
// upstream failure, a status or a connection error, without the
// upstream's address.
func TestStatusPageShowsUpstreamFailure(t *testing.T) {
	up := newCountingUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	tp := newTestProxy(t, up.URL)
	page := withStatusPage(tp)
	tp.do(t, http.MethodGet, "/info/rack")
	mustContain(t, renderStatus(t, page), `<span id="last-failure">upstream answered 503 Service Unavailable</span>`)

	closed := testupstream.FreeAddr(t)
	tp = newTestProxy(t, "http://"+closed)
	page = withStatusPage(tp)
	tp.do(t, http.MethodGet, "/info/rack")
	html := renderStatus(t, page)
	mustContain(t, html, `<span id="last-failure">dial: connect: connection refused</span>`)
	if strings.Contains(html, closed) {
		t.Errorf("the page shows the upstream's address %s", closed)
	}
}

// TestRequestedGem checks which gem each route names.
func TestRequestedGem(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/info/rack", "rack"},
		{"/info/foo-bar", "foo-bar"},
		{"/gems/nokogiri-1.16.0-x86_64-linux.gem", "nokogiri"},
		{"/gems/foo-bar-1.0.0.gem", "foo-bar"},
		{"/downloads/rails-7.1.0.gem", "rails"},
		{"/quick/Marshal.4.8/rack-3.0.0.gemspec.rz", "rack"},
		{"/api/v1/gems/rack.json", ""},
		{"/versions", ""},
		{"/", ""},
	}
	r := NewRouter()
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			var buf [maxParams]string
			rt, params, err := r.Match(http.MethodGet, tt.path, &buf)
			if err != nil || rt == nil {
				t.Fatalf("no route: %v", err)
			}
			if got := requestedGem(rt, params); got != tt.want {
				t.Errorf("requestedGem = %q, want %q", got, tt.want)
			}
		})
	}
}
