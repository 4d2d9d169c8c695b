package lockfile

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// TestCorpusLockfiles parses the lockfiles of the corpus apps: every spec
// line is a gem, with the GEM remote, whose .gem file is in the corpus.
func TestCorpusLockfiles(t *testing.T) {
	dir := testupstream.CorpusDir(t)
	specLine := regexp.MustCompile(`(?m)^    \S`)
	tests := []struct {
		path  string
		specs int
	}{
		{path: "app/Gemfile.lock", specs: 35},
		{path: "apps/opensource.guide-2013/Gemfile.lock", specs: 16},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, tt.path))
			if err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(filepath.Join(dir, tt.path))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			lf, err := Parse(f)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(specLine.FindAll(data, -1)); n != tt.specs {
				t.Fatalf("the file has %d spec lines, the test expects %d", n, tt.specs)
			}
			if len(lf.Gems) != tt.specs {
				t.Errorf("parsed %d gems, want %d", len(lf.Gems), tt.specs)
			}
			for _, g := range lf.Gems {
				if len(g.Remotes) != 1 || g.Remotes[0] != "https://rubygems.org/" || g.Platform != RubyPlatform || g.SHA256 != "" {
					t.Errorf("%s: remotes %q, platform %q, sha256 %q", g.FullName(), g.Remotes, g.Platform, g.SHA256)
				}
				if _, err := os.Stat(filepath.Join(dir, "gems", g.FileName())); err != nil {
					t.Errorf("%s: %v", g.FileName(), err)
				}
			}
			if len(lf.Platforms) != 1 || lf.Platforms[0] != "ruby" || len(lf.Dependencies) == 0 || lf.HasChecksums {
				t.Errorf("platforms %q, %d dependencies, checksums %v", lf.Platforms, len(lf.Dependencies), lf.HasChecksums)
			}
		})
	}
}
