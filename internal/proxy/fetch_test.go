package proxy

import (
	"crypto/sha256"
	"net/http"
	"strings"
	"testing"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// TestFetchStoresWhatAClientWould checks Fetch fills and stores a gem and
// the compact index like a client's GET, answers a second time from the
// cache without the upstream, and names what it could not store.
func TestFetchStoresWhatAClientWould(t *testing.T) {
	up, ts := testupstream.Start(t, testupstream.Options{})
	spec := testupstream.GemSpec{Name: "alpha", Version: "1.0.0"}
	gem, err := testupstream.BuildGem(spec)
	if err != nil {
		t.Fatal(err)
	}
	up.Publish(spec, gem)
	up.Publish(testupstream.GemSpec{Name: "nosum", Version: "1.0.0"}, nil)
	up.SetFault("/info/nosum", testupstream.Fault{Status: http.StatusNotFound})
	tp := newTestProxy(t, ts.URL)

	// The gem's verification stored /info/alpha on the way.
	for _, f := range []struct {
		path string
		hit  bool
	}{{"/gems/alpha-1.0.0.gem", false}, {"/info/alpha", true}, {"/versions", false}, {"/names", false}} {
		path := f.path
		e, hit, err := tp.Fetch(t.Context(), path)
		if err != nil || hit != f.hit || e.Status != http.StatusOK || e.ID == 0 {
			t.Fatalf("Fetch(%s): hit %v, err %v; want a stored 200, hit %v", path, hit, err, f.hit)
		}
		if stored := tp.store.Peek(path); stored == nil || stored.SHA256 != e.SHA256 {
			t.Errorf("Fetch(%s) did not store its entry: %+v", path, stored)
		}
	}
	if e := tp.store.Peek("/gems/alpha-1.0.0.gem"); e.SHA256 != sha256.Sum256(gem) {
		t.Errorf("stored gem has SHA-256 %x", e.SHA256)
	}

	before := len(up.Paths())
	e, hit, err := tp.Fetch(t.Context(), "/downloads/alpha-1.0.0.gem")
	if err != nil || !hit || e.Key != "/gems/alpha-1.0.0.gem" {
		t.Errorf("Fetch of the download alias: entry %+v, hit %v, err %v; want the cached gem", e, hit, err)
	}
	if n := len(up.Paths()) - before; n != 0 {
		t.Errorf("a cached path sent %d requests upstream", n)
	}

	failures := []struct{ path, want string }{
		{"/gems/missing-1.0.0.gem", "upstream answered 404 Not Found: This file could not be found"},
		{"/gems/nosum-1.0.0.gem", errNotStored.Error()},
		{"/api/v1/gems.json", errNotCached.Error()},
		{"/versions?x=1", errNotCached.Error()},
		{"/nothing/here", errNotCached.Error()},
		{"/gems/../versions", ". or .. segment in path"},
	}
	for _, f := range failures {
		e, hit, err := tp.Fetch(t.Context(), f.path)
		if err == nil || !strings.Contains(err.Error(), f.want) || e != nil || hit {
			t.Errorf("Fetch(%s): entry %+v, hit %v, err %v; want an error containing %q", f.path, e, hit, err, f.want)
		}
	}
}

// TestFetchWaitsForAStreamedGem: a gem large enough to stream to its
// clients (liveBodyMin) is returned by Fetch once stored, not as the entry
// that streams it.
func TestFetchWaitsForAStreamedGem(t *testing.T) {
	up, ts := testupstream.Start(t, testupstream.Options{})
	up.Publish(testupstream.GemSpec{Name: "large", Version: "1.0.0", Padding: 2 * liveBodyMin}, nil)
	tp := newTestProxy(t, ts.URL)
	e, hit, err := tp.Fetch(t.Context(), "/gems/large-1.0.0.gem")
	if err != nil || hit || e.ID == 0 || e.Size < 2*liveBodyMin {
		t.Fatalf("Fetch of a streamed gem: entry %+v, hit %v, err %v; want the stored gem", e, hit, err)
	}
	if stored := tp.store.Peek("/gems/large-1.0.0.gem"); stored == nil || stored.ID != e.ID {
		t.Fatalf("the cache holds %+v, want the entry Fetch returned", stored)
	}
}
