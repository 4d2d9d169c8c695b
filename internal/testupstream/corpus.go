package testupstream

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// CorpusDir returns the shared corpus of real gems and recorded responses:
// $GEMPROXY_CORPUS, or ../shared/corpus beside the repository (see
// SharedDir).
func CorpusDir(tb testing.TB) string {
	tb.Helper()
	return SharedDir(tb, "GEMPROXY_CORPUS", "corpus", "INDEX.tsv")
}

// SharedDir returns a directory of shared test material: $envVar, or
// ../shared/name beside the repository (the path from any package two
// levels below the repository root), provided it holds marker. When it
// does not, the test is skipped with a message, or fails when $CI is set,
// so CI cannot silently lose that coverage.
func SharedDir(tb testing.TB, envVar, name, marker string) string {
	tb.Helper()
	dir := os.Getenv(envVar)
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "shared", name)
	}
	if _, err := os.Stat(filepath.Join(dir, marker)); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("%s not found at %s (set %s): %v", name, dir, envVar, err)
		}
		tb.Skipf("%s not found at %s; set %s to run this test: %v", name, dir, envVar, err)
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
