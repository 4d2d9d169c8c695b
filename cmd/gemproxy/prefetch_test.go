package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/lockfile"
	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/proxy"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// published is a gem published on the test upstream.
type published struct {
	spec testupstream.GemSpec
	// sha256 is the hex SHA-256 of the .gem file.
	sha256 string
	// size is the .gem file's length.
	size int
}

// file is the .gem file name.
func (p published) file() string { return p.spec.FullName() + ".gem" }

// publish builds and publishes a gem for each spec on up.
func publish(t *testing.T, up *testupstream.Server, specs ...testupstream.GemSpec) []published {
	t.Helper()
	out := make([]published, 0, len(specs))
	for _, spec := range specs {
		gem, err := testupstream.BuildGem(spec)
		if err != nil {
			t.Fatal(err)
		}
		up.Publish(spec, gem)
		sum := sha256.Sum256(gem)
		out = append(out, published{spec: spec, sha256: hex.EncodeToString(sum[:]), size: len(gem)})
	}
	return out
}

// totalSize is the sum of the gems' sizes.
func totalSize(gems ...published) int {
	n := 0
	for _, g := range gems {
		n += g.size
	}
	return n
}

// lockSection is one GEM section of a test lockfile.
type lockSection struct {
	// remote is the section's remote line.
	remote string
	// gems are its specs.
	gems []testupstream.GemSpec
}

// lockText renders a lockfile with the GEM sections, then a GIT and a PATH
// section, and a CHECKSUMS section with sums (full name -> hex) when not nil.
func lockText(sections []lockSection, sums map[string]string) string {
	var b strings.Builder
	b.WriteString("GIT\n  remote: https://github.com/example/gitgem.git\n  revision: 0123456789abcdef\n  specs:\n    gitgem (0.1.0)\n\n")
	b.WriteString("PATH\n  remote: vendor/pathgem\n  specs:\n    pathgem (0.2.0)\n      rake\n\n")
	var all []testupstream.GemSpec
	for _, s := range sections {
		fmt.Fprintf(&b, "GEM\n  remote: %s\n  specs:\n", s.remote)
		for _, g := range s.gems {
			fmt.Fprintf(&b, "    %s\n      some-dependency (>= 0)\n", specLine(g))
			all = append(all, g)
		}
		b.WriteString("\n")
	}
	b.WriteString("PLATFORMS\n  ruby\n  x86_64-linux\n\nDEPENDENCIES\n  gitgem!\n  pathgem!\n")
	for _, g := range all {
		fmt.Fprintf(&b, "  %s\n", g.Name)
	}
	if sums != nil {
		b.WriteString("\nCHECKSUMS\n  gitgem (0.1.0)\n  pathgem (0.2.0)\n")
		for _, g := range all {
			if sum, ok := sums[g.FullName()]; ok {
				fmt.Fprintf(&b, "  %s sha256=%s\n", specLine(g), sum)
			} else {
				fmt.Fprintf(&b, "  %s\n", specLine(g))
			}
		}
	}
	b.WriteString("\nBUNDLED WITH\n   2.5.6\n")
	return b.String()
}

// specLine is "NAME (VERSION[-PLATFORM])".
func specLine(g testupstream.GemSpec) string {
	if g.Platform == "" || g.Platform == "ruby" {
		return fmt.Sprintf("%s (%s)", g.Name, g.Version)
	}
	return fmt.Sprintf("%s (%s-%s)", g.Name, g.Version, g.Platform)
}

// specsOf returns the specs of gems.
func specsOf(gems ...published) []testupstream.GemSpec {
	out := make([]testupstream.GemSpec, len(gems))
	for i, g := range gems {
		out[i] = g.spec
	}
	return out
}

// sumsOf maps the full names of gems to their SHA-256.
func sumsOf(gems ...published) map[string]string {
	out := make(map[string]string, len(gems))
	for _, g := range gems {
		out[g.spec.FullName()] = g.sha256
	}
	return out
}

// writeLockfile writes content to a new Gemfile.lock in a temporary
// directory and returns its absolute path.
func writeLockfile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Gemfile.lock")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runInProcess runs gemproxy with args in this process, with env as the
// whole environment.
func runInProcess(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	code := run(args, &stdout, &stderr, lookup)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// gemRequests counts the upstream requests for /gems/ paths.
func gemRequests(up *testupstream.Server) int {
	n := 0
	for _, p := range up.Paths() {
		if strings.HasPrefix(p, "/gems/") {
			n++
		}
	}
	return n
}

// startGemproxy serves an in-process gemproxy over a fresh data directory,
// mirroring upstream, on a loopback port, and returns its base URL.
func startGemproxy(t *testing.T, upstream string) string {
	t.Helper()
	cfg := Defaults()
	cfg.Upstream, cfg.DataDir = upstream, t.TempDir()
	store, err := cache.Open(cfg.DataDir, cfg.CacheOptions(false))
	if err != nil {
		t.Fatal(err)
	}
	popts, err := cfg.ProxyOptions()
	if err != nil {
		t.Fatal(err)
	}
	popts.Logger = slog.New(slog.DiscardHandler)
	popts.Metrics = metrics.New(prometheus.NewRegistry(), metrics.Options{Classes: classNames()})
	p, err := proxy.New(store, popts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- p.App().Listener(ln) }()
	t.Cleanup(func() {
		_ = p.App().Shutdown()
		<-served
		_ = store.Close()
	})
	return "http://" + ln.Addr().String()
}

// checkSummary checks stdout is exactly the summary line with these counts.
func checkSummary(t *testing.T, stdout string, prefetched, cached, fetched, bytes, index, failed, skipped int) {
	t.Helper()
	summary := regexp.MustCompile(`^prefetched (\d+) gems? \((\d+) already cached, (\d+) fetched, (\d+) bytes\) and (\d+) index files? in \S+; (\d+) failed, (\d+) skipped\n$`)
	m := summary.FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("stdout is not one summary line: %q", stdout)
	}
	want := []string{fmt.Sprint(prefetched), fmt.Sprint(cached), fmt.Sprint(fetched), fmt.Sprint(bytes), fmt.Sprint(index), fmt.Sprint(failed), fmt.Sprint(skipped)}
	if got := m[1:]; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("summary %q: got prefetched/cached/fetched/bytes/index/failed/skipped %v, want %v", stdout, got, want)
	}
}

// progressLine is a plain progress line, written every few seconds when
// stderr is not a terminal (a slow run shows them).
var progressLine = regexp.MustCompile(`(?m)^prefetch: \d+/\d+ files, .*\n`)

// withoutProgress removes the plain progress lines from stderr.
func withoutProgress(stderr string) string { return progressLine.ReplaceAllString(stderr, "") }

// indexFiles is the number of compact-index files prefetch stores for
// gems of n distinct names: /versions, /names and an /info file each.
func indexFiles(n int) int { return 2 + n }

// testGems are the specs most tests publish: two pure-Ruby gems and a
// platform gem.
func testGems() []testupstream.GemSpec {
	return []testupstream.GemSpec{
		{Name: "alpha", Version: "1.0.0"},
		{Name: "beta", Version: "2.1.0", Deps: []testupstream.Dep{{Name: "alpha", Requirement: "~> 1.0"}}},
		{Name: "gamma", Version: "0.3.0", Platform: "x86_64-linux"},
	}
}

// TestPrefetchThroughServer prefetches through a running gemproxy: the
// first run fills its cache, the second finds everything cached and sends
// nothing upstream; GEMPROXY_URL works like --url.
func TestPrefetchThroughServer(t *testing.T) {
	up, ts := testupstream.Start(t, testupstream.Options{})
	gems := publish(t, up, testGems()...)
	base := startGemproxy(t, ts.URL)
	lock := writeLockfile(t, lockText([]lockSection{{remote: "https://rubygems.org/", gems: specsOf(gems...)}}, sumsOf(gems[0], gems[2])))

	r := runInProcess(t, nil, "prefetch", "--url", base, "--jobs", "2", lock)
	if r.code != 0 || withoutProgress(r.stderr) != "" {
		t.Fatalf("first run: exit %d, stderr %q", r.code, r.stderr)
	}
	checkSummary(t, r.stdout, 3, 0, 3, totalSize(gems...), indexFiles(3), 0, 0)
	for _, g := range gems {
		if n := up.Requests("/gems/" + g.file()); n != 1 {
			t.Errorf("upstream got %d requests for %s, want 1", n, g.file())
		}
	}

	before := gemRequests(up)
	r = runInProcess(t, map[string]string{envURL: base + "/"}, "prefetch", lock)
	if r.code != 0 || withoutProgress(r.stderr) != "" {
		t.Fatalf("second run: exit %d, stderr %q", r.code, r.stderr)
	}
	checkSummary(t, r.stdout, 3, 3, 0, totalSize(gems...), indexFiles(3), 0, 0)
	if n := gemRequests(up) - before; n != 0 {
		t.Errorf("second run sent %d /gems/ requests upstream, want 0", n)
	}
}

// TestPrefetchDataDir prefetches into a data directory with no server,
// merging two lockfiles that share a gem; a second run finds everything
// cached and sends nothing upstream, and the entries are in the file.
func TestPrefetchDataDir(t *testing.T) {
	up, ts := testupstream.Start(t, testupstream.Options{})
	gems := publish(t, up, testGems()...)
	dataDir := filepath.Join(t.TempDir(), "new")
	lockA := writeLockfile(t, lockText([]lockSection{{remote: "https://rubygems.org/", gems: specsOf(gems[0], gems[1])}}, sumsOf(gems...)))
	lockB := writeLockfile(t, lockText([]lockSection{{remote: "http://index.rubygems.org", gems: specsOf(gems[1], gems[2])}}, nil))
	args := []string{"prefetch", "--data-dir", dataDir, "--upstream", ts.URL, lockA, lockB}

	r := runInProcess(t, nil, args...)
	if r.code != 0 || withoutProgress(r.stderr) != "" {
		t.Fatalf("first run: exit %d, stderr %q", r.code, r.stderr)
	}
	checkSummary(t, r.stdout, 3, 0, 3, totalSize(gems...), indexFiles(3), 0, 0)
	if n := gemRequests(up); n != 3 {
		t.Errorf("upstream got %d /gems/ requests, want 3", n)
	}

	before := gemRequests(up)
	r = runInProcess(t, map[string]string{"GEMPROXY_DATA_DIR": dataDir, "GEMPROXY_UPSTREAM": ts.URL}, "prefetch", lockA, lockB)
	if r.code != 0 || withoutProgress(r.stderr) != "" {
		t.Fatalf("second run: exit %d, stderr %q", r.code, r.stderr)
	}
	checkSummary(t, r.stdout, 3, 3, 0, totalSize(gems...), indexFiles(3), 0, 0)
	if n := gemRequests(up) - before; n != 0 {
		t.Errorf("second run sent %d /gems/ requests upstream, want 0", n)
	}

	store, err := cache.Open(dataDir, cache.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, g := range gems {
		e := store.Peek("/gems/" + g.file())
		if e == nil || e.Status != http.StatusOK || hex.EncodeToString(e.SHA256[:]) != g.sha256 {
			t.Errorf("%s: cached entry %+v", g.file(), e)
		}
	}
	for _, key := range []string{"/versions", "/names", "/info/alpha", "/info/beta", "/info/gamma"} {
		if e := store.Peek(key); e == nil || e.Status != http.StatusOK {
			t.Errorf("%s: cached entry %+v, want a 200", key, e)
		}
	}
	if problems, err := store.Verify(); err != nil || len(problems) != 0 {
		t.Errorf("cache verify: %v %v", problems, err)
	}
}

// TestPrefetchFailuresExit1 runs the binary in both modes with a lockfile
// whose CHECKSUMS disagree with one gem and that names a gem the upstream
// does not have (nor its /info file): one line per failure on stderr, the
// others prefetched, exit status 1.
func TestPrefetchFailuresExit1(t *testing.T) {
	up, ts := testupstream.Start(t, testupstream.Options{})
	gems := publish(t, up, testGems()...)
	wrong := strings.Repeat("ab", 32)
	sums := sumsOf(gems...)
	sums[gems[1].spec.FullName()] = wrong
	missing := testupstream.GemSpec{Name: "missing", Version: "9.9.9"}
	lock := writeLockfile(t, lockText([]lockSection{{remote: "https://rubygems.org/", gems: append(specsOf(gems...), missing)}}, sums))

	modes := []struct {
		name string
		args []string
		// notFound is how the mode reports the upstream's 404.
		notFound string
	}{
		{name: "url", args: []string{"--url", startGemproxy(t, ts.URL)}, notFound: `HTTP 404 Not Found`},
		{name: "data dir", args: []string{"--data-dir", t.TempDir(), "--upstream", ts.URL}, notFound: `upstream answered 404 Not Found`},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			r := runBinary(t, nil, append(append([]string{"prefetch"}, mode.args...), lock)...)
			if r.code != 1 {
				t.Errorf("exit %d, want 1", r.code)
			}
			checkSummary(t, r.stdout, 2, 0, 2, gems[0].size+gems[2].size, indexFiles(3), 3, 0)
			mismatch := fmt.Sprintf("%s: sha256 %s, but the CHECKSUMS section of %s says %s\n", gems[1].file(), gems[1].sha256, lock, wrong)
			if !strings.Contains(r.stderr, mismatch) {
				t.Errorf("stderr lacks %q:\n%s", mismatch, r.stderr)
			}
			// The upstream's two 404s give two reasons, so two lines.
			for _, line := range []string{
				`missing-9\.9\.9\.gem: ` + mode.notFound + `: This file could not be found`,
				`/info/missing: ` + mode.notFound + `: This gem could not be found`,
			} {
				if !regexp.MustCompile(`(?m)^` + line + `$`).MatchString(r.stderr) {
					t.Errorf("stderr lacks a line matching %s:\n%s", line, r.stderr)
				}
			}
			if n := strings.Count(withoutProgress(r.stderr), "\n"); n != 3 {
				t.Errorf("stderr has %d lines, want 3:\n%s", n, r.stderr)
			}
		})
	}
}

// TestPrefetchUpstreamTrouble checks, in data-dir mode, that the proxy's
// verification applies (a corrupt gem is refused against /info) and that a
// gem served without being stored (its checksum unknown) is a failure;
// and, in URL mode, that a server that is down fails every file, reported
// once as one cause with a count and examples.
func TestPrefetchUpstreamTrouble(t *testing.T) {
	up, ts := testupstream.Start(t, testupstream.Options{})
	gems := publish(t, up, testGems()...)
	up.SetFault("/info/alpha", testupstream.Fault{Status: http.StatusNotFound})
	up.SetFault("/gems/"+gems[1].file(), testupstream.Fault{Corrupt: true})
	lock := writeLockfile(t, lockText([]lockSection{{remote: "https://rubygems.org/", gems: specsOf(gems...)}}, nil))

	r := runInProcess(t, nil, "prefetch", "--data-dir", t.TempDir(), "--upstream", ts.URL, lock)
	if r.code != 1 {
		t.Errorf("exit %d, want 1", r.code)
	}
	checkSummary(t, r.stdout, 1, 0, 1, gems[2].size, indexFiles(3)-1, 3, 0)
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^alpha-1\.0\.0\.gem: the upstream's answer may not be stored \(.*\)$`),
		regexp.MustCompile(`(?m)^time=\S+ level=WARN msg="gem checksum unknown; serving without storing" key=/gems/alpha-1\.0\.0\.gem$`),
		regexp.MustCompile(`(?m)^beta-2\.1\.0\.gem: upstream gem /gems/beta-2\.1\.0\.gem has SHA-256 [0-9a-f]{64}, but the compact index says ` + gems[1].sha256 + `; not stored$`),
		regexp.MustCompile(`(?m)^/info/alpha: upstream answered 404 Not Found\b.*$`),
	} {
		if !re.MatchString(r.stderr) {
			t.Errorf("stderr does not match %s:\n%s", re, r.stderr)
		}
	}
	if stderr := withoutProgress(r.stderr); strings.Contains(stderr, "gamma") || strings.Count(stderr, "\n") != 4 {
		t.Errorf("stderr has other lines:\n%s", r.stderr)
	}

	down := "http://" + testupstream.FreeAddr(t)
	r = runInProcess(t, nil, "prefetch", "--url", down, lock)
	if r.code != 1 {
		t.Errorf("server down: exit %d, want 1", r.code)
	}
	checkSummary(t, r.stdout, 0, 0, 0, 0, 0, 8, 0)
	down8 := regexp.MustCompile(`^8 files failed: request failed: dial tcp \S+: connect: connection refused \([^ ,]+, [^ ,]+, [^ ,]+ and 5 more\)\n$`)
	if stderr := withoutProgress(r.stderr); !down8.MatchString(stderr) {
		t.Errorf("server down: stderr is not the one line %s:\n%s", down8, r.stderr)
	}
}

// TestPrefetchSkipsOtherSources checks gems of other gem servers are
// listed as skipped and never requested, GIT and PATH gems are ignored, and
// a GEM section whose remote is the configured upstream is fetched.
func TestPrefetchSkipsOtherSources(t *testing.T) {
	up, ts := testupstream.Start(t, testupstream.Options{})
	gems := publish(t, up, testGems()...)
	other := testupstream.GemSpec{Name: "private", Version: "1.2.3"}
	lock := writeLockfile(t, lockText([]lockSection{
		{remote: "https://rubygems.org/", gems: specsOf(gems[0])},
		{remote: "https://gems.example.com/", gems: []testupstream.GemSpec{other}},
		{remote: ts.URL + "/", gems: specsOf(gems[1], gems[2])},
	}, nil))

	r := runInProcess(t, nil, "prefetch", "--data-dir", t.TempDir(), "--upstream", ts.URL, lock)
	if r.code != 0 {
		t.Errorf("exit %d, want 0", r.code)
	}
	checkSummary(t, r.stdout, 3, 0, 3, totalSize(gems...), indexFiles(3), 0, 1)
	if want := "private-1.2.3.gem: skipped: source https://gems.example.com/ is neither rubygems.org nor the upstream\n"; withoutProgress(r.stderr) != want {
		t.Errorf("stderr %q\nwant   %q", r.stderr, want)
	}
	for _, p := range up.Paths() {
		if strings.Contains(p, "private") || strings.Contains(p, "gitgem") || strings.Contains(p, "pathgem") {
			t.Errorf("upstream was asked for %s", p)
		}
	}
}

// TestPrefetchCorpus prefetches the real lockfiles of the corpus apps from
// an upstream serving the corpus gems: all 51 gems are verified against the
// compact index and stored with the /info files Bundler reads for them,
// and a second run finds them all cached.
func TestPrefetchCorpus(t *testing.T) {
	dir := testupstream.CorpusDir(t)
	up, ts := testupstream.Start(t, testupstream.Options{})
	if err := up.PublishCorpus(dir); err != nil {
		t.Fatal(err)
	}
	locks := []string{filepath.Join(dir, "app", "Gemfile.lock")}
	more, err := filepath.Glob(filepath.Join(dir, "apps", "*", "Gemfile.lock"))
	if err != nil || len(more) == 0 {
		t.Fatalf("no corpus apps: %v", err)
	}
	locks = append(locks, more...)

	// The expected gems and bytes, from the lockfiles and the files.
	files := make(map[string]bool)
	names := make(map[string]bool)
	size := 0
	for _, l := range locks {
		f, err := os.Open(l)
		if err != nil {
			t.Fatal(err)
		}
		lf, err := lockfile.Parse(f)
		_ = f.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range lf.Gems {
			if files[g.FileName()] {
				continue
			}
			files[g.FileName()] = true
			names[g.Name] = true
			st, err := os.Stat(filepath.Join(dir, "gems", g.FileName()))
			if err != nil {
				t.Fatal(err)
			}
			size += int(st.Size())
		}
	}
	if len(files) != 51 {
		t.Fatalf("the corpus lockfiles list %d distinct gems, the test expects 51", len(files))
	}

	dataDir := t.TempDir()
	args := append([]string{"prefetch", "--data-dir", dataDir, "--upstream", ts.URL, "--jobs", "4"}, locks...)
	r := runInProcess(t, nil, args...)
	if r.code != 0 || withoutProgress(r.stderr) != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	// Besides the lockfiles' gems, the /info files of the dependencies of
	// their other versions, which Bundler reads too: as many as the
	// upstream was asked for, more than the lockfiles name.
	infos := make(map[string]bool)
	for _, p := range up.Paths() {
		if name, ok := strings.CutPrefix(p, "/info/"); ok {
			infos[name] = true
		}
	}
	for name := range names {
		if !infos[name] {
			t.Errorf("/info/%s was not fetched", name)
		}
	}
	if len(infos) <= len(names) {
		t.Errorf("%d /info files fetched, want more than the %d names of the lockfiles", len(infos), len(names))
	}
	checkSummary(t, r.stdout, 51, 0, 51, size, indexFiles(len(infos)), 0, 0)
	for file := range files {
		if n := up.Requests("/gems/" + file); n != 1 {
			t.Errorf("upstream got %d requests for %s, want 1", n, file)
		}
	}

	before := gemRequests(up)
	r = runInProcess(t, nil, args...)
	if r.code != 0 || withoutProgress(r.stderr) != "" {
		t.Fatalf("second run: exit %d, stderr %q", r.code, r.stderr)
	}
	checkSummary(t, r.stdout, 51, 51, 0, size, indexFiles(len(infos)), 0, 0)
	if n := gemRequests(up) - before; n != 0 {
		t.Errorf("second run sent %d /gems/ requests upstream, want 0", n)
	}
}

// TestPrefetchUsageErrorsExit2 checks bad command lines, lockfiles and a
// data directory held by another process stop prefetch with status 2 and
// one stderr line, before anything is fetched.
func TestPrefetchUsageErrorsExit2(t *testing.T) {
	good := writeLockfile(t, lockText([]lockSection{{remote: "https://rubygems.org/", gems: testGems()}}, nil))
	bad := writeLockfile(t, "GEM\n  remote: https://rubygems.org/\n  specs:\n    rack\n")
	gemfile := writeLockfile(t, "source \"https://rubygems.org\"\n\ngem \"rack\", \"~> 3.0\"\n")
	missing := filepath.Join(t.TempDir(), "Gemfile.lock")
	held := t.TempDir()
	store, err := cache.Open(held, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	tests := []struct {
		name string
		env  []string
		args []string
		want string // the whole stderr line, without "gemproxy: " and newline
	}{
		{name: "no lockfile", args: []string{"--url", "http://127.0.0.1:1"},
			want: "prefetch: no lockfile given (usage: gemproxy prefetch [flags] LOCKFILE...)"},
		{name: "url and data dir", args: []string{"--url", "http://127.0.0.1:1", "--data-dir", held, good},
			want: "prefetch: --url cannot be combined with --config, --upstream or --data-dir"},
		{name: "bad url", args: []string{"--url", "ftp://x", good},
			want: `--url: "ftp://x" is not an http or https URL`},
		{name: "bad url in env", env: []string{"GEMPROXY_URL=localhost:9292"}, args: []string{good},
			want: `GEMPROXY_URL: "localhost:9292" is not an http or https URL`},
		{name: "no jobs", args: []string{"--jobs", "0", good},
			want: "prefetch: --jobs 0: must be at least 1"},
		{name: "missing lockfile", args: []string{"--url", "http://127.0.0.1:1", good, missing},
			want: "lockfile " + missing + ": cannot read: no such file or directory"},
		{name: "malformed lockfile", args: []string{"--url", "http://127.0.0.1:1", bad},
			want: "lockfile " + bad + `: line 4: spec "rack": want NAME (VERSION)`},
		{name: "a Gemfile", args: []string{"--url", "http://127.0.0.1:1", good, gemfile},
			want: "lockfile " + gemfile + ": not a lockfile: no GEM specs, PLATFORMS, DEPENDENCIES or BUNDLED WITH section (give the Gemfile.lock Bundler writes, not the Gemfile)"},
		{name: "bad upstream", args: []string{"--upstream", "rubygems.org", good},
			want: `--upstream: "rubygems.org" is not an http or https URL`},
		{name: "data dir in use", args: []string{"--data-dir", held, good},
			want: "data_dir " + held + ": in use by a running gemproxy; prefetch through it with --url instead, or stop it first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBinary(t, tt.env, append([]string{"prefetch"}, tt.args...)...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2", r.code)
			}
			if want := "gemproxy: " + tt.want + "\n"; r.stderr != want {
				t.Errorf("stderr %q\nwant   %q", r.stderr, want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
}

// TestPrefetchHelp checks prefetch --help lists every flag and the summary
// format, exit 0.
func TestPrefetchHelp(t *testing.T) {
	r := runInProcess(t, nil, "prefetch", "--help")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	want := []string{"--url URL", "--jobs N", "--data-dir DIR", "--upstream URL", "--config PATH", "GEMPROXY_URL",
		"prefetched N gems (H already cached, M fetched, B bytes) and I index files in D; F failed, S skipped",
		"/info", "/versions", "/names", "serve --offline"}
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("help lacks %q:\n%s", w, r.stdout)
		}
	}
	r = runInProcess(t, nil, "help")
	if !strings.Contains(r.stdout, "gemproxy prefetch [flags] LOCKFILE...") {
		t.Errorf("gemproxy help does not list prefetch:\n%s", r.stdout)
	}
}
