package testupstream

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gemproxy/gemproxy/internal/rubyfmt"
)

// rubyClientSpecs are the gems the RubyGems and Bundler clients install
// from the server.
var rubyClientSpecs = []GemSpec{
	{Name: "tu_dep", Version: "1.0.0"},
	{Name: "tu_dep", Version: "1.1.0", RequiredRuby: ">= 2.3"},
	{Name: "tu_app", Version: "1.0.0", Deps: []Dep{{Name: "tu_dep", Requirement: "~> 1.0"}}, Licenses: []string{"MIT"}},
	{Name: "tu_pre", Version: "2.0.0.pre1", Deps: []Dep{{Name: "tu_dep", Requirement: ">= 1.0, < 3"}}},
	{Name: "tu_plat", Version: "1.0.0", Platform: "x86_64-linux"},
}

// TestRubyClientsThroughServer runs gem install, gem search and bundle install/update against the server.
func TestRubyClientsThroughServer(t *testing.T) {
	rubyfmt.RequireTools(t, "ruby", "gem", "bundle")
	up, ts := Start(t, Options{Marshal: rubyfmt.RubyMarshal})
	var items []Item
	for _, spec := range rubyClientSpecs {
		items = append(items, Item{Spec: spec})
	}
	if err := up.PublishAll(items); err != nil {
		t.Fatal(err)
	}
	up.RebuildVersions()
	home := t.TempDir()
	env := rubyfmt.RubyEnv(home)
	src := ts.URL + "/"

	inst := filepath.Join(home, "inst")
	installs := [][]string{{"tu_app"}, {"tu_pre", "--pre"}}
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		installs = append(installs, []string{"tu_plat"}) // an x86_64-linux gem
	}
	for _, args := range installs {
		rubyfmt.RunTool(t, home, env, "gem", append([]string{"install", "--no-document", "--clear-sources", "--source", src, "--install-dir", inst}, args...)...)
	}
	for _, want := range []string{"tu_app-1.0.0", "tu_dep-1.1.0", "tu_pre-2.0.0.pre1", "tu_plat-1.0.0-x86_64-linux"} {
		if _, err := os.Stat(filepath.Join(inst, "gems", want)); err != nil && (len(installs) == 3 || !strings.HasPrefix(want, "tu_plat")) {
			t.Errorf("%s not installed through the server: %v", want, err)
		}
	}
	if up.Requests("/quick/Marshal.4.8/tu_app-1.0.0.gemspec.rz") == 0 || up.Requests("/info/tu_app") == 0 {
		t.Errorf("gem install did not use the compact index + quick spec: %v", up.Paths())
	}
	if out := rubyfmt.RunTool(t, home, env, "gem", "search", "-r", "tu_", "--clear-sources", "--source", src); !strings.Contains(out, "tu_dep (1.1.0)") {
		t.Errorf("gem search via latest_specs.4.8.gz:\n%s", out)
	}

	// Bundler: full fetch, then an append (206), then a rebuild (416 path).
	app := filepath.Join(home, "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	gemfile := "source \"" + src + "\"\ngem \"tu_app\"\n"
	if err := os.WriteFile(filepath.Join(app, "Gemfile"), []byte(gemfile), 0o644); err != nil {
		t.Fatal(err)
	}
	rubyfmt.RunTool(t, app, env, "bundle", "config", "set", "--local", "path", filepath.Join(home, "vendor"))
	rubyfmt.RunTool(t, app, env, "bundle", "install")
	up.Publish(GemSpec{Name: "tu_dep", Version: "1.2.0"}, nil)
	up.Reset()
	rubyfmt.RunTool(t, app, env, "bundle", "update", "tu_dep")
	lock, _ := os.ReadFile(filepath.Join(app, "Gemfile.lock"))
	if !strings.Contains(string(lock), "tu_dep (1.2.0)") {
		t.Errorf("bundle update did not pick the new version:\n%s", lock)
	}
	saw206 := false
	for _, r := range up.Log() {
		if r.Path == "/versions" && r.Header.Get("Range") != "" {
			saw206 = true
		}
	}
	if !saw206 {
		t.Errorf("Bundler did not revalidate /versions with a Range request: %v", up.Paths())
	}
	up.Yank("tu_dep", "1.2.0", "")
	up.RebuildVersions()
	up.Reset()
	rubyfmt.RunTool(t, app, env, "bundle", "update", "tu_dep")
	// Both files shrank: the ranged revalidation gets 416, Bundler then
	// fetches the whole file.
	var got []string
	for _, r := range up.Log() {
		got = append(got, r.Path+" ranged="+strings.TrimSuffix(strings.TrimPrefix(r.Header.Get("Range"), "bytes="), "-"))
	}
	if len(got) != 4 || !strings.HasPrefix(got[0], "/versions ranged=") || got[0] == "/versions ranged=" || got[1] != "/versions ranged=" ||
		!strings.HasPrefix(got[2], "/info/tu_dep ranged=") || got[3] != "/info/tu_dep ranged=" {
		t.Errorf("bundle update after yank + rebuild requested %q", got)
	}
}

// TestRubyLoadsGoSpecsIndex checks that RubyGems reads the Go-encoded specs files.
func TestRubyLoadsGoSpecsIndex(t *testing.T) {
	rubyfmt.RequireTools(t, "ruby", "gem")
	up, ts := Start(t, Options{})
	up.Publish(GemSpec{Name: "tu_x", Version: "1.0.0"}, nil)
	up.Publish(GemSpec{Name: "tu_x", Version: "1.1.0.beta"}, nil)
	up.Publish(GemSpec{Name: "tu_y", Version: "0.1", Platform: "java"}, nil)
	home := t.TempDir()
	env := rubyfmt.RubyEnv(home)
	out := rubyfmt.RunTool(t, home, env, "gem", "search", "-r", "tu_", "--all", "--clear-sources", "--source", ts.URL+"/")
	if !strings.Contains(out, "tu_x (1.0.0)") || !strings.Contains(out, "tu_y (0.1 java)") {
		t.Errorf("gem search through Go-encoded specs:\n%s", out)
	}
	out = rubyfmt.RunTool(t, home, env, "gem", "search", "-r", "tu_x", "--prerelease", "--clear-sources", "--source", ts.URL+"/")
	if !strings.Contains(out, "1.1.0.beta") {
		t.Errorf("gem search --prerelease:\n%s", out)
	}
}
