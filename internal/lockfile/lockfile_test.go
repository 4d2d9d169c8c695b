package lockfile

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// sumA and sumB are well-formed SHA-256 hex digests.
const (
	sumA = "814828c34f1315d7e7b7e8295184577cc4e969bad6156ac069d02d63f58d82e8"
	sumB = "be6cf80bd6ba8b35bb9a5a85d3c61d77d5fa6b8d3c6b1a0a1b5e2f2d3c4b5a69"
	// sumBUpper is sumB in capitals, as a lockfile may (not) write it.
	sumBUpper = "BE6CF80BD6BA8B35BB9A5A85D3C61D77D5FA6B8D3C6B1A0A1B5E2F2D3C4B5A69"
)

// bundler25 is a lockfile as Bundler 2.5 writes it with checksums enabled:
// a GIT and a PATH source, two GEM sources, platform gems and a gem without
// a known checksum.
const bundler25 = `GIT
  remote: https://github.com/alloy/peiji-san.git
  revision: eca485d8dc95f12aaec1a434b49d295c7e91844b
  specs:
    peiji-san (1.2.0)

PATH
  remote: .
  specs:
    myapp (0.1.0)
      rake

GEM
  remote: https://rubygems.org/
  specs:
    nokogiri (1.16.0-arm64-darwin)
      racc (~> 1.4)
    nokogiri (1.16.0-x86_64-linux)
      racc (~> 1.4)
    racc (1.7.3)
    rake (13.1.0)

GEM
  remote: https://gems.example.com/
  specs:
    secret (2.0.0.pre.1)

PLATFORMS
  arm64-darwin
  x86_64-linux

DEPENDENCIES
  myapp!
  nokogiri (>= 1.4.4, < 1.17)
  peiji-san!
  rake
  secret (~> 2.0.0.pre)

CHECKSUMS
  myapp (0.1.0)
  nokogiri (1.16.0-arm64-darwin) sha256=` + sumA + `
  nokogiri (1.16.0-x86_64-linux) sha512=abcd,sha256=` + sumBUpper + `
  peiji-san (1.2.0)
  racc (1.7.3)
  rake (13.1.0) sha256=` + sumA + `

RUBY VERSION
   ruby 3.3.0p0

BUNDLED WITH
   2.5.6
`

// TestParse checks what Parse returns for whole lockfiles.
func TestParse(t *testing.T) {
	rubygems := []string{"https://rubygems.org/"}
	tests := []struct {
		name string
		in   string
		want *Lockfile
	}{
		{
			name: "empty",
			in:   "",
			want: &Lockfile{},
		},
		{
			name: "bundler 2.5 with checksums",
			in:   bundler25,
			want: &Lockfile{
				Gems: []Gem{
					{Name: "nokogiri", Version: "1.16.0", Platform: "arm64-darwin", Remotes: rubygems, SHA256: sumA, Line: 16},
					{Name: "nokogiri", Version: "1.16.0", Platform: "x86_64-linux", Remotes: rubygems, SHA256: sumB, Line: 18},
					{Name: "racc", Version: "1.7.3", Platform: "ruby", Remotes: rubygems, Line: 20},
					{Name: "rake", Version: "13.1.0", Platform: "ruby", Remotes: rubygems, SHA256: sumA, Line: 21},
					{Name: "secret", Version: "2.0.0.pre.1", Platform: "ruby", Remotes: []string{"https://gems.example.com/"}, Line: 26},
				},
				Platforms: []string{"arm64-darwin", "x86_64-linux"},
				Dependencies: []Dependency{
					{Name: "myapp", Pinned: true},
					{Name: "nokogiri", Requirement: ">= 1.4.4, < 1.17"},
					{Name: "peiji-san", Pinned: true},
					{Name: "rake"},
					{Name: "secret", Requirement: "~> 2.0.0.pre"},
				},
				RubyVersion:  "ruby 3.3.0p0",
				BundledWith:  "2.5.6",
				HasChecksums: true,
			},
		},
		{
			name: "bundler 1 with two remotes in one section, CRLF, blank lines and unknown parts",
			in: "GEM\r\n  remote: https://rubygems.org/\r\n  remote: http://gems.example.com/\r\n  options: x\r\n" +
				"  specs:\r\n\r\n    rack (1.5.2)\r\n      foo\r\n   odd (1.0)\r\n\r\nUNKNOWN SECTION\r\n    ignored (1.0)\r\n" +
				"PLATFORMS\r\n  ruby\r\n\r\nDEPENDENCIES\r\n  rack (~> 1.5)!\r\n",
			want: &Lockfile{
				Gems:         []Gem{{Name: "rack", Version: "1.5.2", Platform: "ruby", Remotes: []string{"https://rubygems.org/", "http://gems.example.com/"}, Line: 7}},
				Platforms:    []string{"ruby"},
				Dependencies: []Dependency{{Name: "rack", Requirement: "~> 1.5", Pinned: true}},
			},
		},
		{
			name: "a full name listed twice is kept once",
			in:   "GEM\n  remote: https://rubygems.org/\n  specs:\n    a (1.0)\n\nGEM\n  remote: https://other.example/\n  specs:\n    a (1.0)\n    b (2)\n",
			want: &Lockfile{Gems: []Gem{
				{Name: "a", Version: "1.0", Platform: "ruby", Remotes: rubygems, Line: 4},
				{Name: "b", Version: "2", Platform: "ruby", Remotes: []string{"https://other.example/"}, Line: 10},
			}},
		},
		{
			name: "checksums before the specs, for gems of other sections, and explicit ruby platform",
			in: "CHECKSUMS\n  a (1.0) sha256=" + sumA + "\n  g (3.0) sha256=" + sumB + "\n  c (1.0-ruby) sha256=" + sumB + "\n\n" +
				"GEM\n  specs:\n    a (1.0)\n    c (1.0-ruby)\n",
			want: &Lockfile{Gems: []Gem{
				{Name: "a", Version: "1.0", Platform: "ruby", SHA256: sumA, Line: 8},
				{Name: "c", Version: "1.0", Platform: "ruby", SHA256: sumB, Line: 9},
			}, HasChecksums: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// TestParseErrors checks the *Error of lockfiles Parse refuses.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "merge conflict", in: "GEM\n  specs:\n<<<<<<< HEAD\n    a (1.0)\n=======\n    a (1.1)\n>>>>>>> b\n",
			want: "line 3: merge conflict marker <<<<<<<; resolve the conflict (or regenerate the lockfile) first"},
		{name: "spec without version", in: "GEM\n  specs:\n    rake\n",
			want: `line 3: spec "rake": want NAME (VERSION)`},
		{name: "spec without closing parenthesis", in: "GEM\n  specs:\n    rake (1.0\n",
			want: `line 3: spec "rake (1.0": missing )`},
		{name: "name with a slash", in: "GEM\n  specs:\n    ../x (1.0)\n",
			want: `line 3: spec "../x (1.0)": invalid gem name "../x"`},
		{name: "version not starting with a digit", in: "GEM\n  specs:\n    a (v1)\n",
			want: `line 3: spec "a (v1)": invalid version "v1"`},
		{name: "version with an empty part", in: "GEM\n  specs:\n    a (1..0)\n",
			want: `line 3: spec "a (1..0)": invalid version "1..0"`},
		{name: "name without a letter or digit", in: "GEM\n  specs:\n    ... (1.0)\n",
			want: `line 3: spec "... (1.0)": invalid gem name "..."`},
		{name: "platform with an empty part", in: "GEM\n  specs:\n    a (1.0-x86--linux)\n",
			want: `line 3: spec "a (1.0-x86--linux)": invalid platform "x86--linux"`},
		{name: "platform with a space", in: "GEM\n  specs:\n    a (1.0-x86 linux)\n",
			want: `line 3: spec "a (1.0-x86 linux)": invalid platform "x86 linux"`},
		{name: "text after the version", in: "GEM\n  specs:\n    a (1.0) b\n",
			want: `line 3: spec "a (1.0) b": unexpected " b" after the version`},
		{name: "spec before specs:", in: "GEM\n  remote: https://rubygems.org/\n    a (1.0)\n",
			want: `line 3: spec "a (1.0)" before the section's "specs:" line`},
		{name: "short sha256", in: "CHECKSUMS\n  a (1.0) sha256=abc\n",
			want: `line 2: checksum of a-1.0: sha256 "abc" is not 64 hexadecimal digits`},
		{name: "checksum without algorithm", in: "CHECKSUMS\n  a (1.0) " + sumA + "\n",
			want: `line 2: checksum "a (1.0) ` + sumA + `": "` + sumA + `" is not ALGORITHM=DIGEST`},
		{name: "checksum glued to the version", in: "CHECKSUMS\n  a (1.0)x\n",
			want: `line 2: checksum "a (1.0)x": unexpected "x" after the version`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in))
			var le *Error
			if !errors.As(err, &le) {
				t.Fatalf("error %v, want *Error", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error %q\nwant  %q", err, tt.want)
			}
		})
	}
}

// TestParseReadError checks a read failure is returned, wrapped.
func TestParseReadError(t *testing.T) {
	boom := errors.New("boom")
	if _, err := Parse(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Fatalf("error %v, want one wrapping %v", err, boom)
	}
}

// TestGemFileName checks the .gem file names, with and without platform.
func TestGemFileName(t *testing.T) {
	tests := []struct {
		gem  Gem
		want string
	}{
		{Gem{Name: "rake", Version: "13.1.0", Platform: "ruby"}, "rake-13.1.0.gem"},
		{Gem{Name: "rake", Version: "13.1.0"}, "rake-13.1.0.gem"},
		{Gem{Name: "nokogiri", Version: "1.16.0", Platform: "x86_64-linux-gnu"}, "nokogiri-1.16.0-x86_64-linux-gnu.gem"},
		{Gem{Name: "pygments.rb", Version: "0.5.1", Platform: "ruby"}, "pygments.rb-0.5.1.gem"},
	}
	for _, tt := range tests {
		if got := tt.gem.FileName(); got != tt.want {
			t.Errorf("%+v: FileName %q, want %q", tt.gem, got, tt.want)
		}
	}
}
