package rubyfmt

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
	RequireTools(t, "ruby", "gem")
	dir := t.TempDir()
	env := RubyEnv(t.TempDir())
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
	out := RunTool(t, dir, env, "ruby", append([]string{"-e", script}, files...)...)
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
		if got := RunTool(t, dir, env, "gem", "spec", f, "name"); !strings.Contains(got, strings.SplitN(f, "-", 2)[0]) {
			t.Errorf("gem spec %s name = %q", f, got)
		}
	}
	inst := filepath.Join(t.TempDir(), "inst")
	for _, f := range []string{"tu_app-1.0.0.gem", "tu_pre-2.0.0.pre1.gem", "tu_plat-1.0.0-x86_64-linux.gem", "tu_long-0.10.gem", "tu_big-1.0.0.gem"} {
		RunTool(t, dir, env, "gem", "install", "--local", "--no-document", "--force", "--install-dir", inst, f)
	}
	for _, want := range []string{"tu_app-1.0.0", "tu_dep-1.1.0", "tu_pre-2.0.0.pre1", "tu_plat-1.0.0-x86_64-linux", "tu_big-1.0.0"} {
		if _, err := os.Stat(filepath.Join(inst, "gems", want)); err != nil {
			t.Errorf("%s not installed: %v", want, err)
		}
	}
}

// TestRubyMarshal checks RubyMarshal output with Ruby and the Go specs encoder against it.
func TestRubyMarshal(t *testing.T) {
	RequireTools(t, "ruby")
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
	got := RunTool(t, dir, RubyEnv(t.TempDir()), "ruby", "-rrubygems", "-rzlib", "-e",
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
