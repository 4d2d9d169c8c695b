package proxy

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/gemproxy/gemproxy/internal/compactindex"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

func TestRouteTable(t *testing.T) {
	r := NewRouter()
	tests := []struct {
		method, path string
		endpoint     string
		handling     Handling
		params       []string
	}{
		{"HEAD", "/", "root", Home, nil},
		{"GET", "/versions", "versions", Cached, nil},
		{"GET", "/info/rails", "info", Cached, []string{"rails"}},
		{"GET", "/info/.omghi", "info", Cached, []string{".omghi"}},
		{"GET", "/names", "names", Cached, nil},
		{"GET", "/specs.4.8.gz", "specs", Cached, nil},
		{"GET", "/latest_specs.4.8.gz", "latest_specs", Cached, nil},
		{"GET", "/prerelease_specs.4.8.gz", "prerelease_specs", Cached, nil},
		{"GET", "/quick/Marshal.4.8/rack-3.0.0.gemspec.rz", "quick_spec", Cached, []string{"rack-3.0.0"}},
		{"GET", "/gems/nokogiri-1.16.0-x86_64-linux.gem", "gem", Cached, []string{"nokogiri-1.16.0-x86_64-linux"}},
		{"GET", "/downloads/rack-3.0.0.gem", "download", Cached, []string{"rack-3.0.0"}},
		{"GET", "/gems/net-http-persistent-4.0.2.gem", "gem", Cached, []string{"net-http-persistent-4.0.2"}},
		{"GET", "/gems/ruby-2-1.0.0.pre.gem", "gem", Cached, []string{"ruby-2-1.0.0.pre"}},
		{"GET", "/gems/a-0.gem", "gem", Cached, []string{"a-0"}},
		{"GET", "/gems/ffi-1.17.2-x86_64-linux-gnu.gem", "gem", Cached, []string{"ffi-1.17.2-x86_64-linux-gnu"}},
		{"GET", "/quick/Marshal.4.8/facter-2.4.6-universal-darwin.gemspec.rz", "quick_spec", Cached, []string{"facter-2.4.6-universal-darwin"}},
		{"GET", "/api/v1/dependencies", "dependencies", DependencyAPI, nil},
		{"GET", "/api/v1/dependencies.json", "dependencies", DependencyAPI, nil},
		{"GET", "/api/v1/gems/rails.json", "api_gem", Cached, []string{"rails"}},
		{"GET", "/api/v1/gems/rails.yaml", "api_gem", Cached, []string{"rails"}},
		{"GET", "/api/v1/gems.json", "api_private", PassThrough, nil},
		{"GET", "/api/v1/gems/rails/reverse_dependencies.json", "api_reverse_dependencies", Cached, []string{"rails"}},
		{"GET", "/api/v1/gems/rails/owners.json", "api_owners", Cached, []string{"rails"}},
		{"GET", "/api/v1/versions/rails.json", "api_versions", Cached, []string{"rails"}},
		{"GET", "/api/v1/versions/rails/latest.json", "api_latest_version", Cached, []string{"rails"}},
		{"GET", "/api/v1/versions/rails-7.0.0/reverse_dependencies.json", "api_version_reverse_dependencies", Cached, []string{"rails-7.0.0"}},
		{"GET", "/api/v2/rubygems/rails/versions/7.0.6.json", "api_v2_version", Cached, []string{"rails", "7.0.6"}},
		{"GET", "/api/v2/rubygems/rails/versions/7.0.6/contents.sha256", "api_v2_contents", Cached, []string{"rails", "7.0.6"}},
		{"GET", "/api/v1/downloads.json", "api_downloads", Cached, nil},
		{"GET", "/api/v1/downloads", "api_downloads", Cached, nil},
		{"GET", "/api/v1/downloads/all.json", "api_downloads", Cached, nil},
		{"GET", "/api/v1/downloads/rails-7.0.0.json", "api_version_downloads", Cached, []string{"rails-7.0.0"}},
		{"GET", "/api/v1/owners/qrush/gems.json", "api_owner_gems", Cached, []string{"qrush"}},
		{"GET", "/api/v1/profiles/qrush.json", "api_profile", Cached, []string{"qrush"}},
		{"GET", "/api/v1/profile/me.json", "api_private", PassThrough, nil},
		{"GET", "/api/v1/search.json", "api_search", Cached, nil},
		{"GET", "/api/v1/search/autocomplete", "api_search", Cached, nil},
		{"GET", "/api/v1/activity/latest.json", "api_activity", Cached, []string{"latest"}},
		{"GET", "/api/v1/timeframe_versions.json", "api_timeframe_versions", Cached, nil},
		{"GET", "/api/v1/attestations/rails-7.0.0.json", "api_attestations", Cached, []string{"rails-7.0.0"}},
		{"GET", "/api/v1/web_hooks.json", "api_private", PassThrough, nil},
		{"GET", "/api/v1/api_key", "api_private", PassThrough, nil},
		{"GET", "/api/v1/owners/rails.json", "api_other", PassThrough, nil},
		{"GET", "/api/v9/anything/new", "api_other", PassThrough, nil},
		{"POST", "/api/v1/gems", "push", Write, nil},
		{"DELETE", "/api/v1/gems/yank", "yank", Write, nil},
		{"POST", "/api/v1/gems/rails/owners", "owners", Write, []string{"rails"}},
		{"PATCH", "/api/v1/gems/rails/owners", "owners", Write, []string{"rails"}},
		{"POST", "/api/v1/owners/rails.json", "owners", Write, nil},
		{"POST", "/api/v1/web_hooks/fire", "web_hooks", Write, nil},
		{"PUT", "/api/v1/api_key", "api_key", Write, nil},
		{"POST", "/api/v1/oidc/api_key_roles/tok/assume_role", "oidc", Write, nil},
		{"POST", "/api/v1/oidc/trusted_publisher/exchange_token", "oidc", Write, nil},
		{"POST", "/api/v1/webauthn_verification", "webauthn", Write, nil},
		{"POST", "/api/v1/gems/rails/trusted_publishers", "trusted_publishers", Write, []string{"rails"}},
		{"PUT", "/api/v1/something/new", "api_write_other", Write, nil},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rt, params, err := r.Match(tt.method, tt.path, new([maxParams]string))
			if err != nil {
				t.Fatal(err)
			}
			if rt == nil {
				t.Fatal("no route")
			}
			if rt.Endpoint != tt.endpoint || rt.Handling != tt.handling || strings.Join(params, ",") != strings.Join(tt.params, ",") {
				t.Fatalf("got %s/%d %v, want %s/%d %v", rt.Endpoint, rt.Handling, params, tt.endpoint, tt.handling, tt.params)
			}
		})
	}
	for _, miss := range []struct{ method, path string }{
		{"GET", "/gems/rack.zip"}, {"GET", "/gems/rack.gem"}, {"GET", "/gems/---.gem"}, {"GET", "/gems/_-1.0.gem"},
		{"GET", "/info/..."}, {"GET", "/info/-"}, {"GET", "/gems/foo-1...gem"}, {"GET", "/gems/foo-1.0-...gem"},
		{"GET", "/gems/foo-1.0--linux.gem"}, {"GET", "/api/v2/rubygems/rack/versions/1..2.json"}, {"GET", "/quick/Marshal.4.8/rack-x.gemspec.rz"}, {"GET", "/info"}, {"GET", "/info/a/b"}, {"POST", "/versions"}, {"GET", "/quick/rack.gemspec.rz"},
	} {
		if rt, _, _ := r.Match(miss.method, miss.path, new([maxParams]string)); rt != nil {
			t.Errorf("%s %s matched %s", miss.method, miss.path, rt.Endpoint)
		}
	}
}

// FuzzRequestURI checks that any request URI is either rejected or routed
// to a key made only of safe characters, and never panics.
func FuzzRequestURI(f *testing.F) {
	for _, s := range []string{"/versions", "/info/rack", "/gems/a-1.gem", "/api/v1/gems/x.json?a=b",
		"/gems/%2e%2e/x.gem", "/info/..", "//evil/x", "/api/v1/x?%00", "/quick/Marshal.4.8/a-1.gemspec.rz",
		"/api/v1/search.json?q=a b", "/api/%c0%ae/x", "/gems/a-1.gem?x=%4", "//", "/"} {
		f.Add(s)
	}
	r := NewRouter()
	f.Fuzz(func(t *testing.T, raw string) {
		path, rawPath, rawQuery, err := splitRequestURI(raw)
		if err != nil {
			return
		}
		for _, seg := range strings.Split(path, "/")[1:] {
			if path == "/" {
				break
			}
			if seg == ".." || seg == "." || seg == "" || len(seg) > maxParamLen || strings.ContainsAny(seg, "\\;") {
				t.Fatalf("accepted %q with segment %q", raw, seg)
			}
		}
		for _, s := range []string{path, rawPath, rawQuery} {
			for i := 0; i < len(s); i++ {
				if !printableASCII(s[i]) || s[i] == '#' {
					t.Fatalf("accepted %q with byte %#x in %q", raw, s[i], s)
				}
			}
		}
		for _, m := range []string{"GET", "POST"} {
			rt, params, _ := r.Match(m, path, new([maxParams]string))
			if rt == nil {
				continue
			}
			for _, p := range params {
				// Names, versions and full names alike are made of name characters.
				if !compactindex.ValidName(p) {
					t.Fatalf("%q matched %s with invalid param %q", raw, rt.Endpoint, p)
				}
			}
		}
	})
}

// TestEveryCorpusGemRoutes: the file-name checks accept every real gem in
// the corpus, platform gems included.
func TestEveryCorpusGemRoutes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testupstream.CorpusDir(t), "gems", "*.gem"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus gems: %v", err)
	}
	r := NewRouter()
	for _, f := range files {
		base := filepath.Base(f)
		for _, path := range []string{"/gems/" + base, "/quick/Marshal.4.8/" + strings.TrimSuffix(base, ".gem") + ".gemspec.rz"} {
			if rt, _, err := r.Match("GET", path, new([maxParams]string)); rt == nil || err != nil {
				t.Errorf("%s: not routed (%v)", path, err)
			}
		}
	}
}
