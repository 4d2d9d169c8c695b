package rubyfmt_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gemproxy/gemproxy/internal/rubyfmt"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// TestParseGemCorpus parses every corpus gem and compares with INDEX.tsv.
func TestParseGemCorpus(t *testing.T) {
	for _, row := range testupstream.CorpusRows(t) {
		gem, err := os.ReadFile(filepath.Join(testupstream.CorpusDir(t), "gems", row["file"]))
		if err != nil {
			t.Fatal(err)
		}
		spec, err := rubyfmt.ParseGem(gem)
		if err != nil {
			t.Errorf("%s: %v", row["file"], err)
			continue
		}
		if spec.Name != row["name"] || spec.Version != row["version"] || spec.Platform != row["metadata_platform"] {
			t.Errorf("%s: parsed %s %s %s", row["file"], spec.Name, spec.Version, spec.Platform)
		}
		var deps []string
		for _, d := range spec.Deps {
			deps = append(deps, d.Name+" ("+d.Requirement+")")
		}
		if got := strings.Join(deps, ";"); got != row["runtime_dependencies"] {
			t.Errorf("%s: deps %q, INDEX.tsv %q", row["file"], got, row["runtime_dependencies"])
		}
	}
}
