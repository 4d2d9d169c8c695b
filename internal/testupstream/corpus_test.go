package testupstream

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPublishCorpus publishes the shared corpus and compares /info lines with rubygems.org's recorded ones.
func TestPublishCorpus(t *testing.T) {
	rows := CorpusRows(t)
	up, ts := Start(t, Options{InfoV1: true})
	if err := up.PublishCorpus(CorpusDir(t)); err != nil {
		t.Fatal(err)
	}
	up.RebuildVersions()
	// Every corpus gem is served byte-identical and listed in /info with its
	// sha256; where rubygems.org's recorded /info has the same version, our
	// line (format v1) must be identical to the real one.
	recorded := map[string]string{} // name + " " + number -> recorded line
	for _, pattern := range []string{"bundler-vcr_compact-index_info_*.txt", "dependabot_compact-index_info_*.txt"} {
		files, _ := filepath.Glob(filepath.Join(CorpusDir(t), "api", pattern))
		for _, file := range files {
			base := strings.TrimSuffix(filepath.Base(file), ".txt")
			name := base[strings.LastIndex(base, "info_")+len("info_"):]
			b, _ := os.ReadFile(file)
			for _, line := range strings.Split(string(b), "\n") {
				if number, _, ok := strings.Cut(line, " "); ok {
					recorded[name+" "+number] = line
				}
			}
		}
	}
	compared := 0
	for _, row := range rows {
		full := strings.TrimSuffix(row["file"], ".gem")
		number := strings.TrimPrefix(full, row["name"]+"-")
		info := do(t, "GET", ts.URL+"/info/"+row["name"], nil).body
		var ours string
		for _, line := range strings.Split(string(info), "\n") {
			if strings.HasPrefix(line, number+" ") {
				ours = line
			}
		}
		if !strings.Contains(ours, "|checksum:"+row["sha256"]) {
			t.Errorf("%s: /info line %q lacks checksum %s", full, ours, row["sha256"])
		}
		if real, ok := recorded[row["name"]+" "+number]; ok && row["compact_index_checksum"] == "verified" {
			compared++
			if real != ours {
				t.Errorf("%s: /info line differs from rubygems.org's\n ours: %s\n real: %s", full, ours, real)
			}
		}
		g := do(t, "GET", ts.URL+"/gems/"+row["file"], nil)
		if g.status != 200 || gemSHA256Hex(g.body) != row["sha256"] {
			t.Errorf("%s: served %d, sha %s", row["file"], g.status, gemSHA256Hex(g.body))
		}
	}
	if compared < 100 {
		t.Errorf("only %d corpus gems compared with recorded /info lines", compared)
	}
	t.Logf("%d gems published, %d /info lines identical to rubygems.org's", len(rows), compared)
	if err := up.PublishCorpus(CorpusDir(t)); err == nil {
		t.Error("publishing the corpus twice succeeded")
	}
}

// TestPublishThousandsIsFast checks that publishing 3000 gems with the default MarshalFunc stays well under a second.
func TestPublishThousandsIsFast(t *testing.T) {
	const n = 3000
	items := make([]Item, n)
	for i := range items {
		spec := GemSpec{Name: "g" + itoa(i%500), Version: "1." + itoa(i/500) + ".0", Deps: []Dep{{Name: "dep", Requirement: "~> 1.0"}}}
		items[i] = Item{Spec: spec, Gem: []byte("gem bytes " + spec.FullName())}
	}
	up := New(Options{})
	start := time.Now()
	for _, it := range items {
		up.Publish(it.Spec, it.Gem)
	}
	d := time.Since(start)
	limit := time.Second
	if raceEnabled {
		limit = 10 * time.Second
	}
	t.Logf("published %d gems in %v", n, d)
	if d > limit {
		t.Errorf("publishing %d gems took %v, want < %v", n, d, limit)
	}
	if v, _ := up.Body("/versions"); strings.Count(string(v), "\n") != n+2 {
		t.Errorf("/versions has %d lines", strings.Count(string(v), "\n"))
	}
}

// BenchmarkPublish measures one Publish with the default MarshalFunc.
func BenchmarkPublish(b *testing.B) {
	up := New(Options{})
	gem := []byte("gem bytes")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		up.Publish(GemSpec{Name: "g" + itoa(i%1000), Version: "1." + itoa(i)}, gem)
	}
}
