package testupstream

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// needTools skips the test (or fails it when CI is set) unless every tool
// is in PATH.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " not found in PATH; install Ruby (Debian: apt-get install -y ruby ruby-bundler) to run this test"
			if os.Getenv("CI") != "" {
				t.Fatal(msg + " (failing because CI is set)")
			}
			t.Skip(msg)
		}
	}
}

// rubyEnv returns an environment isolated from the user's gem setup.
func rubyEnv(home string) []string {
	env := []string{
		"HOME=" + home,
		"GEM_HOME=" + filepath.Join(home, "gemhome"),
		"GEM_PATH=" + filepath.Join(home, "gemhome"),
		"GEM_SPEC_CACHE=" + filepath.Join(home, "specs"),
		"BUNDLE_USER_HOME=" + filepath.Join(home, "bundle"),
		"BUNDLE_APP_CONFIG=" + filepath.Join(home, "bundle-app"),
		"BUNDLE_DISABLE_VERSION_CHECK=true",
		"SOURCE_DATE_EPOCH=315964800",
		"LANG=C.UTF-8",
	}
	for _, k := range []string{"PATH", "TMPDIR"} {
		if v := os.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// run executes a command in dir with env and returns its combined output;
// the test fails on a non-zero exit.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := runErr(dir, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// runErr executes a command with a timeout and returns output and error.
func runErr(dir string, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	return buf.String(), err
}

// rubyTestSpecs are the gems the Ruby acceptance tests build.
var rubyTestSpecs = []GemSpec{
	{Name: "tu_dep", Version: "1.0.0"},
	{Name: "tu_dep", Version: "1.1.0", RequiredRuby: ">= 2.3"},
	{Name: "tu_app", Version: "1.0.0", Deps: []Dep{{"tu_dep", "~> 1.0"}}, Licenses: []string{"MIT"}},
	{Name: "tu_pre", Version: "2.0.0.pre1", Deps: []Dep{{"tu_dep", ">= 1.0, < 3"}}},
	{Name: "tu_plat", Version: "1.0.0", Platform: "x86_64-linux"},
	{Name: "tu_long", Version: "0.10", Summary: "A deliberately long summary: it has a colon, a # hash, 'quotes' and enough words to pass eighty columns wide", Authors: []string{"Ann O'Neil", "true"}},
	{Name: "tu_big", Version: "1.0.0", Padding: 2 << 20},
}

// TestRubyAcceptsBuiltGems checks with real RubyGems that built gems verify, re-serialize byte-identically and install.
func TestRubyAcceptsBuiltGems(t *testing.T) {
	needTools(t, "ruby", "gem")
	dir := t.TempDir()
	env := rubyEnv(t.TempDir())
	var files []string
	for _, spec := range rubyTestSpecs {
		b, err := BuildGem(spec)
		if err != nil {
			t.Fatal(err)
		}
		f := spec.FullName() + ".gem"
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	// RubyGems loads each gem, verifies its checksums, and re-serializes the
	// spec: the YAML must be byte-identical to our metadata.gz.
	script := `
require 'rubygems/package'
require 'zlib'
ARGV.each do |f|
  pkg = Gem::Package.new(f)
  pkg.verify
  spec = pkg.spec
  meta = nil
  File.open(f, 'rb') do |io|
    Gem::Package::TarReader.new(io).each { |e| meta = Zlib.gunzip(e.read) if e.full_name == 'metadata.gz' }
  end
  if spec.to_yaml == meta
    puts "OK #{spec.full_name} #{spec.runtime_dependencies.map(&:to_s).join(';')}"
  else
    puts "DIFF #{f}"
    puts spec.to_yaml
  end
end
`
	out := run(t, dir, env, "ruby", append([]string{"-e", script}, files...)...)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "OK ") {
			t.Errorf("ruby: %s", out)
			break
		}
	}
	if !strings.Contains(out, "OK tu_app-1.0.0 tu_dep (~> 1.0)") || !strings.Contains(out, "OK tu_plat-1.0.0-x86_64-linux") {
		t.Errorf("unexpected ruby output:\n%s", out)
	}
	for _, f := range files {
		if got := run(t, dir, env, "gem", "spec", f, "name"); !strings.Contains(got, strings.SplitN(f, "-", 2)[0]) {
			t.Errorf("gem spec %s name = %q", f, got)
		}
	}
	inst := filepath.Join(t.TempDir(), "inst")
	for _, f := range []string{"tu_app-1.0.0.gem", "tu_pre-2.0.0.pre1.gem", "tu_plat-1.0.0-x86_64-linux.gem", "tu_long-0.10.gem", "tu_big-1.0.0.gem"} {
		run(t, dir, env, "gem", "install", "--local", "--no-document", "--force", "--install-dir", inst, f)
	}
	for _, want := range []string{"tu_app-1.0.0", "tu_dep-1.1.0", "tu_pre-2.0.0.pre1", "tu_plat-1.0.0-x86_64-linux", "tu_big-1.0.0"} {
		if _, err := os.Stat(filepath.Join(inst, "gems", want)); err != nil {
			t.Errorf("%s not installed: %v", want, err)
		}
	}
}

// TestRubyMarshal checks RubyMarshal output with Ruby and the Go specs encoder against it.
func TestRubyMarshal(t *testing.T) {
	needTools(t, "ruby")
	var in MarshalInput
	for _, spec := range rubyTestSpecs[:5] {
		b, err := BuildGem(spec)
		if err != nil {
			t.Fatal(err)
		}
		in.Gems = append(in.Gems, MarshalGem{FullName: spec.FullName(), Gem: b})
	}
	idx := SpecsIndex{
		Specs:      []SpecTuple{{"a", "1.0", "ruby"}, {"a", "1.0", "x86_64-linux"}, {"b", "1.0", "ruby"}, {"b", "2.0", "ruby"}, {"ruby", "1.0", "ruby"}},
		Latest:     []SpecTuple{{"a", "1.0", "ruby"}, {"b", "2.0", "ruby"}},
		Prerelease: []SpecTuple{},
	}
	in.Index = &idx
	out, err := RubyMarshal(in)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for full, b := range out.QuickSpecs {
		if err := os.WriteFile(filepath.Join(dir, full+".gemspec.rz"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := run(t, dir, rubyEnv(t.TempDir()), "ruby", "-rrubygems", "-rzlib", "-e",
		`Dir["*.rz"].sort.each { |f| s = Marshal.load(Zlib::Inflate.inflate(File.binread(f))); puts s.full_name }`)
	want := "tu_app-1.0.0\ntu_dep-1.0.0\ntu_dep-1.1.0\ntu_plat-1.0.0-x86_64-linux\ntu_pre-2.0.0.pre1\n"
	if got != want {
		t.Errorf("quick specs load as %q, want %q", got, want)
	}
	// The Go encoder must produce exactly Ruby's Marshal bytes.
	gs, gl, gp := GoSpecsIndex(idx)
	for _, c := range []struct {
		name     string
		goB, rbB []byte
	}{{"specs", gs, out.Specs}, {"latest", gl, out.LatestSpecs}, {"prerelease", gp, out.PrereleaseSpecs}} {
		if g, r := gunzip(t, c.goB), gunzip(t, c.rbB); !bytes.Equal(g, r) {
			t.Errorf("%s: Go marshal %x\nruby marshal %x", c.name, g, r)
		}
	}
}

// TestRubyClientsThroughServer runs gem install, gem search and bundle install/update against the server.
func TestRubyClientsThroughServer(t *testing.T) {
	needTools(t, "ruby", "gem", "bundle")
	up, ts := Start(t, Options{Marshal: RubyMarshal})
	var items []Item
	for _, spec := range rubyTestSpecs[:5] {
		items = append(items, Item{Spec: spec})
	}
	if err := up.PublishAll(items); err != nil {
		t.Fatal(err)
	}
	up.RebuildVersions()
	home := t.TempDir()
	env := rubyEnv(home)
	src := ts.URL + "/"

	inst := filepath.Join(home, "inst")
	installs := [][]string{{"tu_app"}, {"tu_pre", "--pre"}}
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" {
		installs = append(installs, []string{"tu_plat"}) // an x86_64-linux gem
	}
	for _, args := range installs {
		run(t, home, env, "gem", append([]string{"install", "--no-document", "--clear-sources", "--source", src, "--install-dir", inst}, args...)...)
	}
	for _, want := range []string{"tu_app-1.0.0", "tu_dep-1.1.0", "tu_pre-2.0.0.pre1", "tu_plat-1.0.0-x86_64-linux"} {
		if _, err := os.Stat(filepath.Join(inst, "gems", want)); err != nil && (len(installs) == 3 || !strings.HasPrefix(want, "tu_plat")) {
			t.Errorf("%s not installed through the server: %v", want, err)
		}
	}
	if up.Requests("/quick/Marshal.4.8/tu_app-1.0.0.gemspec.rz") == 0 || up.Requests("/info/tu_app") == 0 {
		t.Errorf("gem install did not use the compact index + quick spec: %v", up.Paths())
	}
	if out := run(t, home, env, "gem", "search", "-r", "tu_", "--clear-sources", "--source", src); !strings.Contains(out, "tu_dep (1.1.0)") {
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
	run(t, app, env, "bundle", "config", "set", "--local", "path", filepath.Join(home, "vendor"))
	run(t, app, env, "bundle", "install")
	up.Publish(GemSpec{Name: "tu_dep", Version: "1.2.0"}, nil)
	up.Reset()
	run(t, app, env, "bundle", "update", "tu_dep")
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
	run(t, app, env, "bundle", "update", "tu_dep")
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
	needTools(t, "ruby", "gem")
	up, ts := Start(t, Options{})
	up.Publish(GemSpec{Name: "tu_x", Version: "1.0.0"}, nil)
	up.Publish(GemSpec{Name: "tu_x", Version: "1.1.0.beta"}, nil)
	up.Publish(GemSpec{Name: "tu_y", Version: "0.1", Platform: "java"}, nil)
	home := t.TempDir()
	env := rubyEnv(home)
	out := run(t, home, env, "gem", "search", "-r", "tu_", "--all", "--clear-sources", "--source", ts.URL+"/")
	if !strings.Contains(out, "tu_x (1.0.0)") || !strings.Contains(out, "tu_y (0.1 java)") {
		t.Errorf("gem search through Go-encoded specs:\n%s", out)
	}
	out = run(t, home, env, "gem", "search", "-r", "tu_x", "--prerelease", "--clear-sources", "--source", ts.URL+"/")
	if !strings.Contains(out, "1.1.0.beta") {
		t.Errorf("gem search --prerelease:\n%s", out)
	}
}
