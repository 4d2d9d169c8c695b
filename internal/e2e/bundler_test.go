package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/proxy"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// publishFixture publishes the gems the Bundler and RubyGems tests resolve:
// a dependency chain, a prerelease, a yanked version and a platform gem.
func publishFixture(t *testing.T, up *testupstream.Server) {
	t.Helper()
	specs := []testupstream.GemSpec{
		{Name: "chain-a", Version: "1.0.0", Deps: []testupstream.Dep{{Name: "chain-b", Requirement: "~> 1.0"}}},
		{Name: "chain-b", Version: "1.0.0"},
		{Name: "chain-b", Version: "1.1.0", Deps: []testupstream.Dep{{Name: "chain-c", Requirement: ">= 1.0"}}},
		{Name: "chain-b", Version: "2.0.0"},
		{Name: "chain-c", Version: "1.0.0"},
		{Name: "prerel", Version: "1.0.0"},
		{Name: "prerel", Version: "2.0.0.pre1"},
		{Name: "yanky", Version: "1.0.0"},
		{Name: "yanky", Version: "1.1.0"},
		{Name: "platty", Version: "1.0.0"},
		{Name: "platty", Version: "1.0.0", Platform: "x86_64-linux"},
	}
	items := make([]testupstream.Item, len(specs))
	for i, s := range specs {
		items[i] = testupstream.Item{Spec: s}
	}
	if err := up.PublishAll(items); err != nil {
		t.Fatal(err)
	}
	if !up.Yank("yanky", "1.1.0", "") {
		t.Fatal("yank failed")
	}
}

const fixtureGemfile = `source "https://rubygems.org"
gem "chain-a"
gem "prerel", "2.0.0.pre1"
gem "yanky"
gem "platty"
`

// lockHas fails unless the lockfile in dir lists every spec line.
func lockHas(t *testing.T, dir string, specs ...string) string {
	t.Helper()
	lock, err := os.ReadFile(filepath.Join(dir, "Gemfile.lock"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if !strings.Contains(string(lock), "    "+s+"\n") {
			t.Fatalf("Gemfile.lock lacks %q:\n%s", s, lock)
		}
	}
	return string(lock)
}

func TestBundleInstallThroughMirror(t *testing.T) {
	forEachFlavour(t, bundleInstallThroughMirror)
}

// bundleInstallThroughMirror resolves and installs the fixture through
// the mirror setting, then installs it again on a fresh machine from the
// lockfile without any upstream .gem download.
func bundleInstallThroughMirror(t *testing.T, f flavour) {
	e := start(t, testupstream.Options{})
	publishFixture(t, e.up)

	c := newClient(t, f)
	c.mirror("https://rubygems.org", e.proxyURL)
	dir := app(t, fixtureGemfile, "")
	c.run(dir, false, "bundle", "config", "set", "--local", "path", filepath.Join(c.home, "vendor"))
	out, _ := c.run(dir, false, "bundle", "install")
	lock := lockHas(t, dir, "chain-a (1.0.0)", "chain-b (1.1.0)", "chain-c (1.0.0)", "prerel (2.0.0.pre1)",
		"yanky (1.0.0)", "platty (1.0.0-x86_64-linux)")
	if strings.Contains(lock, "yanky (1.1.0)") {
		t.Fatalf("the yanked version was resolved:\n%s", lock)
	}
	if !strings.Contains(out, "Bundle complete") {
		t.Fatalf("bundle install output:\n%s", out)
	}
	for _, r := range e.up.Log() {
		if strings.Contains(r.Path, "/api/v1/dependencies") {
			t.Errorf("the dependency API reached the upstream: %s", r.Path)
		}
		ua := r.Header.Get("User-Agent")
		if !strings.HasPrefix(r.Path, "/gems/") && !strings.Contains(ua, "bundler/"+f.bundler+" ") {
			t.Errorf("%s came from %q, want Bundler %s", r.Path, ua, f.bundler)
		}
	}

	// A fresh machine with the lockfile: every gem comes from gemproxy's cache.
	gemsBefore := e.upstreamGemRequests()
	c2 := newClient(t, f)
	c2.mirror("https://rubygems.org", e.proxyURL)
	dir2 := app(t, fixtureGemfile, lock)
	c2.run(dir2, false, "bundle", "config", "set", "--local", "path", filepath.Join(c2.home, "vendor"))
	c2.run(dir2, false, "bundle", "install")
	if n := e.upstreamGemRequests() - gemsBefore; n != 0 {
		t.Fatalf("second install into a fresh path caused %d upstream .gem downloads, want 0", n)
	}
	out, _ = c2.run(dir2, false, "bundle", "exec", "ruby", "-e", `require "chain-a"; require "platty"; puts :loaded`)
	if !strings.Contains(out, "loaded") {
		t.Fatalf("installed gems do not load:\n%s", out)
	}
}

func TestGemInstallThroughProxy(t *testing.T) {
	forEachFlavour(t, gemInstallThroughProxy)
}

// gemInstallThroughProxy installs gems (a dependency chain, a platform
// gem, a prerelease) and lists the full index with gemproxy as the only
// source.
func gemInstallThroughProxy(t *testing.T, f flavour) {
	e := start(t, testupstream.Options{})
	publishFixture(t, e.up)
	c := newClient(t, f)
	src := e.proxyURL + "/"

	out, _ := c.run(c.home, false, "gem", "sources", "--add", src)
	if !strings.Contains(out, src+" added to sources") {
		t.Fatalf("gem sources --add:\n%s", out)
	}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"chain-a"}, []string{"chain-a-1.0.0", "chain-b-1.1.0", "chain-c-1.0.0"}},
		{[]string{"platty"}, []string{"platty-1.0.0-x86_64-linux"}},
		{[]string{"prerel", "--pre"}, []string{"prerel-2.0.0.pre1"}},
	}
	for _, tt := range tests {
		args := append([]string{"install"}, tt.args...)
		args = append(args, "--clear-sources", "--source", src, "--no-document")
		out, _ := c.run(c.home, false, "gem", args...)
		for _, w := range tt.want {
			if !strings.Contains(out, "Successfully installed "+w) {
				t.Fatalf("gem %s:\n%s", strings.Join(args, " "), out)
			}
		}
	}
	// The full index works through gemproxy too (suggestions, gem list -r).
	out, _ = c.run(c.home, false, "gem", "list", "-r", "--clear-sources", "--source", src, "chain")
	if !strings.Contains(out, "chain-a (1.0.0)") {
		t.Fatalf("gem list -r:\n%s", out)
	}
}

func TestBundleSeesNewVersionAfterTTL(t *testing.T) {
	forEachFlavour(t, bundleSeesNewVersionAfterTTL)
}

// bundleSeesNewVersionAfterTTL checks that bundle lock --update sees a
// version published upstream once a short TTL has passed, and that
// Bundler's appended /versions equals gemproxy's and the upstream's.
func bundleSeesNewVersionAfterTTL(t *testing.T, f flavour) {
	const ttl = 1 * time.Second
	e := start(t, testupstream.Options{}, func(o *proxy.Options) {
		for _, c := range []proxy.Class{proxy.ClassVersions, proxy.ClassInfo} {
			o.TunePolicy(c, func(pol *proxy.Policy) { pol.TTL = ttl })
		}
	})
	publishFixture(t, e.up)
	c := newClient(t, f)
	c.mirror("https://rubygems.org", e.proxyURL)
	dir := app(t, fixtureGemfile, "")
	c.run(dir, false, "bundle", "lock")
	lockHas(t, dir, "chain-a (1.0.0)")

	e.up.Publish(testupstream.GemSpec{Name: "chain-a", Version: "1.1.0", Deps: []testupstream.Dep{{Name: "chain-b", Requirement: "~> 1.0"}}}, nil)
	time.Sleep(ttl + 100*time.Millisecond) // the TTL is what this test is about
	c.run(dir, false, "bundle", "lock", "--update")
	lockHas(t, dir, "chain-a (1.1.0)")

	// Bundler appended the tail gemproxy served to its own copy: it must
	// equal gemproxy's /versions byte for byte.
	local := c.bundlerVersions()
	served := e.get("/versions")
	upstream, _ := e.up.Body("/versions")
	if !bytes.Equal(local, served) || !bytes.Equal(served, upstream) {
		t.Fatalf("Bundler's /versions (%d bytes), gemproxy's (%d) and the upstream's (%d) differ", len(local), len(served), len(upstream))
	}
	m := refreshes(t, e)
	if m["append"] < 1 {
		t.Fatalf("gemproxy did not refresh /versions by append: %v", m)
	}
	t.Logf("compact-index refreshes by path: %v", m)
}

// refreshes reads gemproxy_compactindex_refreshes_total by path.
func refreshes(t *testing.T, e *env) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "gemproxy_compactindex_refreshes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestClientSwitchesBetweenProxyAndUpstream(t *testing.T) {
	forEachFlavour(t, clientSwitchesBetweenProxyAndUpstream)
}

// clientSwitchesBetweenProxyAndUpstream switches one Bundler cache
// between gemproxy and the upstream and checks that its compact-index
// cache stays valid (ranged requests only).
func clientSwitchesBetweenProxyAndUpstream(t *testing.T, f flavour) {
	e := start(t, testupstream.Options{}, func(o *proxy.Options) {
		for _, c := range []proxy.Class{proxy.ClassVersions, proxy.ClassInfo} {
			o.TunePolicy(c, func(pol *proxy.Policy) { pol.TTL = 0 })
		}
	})
	publishFixture(t, e.up)
	c := newClient(t, f)
	// The Gemfile names the upstream itself; the mirror setting decides
	// whether Bundler goes through gemproxy. Bundler keys its cache by the
	// source, so both paths share one compact-index cache.
	gemfile := strings.Replace(fixtureGemfile, "https://rubygems.org", e.upURL, 1)
	dir := app(t, gemfile, "")
	c.mirror(e.upURL, e.proxyURL)
	c.run(dir, false, "bundle", "lock")

	steps := []struct {
		name    string
		mirror  bool
		publish string
	}{
		{"direct to upstream", false, "1.2.0"},
		{"back through gemproxy", true, "1.3.0"},
		{"direct again", false, "1.4.0"},
	}
	for _, st := range steps {
		e.up.Publish(testupstream.GemSpec{Name: "chain-a", Version: st.publish}, nil)
		if st.mirror {
			c.mirror(e.upURL, e.proxyURL)
		} else {
			c.run(c.home, false, "bundle", "config", "unset", "--global", "mirror."+e.upURL)
		}
		e.up.Reset()
		c.run(dir, false, "bundle", "lock", "--update")
		lockHas(t, dir, "chain-a ("+st.publish+")")
		local := c.bundlerVersions()
		upstream, _ := e.up.Body("/versions")
		if !bytes.Equal(local, upstream) {
			t.Fatalf("%s: Bundler's cached /versions differs from the upstream's", st.name)
		}
		// Bundler's cache stayed valid: one ranged /versions request, no
		// full re-download after a failed append.
		var ranged, full int
		for _, r := range e.up.Log() {
			if r.Path != "/versions" {
				continue
			}
			if r.Header.Get("Range") != "" {
				ranged++
			} else {
				full++
			}
		}
		if full != 0 || ranged == 0 {
			t.Fatalf("%s: upstream saw %d ranged and %d full /versions requests", st.name, ranged, full)
		}
	}
}

func TestCorpusAppsCachedByteIdentical(t *testing.T) {
	forEachFlavour(t, corpusAppsCachedByteIdentical)
}

// corpusAppsCachedByteIdentical caches the corpus apps' gems through
// gemproxy and compares them with the corpus files byte for byte.
func corpusAppsCachedByteIdentical(t *testing.T, f flavour) {
	corpus := testupstream.CorpusDir(t)
	e := start(t, testupstream.Options{})
	if err := e.up.PublishCorpus(corpus); err != nil {
		t.Fatal(err)
	}
	e.up.RebuildVersions()
	apps, _ := filepath.Glob(filepath.Join(corpus, "apps", "*"))
	apps = append([]string{filepath.Join(corpus, "app")}, apps...)
	for _, src := range apps {
		t.Run(filepath.Base(src), func(t *testing.T) {
			gemfile, _ := os.ReadFile(filepath.Join(src, "Gemfile"))
			lock, _ := os.ReadFile(filepath.Join(src, "Gemfile.lock"))
			dir := app(t, string(gemfile), string(lock))
			c := newClient(t, f)
			c.mirror("https://rubygems.org", e.proxyURL)
			out, _ := c.run(dir, false, "bundle", "cache", "--no-install")
			cached, _ := filepath.Glob(filepath.Join(dir, "vendor", "cache", "*.gem"))
			if len(cached) == 0 {
				t.Fatalf("no gems cached:\n%s", out)
			}
			for _, f := range cached {
				got, _ := os.ReadFile(f)
				want, err := os.ReadFile(filepath.Join(corpus, "gems", filepath.Base(f)))
				if err != nil {
					t.Fatalf("%s is not a corpus gem: %v", filepath.Base(f), err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%s differs from the corpus file", filepath.Base(f))
				}
			}
			t.Logf("%s: %d gems fetched through gemproxy, all byte-identical", filepath.Base(src), len(cached))
		})
	}
}
