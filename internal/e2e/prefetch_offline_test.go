package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/rubyfmt"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

func TestPrefetchThenOfflineBundleInstall(t *testing.T) {
	rubyfmt.RequireTools(t, "go")
	bin := buildGemproxy(t)
	forEachFlavour(t, func(t *testing.T, f flavour) { prefetchThenOfflineBundleInstall(t, f, bin) })
}

// prefetchThenOfflineBundleInstall locks the fixture against the upstream,
// prefetches the lockfile into a data directory with the gemproxy binary,
// stops the upstream, and has a fresh Bundler install the lockfile
// through gemproxy serve --offline on that directory. An older chain-a
// depends on a gem the lockfile does not list: Bundler still reads its
// /info file, so prefetch must have stored it.
func prefetchThenOfflineBundleInstall(t *testing.T, f flavour, bin string) {
	up, ts := testupstream.Start(t, testupstream.Options{Marshal: rubyfmt.RubyMarshal})
	publishFixture(t, up)
	if err := up.PublishAll([]testupstream.Item{
		{Spec: testupstream.GemSpec{Name: "oldep", Version: "1.0.0"}},
		{Spec: testupstream.GemSpec{Name: "chain-a", Version: "0.9.0", Deps: []testupstream.Dep{{Name: "oldep", Requirement: ">= 0"}}}},
	}); err != nil {
		t.Fatal(err)
	}

	// The lockfile, as Bundler writes it for a Gemfile naming rubygems.org.
	locker := newClient(t, f)
	locker.mirror("https://rubygems.org", ts.URL)
	dir := app(t, fixtureGemfile, "")
	locker.run(dir, false, "bundle", "lock")
	lock := lockHas(t, dir, "chain-a (1.0.0)", "chain-c (1.0.0)", "platty (1.0.0-x86_64-linux)")
	if strings.Contains(lock, "oldep") {
		t.Fatalf("the lockfile lists oldep:\n%s", lock)
	}

	dataDir := t.TempDir()
	out := runGemproxy(t, bin, "prefetch", "--data-dir", dataDir, "--upstream", ts.URL, filepath.Join(dir, "Gemfile.lock"))
	t.Logf("prefetch: %s", out)

	ts.Close() // from here on the upstream is gone
	proxyURL := serveOffline(t, bin, dataDir, ts.URL)

	c := newClient(t, f)
	c.mirror("https://rubygems.org", proxyURL)
	dir2 := app(t, fixtureGemfile, lock)
	c.run(dir2, false, "bundle", "config", "set", "--local", "path", filepath.Join(c.home, "vendor"))
	out, _ = c.run(dir2, false, "bundle", "install")
	if !strings.Contains(out, "Bundle complete") {
		t.Fatalf("offline bundle install:\n%s", out)
	}
	out, _ = c.run(dir2, false, "bundle", "exec", "ruby", "-e", `require "chain-a"; require "platty"; puts :loaded`)
	if !strings.Contains(out, "loaded") {
		t.Fatalf("installed gems do not load:\n%s", out)
	}
}

// buildGemproxy builds the gemproxy command into a temporary directory.
func buildGemproxy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gemproxy")
	build := exec.Command("go", "build", "-o", bin, "github.com/gemproxy/gemproxy/cmd/gemproxy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runGemproxy runs the gemproxy binary to completion with an empty
// GEMPROXY_* environment and returns its output; a non-zero exit fails t.
func runGemproxy(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gemproxy %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// serveOffline starts gemproxy serve --offline on dataDir on a loopback
// port for the rest of the test, waits until it answers /readyz, and
// returns its URL. upstream is configured but never contacted. Its log is
// shown when the test fails.
func serveOffline(t *testing.T, bin, dataDir, upstream string) string {
	t.Helper()
	config := filepath.Join(t.TempDir(), "gemproxy.toml")
	if err := os.WriteFile(config, []byte("[server]\nshutdown_grace = \"0s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServe(t, bin, nil, "--config", config, "--offline", "--data-dir", dataDir, "--upstream", upstream).url
}
