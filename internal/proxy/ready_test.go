package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gemproxy/gemproxy/internal/cache"
)

// readyStatus probes /readyz on p and returns the status.
func readyStatus(t *testing.T, p *Proxy) int {
	t.Helper()
	resp, err := p.App().Test(httptest.NewRequest(http.MethodGet, "/readyz", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReadyzFloodWritesNothing checks that readiness probes never write the
// cache file: a flood of them commits no write transaction.
func TestReadyzFloodWritesNothing(t *testing.T) {
	tp := newTestProxy(t, "http://127.0.0.1:1")
	before := tp.store.Stats().Writes
	for range 500 {
		if got := readyStatus(t, tp.Proxy); got != http.StatusOK {
			t.Fatalf("/readyz = %d, want 200", got)
		}
	}
	if n := tp.store.Stats().Writes - before; n != 0 {
		t.Fatalf("500 /readyz probes committed %d write transactions, want 0", n)
	}
}

// TestReadyzUnwritableCache checks that /readyz answers 503 over a cache
// that cannot write: closed, or opened read-only.
func TestReadyzUnwritableCache(t *testing.T) {
	opts := newTestProxy(t, "http://127.0.0.1:1").opts
	cases := map[string]func(dir string) *cache.Store{
		"closed": func(dir string) *cache.Store {
			s := openStore(t, dir, cache.Options{})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return s
		},
		"read-only": func(dir string) *cache.Store {
			if err := openStore(t, dir, cache.Options{}).Close(); err != nil {
				t.Fatal(err)
			}
			s := openStore(t, dir, cache.Options{ReadOnly: true})
			t.Cleanup(func() { s.Close() })
			return s
		},
	}
	for name, storeIn := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := New(storeIn(t.TempDir()), opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := readyStatus(t, p); got != http.StatusServiceUnavailable {
				t.Fatalf("/readyz = %d, want 503", got)
			}
		})
	}
}

// openStore opens the cache in dir or fails the test.
func openStore(t *testing.T, dir string, opts cache.Options) *cache.Store {
	t.Helper()
	s, err := cache.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
