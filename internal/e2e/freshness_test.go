package e2e

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// TestBundleLockUpdateSeesReleaseAfterDefaultTTL is issue 10 point 1: with
// gemproxy's default settings, the first `bundle lock --update` run once
// the /versions TTL has passed must resolve a version published upstream
// meanwhile. Bundler asks for /versions once per run, so a CI job that
// runs once must not be handed the expired copy. It waits the default TTL
// (60 s), once for all flavours, in parallel with the other parallel tests.
func TestBundleLockUpdateSeesReleaseAfterDefaultTTL(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the default /versions TTL")
	}
	t.Parallel()
	forEachFlavour(t, bundleLockUpdateSeesReleaseAfterDefaultTTL)
}

// bundleLockUpdateSeesReleaseAfterDefaultTTL warms gemproxy (default
// options) with a bundle lock, publishes chain-a 1.1.0 behind its back,
// waits just past the default TTL and runs bundle lock --update chain-a
// once.
func bundleLockUpdateSeesReleaseAfterDefaultTTL(t *testing.T, f flavour) {
	e := start(t, testupstream.Options{})
	publishFixture(t, e.up)
	c := newClient(t, f)
	c.mirror("https://rubygems.org", e.proxyURL)
	dir := app(t, fixtureGemfile, "")
	c.run(dir, false, "bundle", "lock")
	warmed := time.Now()
	lockHas(t, dir, "chain-a (1.0.0)")

	e.up.Publish(testupstream.GemSpec{Name: "chain-a", Version: "1.1.0", Deps: []testupstream.Dep{{Name: "chain-b", Requirement: "~> 1.0"}}}, nil)
	// Control: within the TTL gemproxy still serves its cached copy, so
	// what follows depends on the expiry. Its answers say how long that
	// lasts (max-age is the TTL of the class).
	upstream, _ := e.up.Body("/versions")
	served, ttl := e.getMaxAge("/versions")
	if bytes.Equal(served, upstream) {
		t.Fatalf("gemproxy served the upstream's new /versions before the TTL ran out: the test proves nothing")
	}
	_, infoTTL := e.getMaxAge("/info/chain-a")
	ttl = max(ttl, infoTTL)
	time.Sleep(time.Until(warmed.Add(ttl + time.Second))) // the TTL is what this test is about
	waited := time.Since(warmed).Round(time.Second)
	c.run(dir, false, "bundle", "lock", "--update", "chain-a")
	if local := c.bundlerVersions(); !bytes.Equal(local, upstream) {
		t.Errorf("%v after the warm-up, gemproxy answered Bundler's /versions request with an outdated copy (Bundler now has %d bytes, the upstream %d)",
			waited, len(local), len(upstream))
	}
	lockHas(t, dir, "chain-a (1.1.0)")
}

// getMaxAge fetches path from gemproxy and returns the body and the
// freshness its Cache-Control announces.
func (e *env) getMaxAge(path string) ([]byte, time.Duration) {
	e.t.Helper()
	resp, body := e.fetch(path)
	cc := resp.Header.Get("Cache-Control")
	for _, d := range strings.Split(cc, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(d), "max-age="); ok {
			if secs, err := strconv.Atoi(v); err == nil {
				return body, time.Duration(secs) * time.Second
			}
		}
	}
	e.t.Fatalf("GET %s: %d with Cache-Control %q, want a max-age", path, resp.StatusCode, cc)
	return nil, 0
}
