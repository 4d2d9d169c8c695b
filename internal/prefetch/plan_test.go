package prefetch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gemproxy/gemproxy/internal/lockfile"
)

// parseLock parses a lockfile text for the plan tests.
func parseLock(t *testing.T, path, text string) Lockfile {
	t.Helper()
	lf, err := lockfile.Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return Lockfile{Path: path, Parsed: lf}
}

// TestNewPlan checks the merge of lockfiles: each file once, a gem
// skipped in one lockfile but allowed in another is fetched, lockfiles
// that disagree on a checksum make a conflict, and the index files are
// /versions, /names and one /info per gem name.
func TestNewPlan(t *testing.T) {
	sumA, sumB := strings.Repeat("a", 64), strings.Repeat("b", 64)
	one := parseLock(t, "one.lock", `GEM
  remote: https://rubygems.org/
  specs:
    a (1.0)
    b (1.0)

GEM
  remote: https://other.example/
  specs:
    c (1.0)
    d (1.0)

CHECKSUMS
  a (1.0) sha256=`+sumA+`
`)
	two := parseLock(t, "two.lock", `GEM
  remote: https://rubygems.org
  specs:
    a (1.0)
    b (1.0)
    b (1.0-x86_64-linux)
    c (1.0)

CHECKSUMS
  a (1.0) sha256=`+sumB+`
  b (1.0) sha256=`+sumB+`
`)

	pl := NewPlan([]Lockfile{one, two}, NewRemoteFilter())
	var got []string
	for _, tg := range pl.Gems {
		got = append(got, fmt.Sprintf("%s sha=%.1s from=%s conflict=%v", tg.File, tg.SHA256, tg.SumFrom, tg.Conflict != ""))
	}
	want := []string{
		"a-1.0.gem sha=a from=one.lock conflict=true",
		"b-1.0.gem sha=b from=two.lock conflict=false",
		"b-1.0-x86_64-linux.gem sha= from= conflict=false",
		"c-1.0.gem sha= from= conflict=false",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("gems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(pl.Skipped) != 1 || pl.Skipped[0].File != "d-1.0.gem" {
		t.Errorf("skipped %+v, want only d-1.0.gem", pl.Skipped)
	}
	if want := "CHECKSUMS of one.lock and two.lock disagree (sha256 " + sumA + " and " + sumB + "); not fetched"; pl.Gems[0].Conflict != want {
		t.Errorf("conflict %q\nwant     %q", pl.Gems[0].Conflict, want)
	}
	var paths []string
	for _, it := range pl.items() {
		paths = append(paths, it.path)
	}
	wantPaths := "/versions /names /gems/a-1.0.gem /gems/b-1.0.gem /gems/b-1.0-x86_64-linux.gem /gems/c-1.0.gem /info/a /info/b /info/c"
	if strings.Join(paths, " ") != wantPaths {
		t.Errorf("items %v\nwant  %s", paths, wantPaths)
	}
}

// TestRemoteFilter checks which lockfile remotes prefetch fetches from.
func TestRemoteFilter(t *testing.T) {
	allow := NewRemoteFilter("http://127.0.0.1:9292", "https://mirror.example/rubygems/")
	tests := []struct {
		remote string
		want   bool
	}{
		{"https://rubygems.org/", true},
		{"http://rubygems.org", true},
		{"HTTPS://RubyGems.org:443/", true},
		{"https://index.rubygems.org/", true},
		{"http://127.0.0.1:9292/", true},
		{"https://127.0.0.1:9292", true},
		{"https://mirror.example/rubygems", true},
		{"https://rubygems.org/private/", false},
		{"https://rubygems.org:8443/", false},
		{"https://gems.example.com/", false},
		{"https://mirror.example/", false},
		{"git@github.com:x/y.git", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := allow(tt.remote); got != tt.want {
			t.Errorf("allow(%q) = %v, want %v", tt.remote, got, tt.want)
		}
	}
}

// TestReadLockfilesRefusesOtherFiles checks a Gemfile (or any text without
// a lockfile's sections) is an error naming the file, while the smallest
// lockfile Bundler writes, with no gem, is accepted.
func TestReadLockfilesRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	empty := write("empty.lock", "GEM\n  remote: https://rubygems.org/\n  specs:\n\nPLATFORMS\n  ruby\n\nDEPENDENCIES\n\nBUNDLED WITH\n   2.5.6\n")
	gemfile := write("Gemfile", "source \"https://rubygems.org\"\n\ngem \"rack\"\n")
	if _, err := ReadLockfiles([]string{empty}); err != nil {
		t.Errorf("a lockfile without gems: %v", err)
	}
	_, err := ReadLockfiles([]string{empty, gemfile})
	if want := "lockfile " + gemfile + ": not a lockfile: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("a Gemfile: error %v, want one starting %q", err, want)
	}
}
