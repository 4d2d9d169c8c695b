package compactindex

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// sidecar is the part of a corpus .meta.json file these tests read.
type sidecar struct {
	// BodyFile is the body's file name in api/.
	BodyFile string `json:"body_file"`
	// BodySHA256 is the hex SHA-256 of the body.
	BodySHA256 string `json:"body_sha256"`
	// Format is "compact-index-info", "compact-index-versions", ...
	Format string `json:"format"`
	// Request is the recorded request.
	Request struct {
		// URL is the request URL; its last segment is the gem name.
		URL string `json:"url"`
	} `json:"request"`
	// Response is the recorded response.
	Response struct {
		// Headers are the recorded response headers, in order.
		Headers [][2]string `json:"headers"`
	} `json:"response"`
}

// header returns the first value of the named response header, or "".
func (s *sidecar) header(name string) string {
	for _, h := range s.Response.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// corpusFile is one compact-index body from the corpus with its sidecar.
type corpusFile struct {
	// meta is the parsed sidecar.
	meta sidecar
	// body is the response body.
	body []byte
}

// loadCorpus reads every compact-index body of the given format
// ("compact-index-info" or "compact-index-versions") and checks it against
// the body_sha256 its sidecar records.
func loadCorpus(t *testing.T, dir, format string) []corpusFile {
	t.Helper()
	metas, err := filepath.Glob(filepath.Join(dir, "api", "*compact-index_*.meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	var out []corpusFile
	for _, p := range metas {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var f corpusFile
		if err := json.Unmarshal(raw, &f.meta); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if f.meta.Format != format {
			continue
		}
		if f.body, err = os.ReadFile(filepath.Join(dir, "api", f.meta.BodyFile)); err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(f.body); hex.EncodeToString(sum[:]) != f.meta.BodySHA256 {
			t.Fatalf("%s: body does not match body_sha256", f.meta.BodyFile)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		t.Fatalf("no %s files in %s", format, dir)
	}
	return out
}

// TestCorpusInfo checks the parsers against real /info bodies: recorded
// ETag and Repr-Digest / Digest headers must match the bodies, every
// version line must yield its checksum, and every .gem whose SHA-256 the
// corpus index marks as published must be found under its version.
func TestCorpusInfo(t *testing.T) {
	dir := testupstream.CorpusDir(t)
	files := loadCorpus(t, dir, "compact-index-info")
	byName := make(map[string][][]byte)
	var etags, digests, lines int
	for _, f := range files {
		t.Run(f.meta.BodyFile, func(t *testing.T) {
			name := f.meta.Request.URL[strings.LastIndexByte(f.meta.Request.URL, '/')+1:]
			if !ValidName(name) {
				t.Errorf("ValidName(%q) = false for a real gem", name)
			}
			byName[name] = append(byName[name], f.body)

			md5sum := md5.Sum(f.body)
			md5hex := hex.EncodeToString(md5sum[:])
			if etag := f.meta.header("etag"); etag != "" {
				etags++
				if !ETagMatches(etag, md5hex) {
					t.Errorf("recorded ETag %s does not match body MD5 %s", etag, md5hex)
				}
				if unquoted := strings.Trim(etag, `"`); !ETagMatches(unquoted, md5hex) {
					t.Errorf("unquoted ETag %s does not match body MD5 %s", unquoted, md5hex)
				}
			}
			for _, h := range []string{"repr-digest", "digest"} {
				v := f.meta.header(h)
				if v == "" {
					continue
				}
				digests++
				got, ok := ParseDigest(v)
				if want := sha256.Sum256(f.body); !ok || got != want {
					t.Errorf("ParseDigest(%s: %s) = %x, %v; body SHA-256 is %x", h, v, got, ok, want)
				}
			}

			sc := bufio.NewScanner(bytes.NewReader(f.body))
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				line := sc.Text()
				if line == "---" {
					continue
				}
				lines++
				version, _, _ := strings.Cut(line, " ")
				sum, ok := InfoChecksum(f.body, version)
				if !ok || !strings.Contains(line, "|checksum:"+sum) {
					t.Errorf("InfoChecksum(%q) = %q, %v for line %q", version, sum, ok, line)
				}
			}
		})
	}
	t.Logf("%d info files, %d lines, %d ETags, %d digest headers", len(files), lines, etags, digests)

	verified := checkIndexChecksums(t, dir, byName)
	t.Logf("%d published .gem checksums found in /info bodies", verified)
}

// checkIndexChecksums walks the corpus INDEX.tsv and, for every gem marked
// "verified" (its SHA-256 is published in a recorded /info body), requires
// InfoChecksum to return exactly that SHA-256, for the version taken from
// the .gem file name, from one of the bodies for its name. It returns how many gems it checked.
func checkIndexChecksums(t *testing.T, dir string, byName map[string][][]byte) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "INDEX.tsv"))
	if errors.Is(err, fs.ErrNotExist) {
		t.Log("INDEX.tsv not found; skipping the .gem checksum cross-check")
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	rows := strings.Split(strings.TrimSpace(string(raw)), "\n")
	col := make(map[string]int)
	for i, h := range strings.Split(rows[0], "\t") {
		col[h] = i
	}
	for _, c := range []string{"file", "name", "sha256", "compact_index_checksum"} {
		if _, ok := col[c]; !ok {
			t.Fatalf("INDEX.tsv has no %q column", c)
		}
	}
	n := 0
	for _, row := range rows[1:] {
		f := strings.Split(row, "\t")
		if f[col["compact_index_checksum"]] != "verified" {
			continue
		}
		// The /info version field is the .gem file name minus "NAME-":
		// ffi-1.17.2-x86_64-linux-gnu.gem is listed as
		// 1.17.2-x86_64-linux-gnu, although RubyGems 3.3 reports its
		// platform as x86_64-linux.
		version, ok := strings.CutPrefix(strings.TrimSuffix(f[col["file"]], ".gem"), f[col["name"]]+"-")
		if !ok {
			t.Errorf("INDEX.tsv: file %q does not start with name %q", f[col["file"]], f[col["name"]])
			continue
		}
		found := false
		for _, body := range byName[f[col["name"]]] {
			if sum, ok := InfoChecksum(body, version); ok && sum == f[col["sha256"]] {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s %s: published checksum %s not found by InfoChecksum", f[col["name"]], version, f[col["sha256"]])
		}
		n++
	}
	return n
}

// TestCorpusVersions checks VersionsChecksums on the recorded /versions
// excerpt: the last MD5 per gem must be the MD5 of that gem's recorded
// /info body, which is the coherence rule the proxy relies on.
func TestCorpusVersions(t *testing.T) {
	dir := testupstream.CorpusDir(t)
	infos := make(map[string][]byte)
	for _, f := range loadCorpus(t, dir, "compact-index-info") {
		infos[f.meta.Request.URL[strings.LastIndexByte(f.meta.Request.URL, '/')+1:]] = f.body
	}
	compared := 0
	for _, f := range loadCorpus(t, dir, "compact-index-versions") {
		last := make(map[string]string)
		VersionsChecksums(f.body, func(name, sum []byte) { last[string(name)] = string(sum) })
		if len(last) == 0 {
			t.Errorf("%s: no lines parsed", f.meta.BodyFile)
		}
		for name, want := range last {
			body, ok := infos[name]
			if !ok {
				continue
			}
			compared++
			got := md5.Sum(body)
			if hex.EncodeToString(got[:]) != want {
				t.Errorf("%s: /versions says info MD5 %s, recorded /info body has %x", name, want, got)
			}
		}
	}
	if compared == 0 {
		t.Error("no gem of the /versions excerpts has a recorded /info body to compare")
	}
}
