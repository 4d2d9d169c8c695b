package testupstream

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
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

// CorpusRows returns the rows of the corpus' INDEX.tsv, each a map from
// column name (file, name, version, sha256, ...) to value; it skips or
// fails tb as CorpusDir does when the corpus is absent.
func CorpusRows(tb testing.TB) []map[string]string {
	tb.Helper()
	f, err := os.Open(filepath.Join(CorpusDir(tb), "INDEX.tsv"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	cols := strings.Split(sc.Text(), "\t")
	var rows []map[string]string
	for sc.Scan() {
		row := map[string]string{}
		for i, v := range strings.Split(sc.Text(), "\t") {
			row[cols[i]] = v
		}
		rows = append(rows, row)
	}
	return rows
}
