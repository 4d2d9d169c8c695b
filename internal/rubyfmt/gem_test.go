package rubyfmt

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/gzip"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"io"
	"reflect"
	"strconv"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// tarEntry is one member of a tar stream.
type tarEntry struct {
	hdr  *tar.Header // member header
	body []byte      // member content
}

// readTar returns every member of a tar stream.
func readTar(t *testing.T, b []byte) []tarEntry {
	t.Helper()
	var out []tarEntry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("tar body: %v", err)
		}
		out = append(out, tarEntry{h, body})
	}
}

// gunzip decompresses b.
func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

// TestBuildGemDeterministic checks that equal specs give equal bytes and different specs differ.
func TestBuildGemDeterministic(t *testing.T) {
	specs := []struct {
		name string
		spec GemSpec
	}{
		{"plain", GemSpec{Name: "a", Version: "1.0.0"}},
		{"deps", GemSpec{Name: "b", Version: "2.1", Deps: []Dep{{"a", "~> 1.0"}, {"c", ">= 1.0, < 3"}}, RequiredRuby: ">= 2.3"}},
		{"prerelease", GemSpec{Name: "c", Version: "2.0.0.pre1"}},
		{"platform", GemSpec{Name: "d", Version: "1.0.0", Platform: "x86_64-linux"}},
		{"padding", GemSpec{Name: "e", Version: "1.0.0", Padding: 100_000}},
		{"files", GemSpec{Name: "f", Version: "1.0.0", Files: map[string]string{"lib/f.rb": "x", "README.md": "y"}}},
	}
	for _, tc := range specs {
		t.Run(tc.name, func(t *testing.T) {
			a, err := BuildGem(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			b, err := BuildGem(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Fatal("two builds of the same spec differ")
			}
			other := tc.spec
			other.Version += ".1"
			c, err := BuildGem(other)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(a, c) {
				t.Fatal("different specs give identical gems")
			}
		})
	}
}

// TestBuildGemStructure checks the tar layout, the exact gemspec YAML and checksums.yaml.
func TestBuildGemStructure(t *testing.T) {
	date := time.Date(2020, 1, 1, 15, 4, 5, 0, time.UTC)
	spec := GemSpec{
		Name: "foo", Version: "2.0.0.pre1", Platform: "x86_64-linux", RequiredRuby: ">= 2.3",
		Deps:     []Dep{{"bar", "~> 1.0"}, {"baz", ">= 1.0, < 3"}},
		Licenses: []string{"MIT"}, Summary: "foo summary", Authors: []string{"gemproxy"}, Date: date,
		Padding: 3000,
	}
	gem, err := BuildGem(spec)
	if err != nil {
		t.Fatal(err)
	}
	members := readTar(t, gem)
	var names []string
	for _, m := range members {
		names = append(names, m.hdr.Name)
		if m.hdr.Mode != 0o444 || m.hdr.Uname != "wheel" || m.hdr.Gname != "wheel" || !m.hdr.ModTime.Equal(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("%s: header mode=%o uname=%s mtime=%v", m.hdr.Name, m.hdr.Mode, m.hdr.Uname, m.hdr.ModTime)
		}
	}
	if want := []string{"metadata.gz", "data.tar.gz", "checksums.yaml.gz"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("members = %v, want %v", names, want)
	}
	meta := string(gunzip(t, members[0].body))
	want := `--- !ruby/object:Gem::Specification
name: foo
version: !ruby/object:Gem::Version
  version: 2.0.0.pre1
platform: x86_64-linux
authors:
- gemproxy
autorequire:
bindir: bin
cert_chain: []
date: 2020-01-01 00:00:00.000000000 Z
dependencies:
- !ruby/object:Gem::Dependency
  name: bar
  requirement: !ruby/object:Gem::Requirement
    requirements:
    - - "~>"
      - !ruby/object:Gem::Version
        version: '1.0'
  type: :runtime
  prerelease: false
  version_requirements: !ruby/object:Gem::Requirement
    requirements:
    - - "~>"
      - !ruby/object:Gem::Version
        version: '1.0'
- !ruby/object:Gem::Dependency
  name: baz
  requirement: !ruby/object:Gem::Requirement
    requirements:
    - - ">="
      - !ruby/object:Gem::Version
        version: '1.0'
    - - "<"
      - !ruby/object:Gem::Version
        version: '3'
  type: :runtime
  prerelease: false
  version_requirements: !ruby/object:Gem::Requirement
    requirements:
    - - ">="
      - !ruby/object:Gem::Version
        version: '1.0'
    - - "<"
      - !ruby/object:Gem::Version
        version: '3'
description:
email:
executables: []
extensions: []
extra_rdoc_files: []
files:
- data/padding.bin
- lib/foo.rb
homepage:
licenses:
- MIT
metadata: {}
post_install_message:
rdoc_options: []
require_paths:
- lib
required_ruby_version: !ruby/object:Gem::Requirement
  requirements:
  - - ">="
    - !ruby/object:Gem::Version
      version: '2.3'
required_rubygems_version: !ruby/object:Gem::Requirement
  requirements:
  - - ">"
    - !ruby/object:Gem::Version
      version: 1.3.1
requirements: []
rubygems_version: 3.3.15
signing_key:
specification_version: 4
summary: foo summary
test_files: []
`
	if meta != want {
		t.Errorf("metadata YAML differs from what RubyGems 3.3.15 writes:\n%s", meta)
	}
	data := readTar(t, gunzip(t, members[1].body))
	if len(data) != 2 || data[0].hdr.Name != "data/padding.bin" || len(data[0].body) != 3000 || data[1].hdr.Name != "lib/foo.rb" {
		t.Fatalf("data.tar.gz members wrong: %d", len(data))
	}
	checks := string(gunzip(t, members[2].body))
	s256m, s256d := sha256.Sum256(members[0].body), sha256.Sum256(members[1].body)
	s512m, s512d := sha512.Sum512(members[0].body), sha512.Sum512(members[1].body)
	wantChecks := "---\nSHA256:\n  metadata.gz: " + hex.EncodeToString(s256m[:]) + "\n  data.tar.gz: " + hex.EncodeToString(s256d[:]) +
		"\nSHA512:\n  metadata.gz: " + hex.EncodeToString(s512m[:]) + "\n  data.tar.gz: " + hex.EncodeToString(s512d[:]) + "\n"
	if checks != wantChecks {
		t.Errorf("checksums.yaml = %q, want %q", checks, wantChecks)
	}
}

// TestBuildGemPaddingIsIncompressible checks that Padding really grows the gem.
func TestBuildGemPaddingIsIncompressible(t *testing.T) {
	gem, err := BuildGem(GemSpec{Name: "big", Version: "1.0.0", Padding: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(gem) < 1<<20 {
		t.Fatalf("gem is %d bytes, want >= 1 MiB", len(gem))
	}
}

// TestBuildGemRejectsInvalid checks spec validation.
func TestBuildGemRejectsInvalid(t *testing.T) {
	for name, spec := range map[string]GemSpec{
		"empty name":  {Version: "1.0"},
		"bad name":    {Name: "a b", Version: "1.0"},
		"bad version": {Name: "a", Version: "x.y"},
		"bad req":     {Name: "a", Version: "1.0", Deps: []Dep{{"b", "~~ 1"}}},
		"bad ruby":    {Name: "a", Version: "1.0", RequiredRuby: "newest"},
		"negative":    {Name: "a", Version: "1.0", Padding: -1},
	} {
		if _, err := BuildGem(spec); err == nil {
			t.Errorf("%s: BuildGem accepted %+v", name, spec)
		}
	}
}

// TestParseGemRoundTrip checks that ParseGem reads back what BuildGem wrote.
func TestParseGemRoundTrip(t *testing.T) {
	spec := GemSpec{
		Name: "rt", Version: "1.2.3", Platform: "x86_64-linux", RequiredRuby: ">= 2.5, < 3.5.dev",
		Deps:    []Dep{{"z", "~> 1.0"}, {"a", ">= 0"}, {"m", "= 2"}},
		Summary: "a: long summary # with indicators that is definitely longer than eighty characters wide, to fold",
		Authors: []string{"A", "B"}, Licenses: []string{"MIT", "Apache-2.0"},
		Date: time.Date(2021, 3, 4, 0, 0, 0, 0, time.UTC),
	}
	gem, err := BuildGem(spec)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseGem(gem)
	if err != nil {
		t.Fatal(err)
	}
	want := spec
	want.RequiredRubygems = ">= 0"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseGem = %+v\nwant %+v", got, want)
	}
}

// TestParseGemRejectsGarbage checks ParseGem errors.
func TestParseGemRejectsGarbage(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":   nil,
		"text":    []byte("hello"),
		"no meta": func() []byte { var buf bytes.Buffer; tw := tar.NewWriter(&buf); _ = tw.Close(); return buf.Bytes() }(),
	} {
		if _, err := ParseGem(b); err == nil {
			t.Errorf("%s: ParseGem accepted it", name)
		}
	}
}

// TestYAMLScalar checks Psych-compatible scalar quoting.
func TestYAMLScalar(t *testing.T) {
	tests := []struct{ in, want string }{
		{"rack", "rack"},
		{"1.0", "'1.0'"},
		{"3", "'3'"},
		{"1.3.1", "1.3.1"},
		{"2.0.0.pre1", "2.0.0.pre1"},
		{"0.10", "'0.10'"},
		{"=", "'='"},
		{"~>", `"~>"`},
		{">=", `">="`},
		{"!=", `"!="`},
		{"true", "'true'"},
		{"no", "'no'"},
		{"null", "'null'"},
		{"y", `"y"`},
		{".omghi", `".omghi"`},
		{"a: b # c", "'a: b # c'"},
		{"", "''"},
		{"2013-10-10", "'2013-10-10'"},
		{"it's", "it's"},
		{"tab\there", `"tab\there"`},
		{"line1\nline2", "|-\n  line1\n  line2"},
	}
	for _, tc := range tests {
		if got := yamlScalar(tc.in, 6, 2); got != tc.want {
			t.Errorf("yamlScalar(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestParseYAMLSubset checks the YAML parser on Syck-era and Psych-era constructs.
func TestParseYAMLSubset(t *testing.T) {
	src := `--- !ruby/object:Gem::Specification 
name: syntax
version: !ruby/object:Gem::Version 
  version: 1.0.0
required_ruby_version: !ruby/object:Gem::Version::Requirement 
  requirements: 
    - 
      - ">"
      - !ruby/object:Gem::Version 
        version: 0.0.0
  version: 
authors: 
  - Jamis Buck
description: |2
      Sass makes CSS fun again.
      Second line.
summary: "quoted \"x\" \u00e9"
dependencies:
- !ruby/object:Gem::Dependency
  name: a
  requirement: &id001 !ruby/object:Gem::Requirement
    none: false
    requirements:
    - - ! '>='
      - !ruby/object:Gem::Version
        version: '0'
  type: :runtime
  version_requirements: *id001
licenses: [MIT, 'BSD']
metadata: {}
`
	spec, err := parseGemspecYAML(src)
	if err != nil {
		t.Fatal(err)
	}
	want := GemSpec{Name: "syntax", Version: "1.0.0", Platform: "ruby", RequiredRuby: "> 0.0.0", RequiredRubygems: ">= 0",
		Authors: []string{"Jamis Buck"}, Summary: "quoted \"x\" é", Licenses: []string{"MIT", "BSD"},
		Deps: []Dep{{"a", ">= 0"}}}
	if !reflect.DeepEqual(spec, want) {
		t.Errorf("got  %+v\nwant %+v", spec, want)
	}
	root, err := parseYAML(src)
	if err != nil {
		t.Fatal(err)
	}
	if d := yamlScalarValue(yamlGet(root, "description")); d != "    Sass makes CSS fun again.\n    Second line.\n" {
		t.Errorf("block scalar = %q", d)
	}
}

// TestCompareVersions checks Gem::Version ordering.
func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0.0", 0},
		{"1.10", "1.9", 1},
		{"2.0.0.pre1", "2.0.0", -1},
		{"2.0.0.pre1", "2.0.0.pre2", -1},
		{"1.0.a", "1.0.0", -1},
		{"0.10.0", "0.9.99", 1},
		{"3.2.22.5", "3.2.22", 1},
		{"1.0.0-rc1", "1.0.0", -1},
		{"10", "9", 1},
	}
	for _, tc := range tests {
		if got := CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := CompareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

// TestCompareSpecs checks the one spec order: name, then Gem::Version, then
// the ruby platform before the others, the others by name.
func TestCompareSpecs(t *testing.T) {
	ordered := []GemSpec{
		{Name: "nokogiri", Version: "1.9.0", Platform: "ruby"},
		{Name: "nokogiri", Version: "1.16.0", Platform: "ruby"},
		{Name: "nokogiri", Version: "1.16.0", Platform: "arm64-darwin"},
		{Name: "nokogiri", Version: "1.16.0", Platform: "java"},
		{Name: "nokogiri", Version: "1.16.0", Platform: "x86_64-linux"},
		{Name: "rack", Version: "1.0.0", Platform: "ruby"},
	}
	for i, a := range ordered {
		for j, b := range ordered {
			if got, want := CompareSpecs(a, b), cmp.Compare(i, j); got != want {
				t.Errorf("CompareSpecs(%v, %v) = %d, want %d", a, b, got, want)
			}
		}
	}
}

// TestRequirementForms checks requirement normalization for gemspecs and the compact index.
func TestRequirementForms(t *testing.T) {
	tests := []struct{ in, str, compact string }{
		{"", ">= 0", ">= 0"},
		{"~> 1.0", "~> 1.0", "~> 1.0"},
		{">= 1.0, < 3", ">= 1.0, < 3", "< 3&>= 1.0"},
		{"1.2", "= 1.2", "= 1.2"},
		{">=2.5,<3.5.dev", ">= 2.5, < 3.5.dev", "< 3.5.dev&>= 2.5"},
	}
	for _, tc := range tests {
		if got := RequirementString(tc.in); got != tc.str {
			t.Errorf("RequirementString(%q) = %q, want %q", tc.in, got, tc.str)
		}
		if got := CompactRequirement(tc.in); got != tc.compact {
			t.Errorf("CompactRequirement(%q) = %q, want %q", tc.in, got, tc.compact)
		}
	}
}

// pairs is a Hash for tests: keys and values alternate.
type pairs []any

// Len implements Hash.
func (p pairs) Len() int { return len(p) / 2 }

// Entry implements Hash.
func (p pairs) Entry(i int) (string, any) { return p[2*i].(string), p[2*i+1] }

// TestToYAML checks the API YAML emitter.
func TestToYAML(t *testing.T) {
	v := []any{pairs{"name", "x", "n", 1, "ok", true, "nil", nil, "list", []string{"a"}, "empty", []any{},
		"deps", pairs{"development", []any{}, "runtime", []any{pairs{"name", "y", "requirements", ">= 0"}}}}}
	want := `---
- name: x
  "n": 1
  ok: true
  nil:
  list:
  - a
  empty: []
  deps:
    development: []
    runtime:
    - name: "y"
      requirements: ">= 0"
`
	if got := ToYAML(v); got != want {
		t.Errorf("ToYAML =\n%s\nwant\n%s", got, want)
	}
	var back []struct {
		Deps struct {
			Runtime []struct{ Requirements string }
		}
	}
	if err := yaml.Unmarshal([]byte(want), &back); err != nil || len(back) != 1 || len(back[0].Deps.Runtime) != 1 || back[0].Deps.Runtime[0].Requirements != ">= 0" {
		t.Errorf("ToYAML output does not parse back: %v %+v", err, back)
	}
}

// BenchmarkBuildGem measures building one small gem.
func BenchmarkBuildGem(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := BuildGem(GemSpec{Name: "bench", Version: "1." + strconv.Itoa(i)}); err != nil {
			b.Fatal(err)
		}
	}
}
