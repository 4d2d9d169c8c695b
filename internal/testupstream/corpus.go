package testupstream

import (
	"os"
	"path/filepath"
	"testing"
)

// CorpusDir returns the shared corpus of real gems and recorded responses:
// $GEMPROXY_CORPUS, or ../shared/corpus beside the repository (the path
// from any package two levels below the repository root). When it is
// absent the test is skipped with a message, or fails when $CI is set, so
// CI cannot silently lose that coverage.
func CorpusDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("GEMPROXY_CORPUS")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", "corpus")
	}
	if _, err := os.Stat(filepath.Join(dir, "INDEX.tsv")); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("corpus not found at %s (set GEMPROXY_CORPUS): %v", dir, err)
		}
		tb.Skipf("corpus not found at %s; set GEMPROXY_CORPUS to run this test: %v", dir, err)
	}
	return dir
}
