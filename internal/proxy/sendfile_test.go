package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/gemproxy/gemproxy/internal/cache"
)

// TestStoredGemOverTCP: a stored gem sent on a kept-alive TCP connection
// (written from the cache file's mapping, never with sendfile) arrives
// whole, after its headers, with the right bytes for a Range too, and
// leaves the connection usable for the next request.
func TestStoredGemOverTCP(t *testing.T) {
	tp, _, gem, addr := newLiveProxy(t, 2<<20)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	get := func(rng string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+liveGemPath, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("GET %s %s: %v", liveGemPath, rng, err)
		}
		return resp, body
	}
	get("") // the fill
	tp.Wait()
	for range 2 {
		resp, body := get("")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Cache") != "HIT" || !bytes.Equal(body, gem) {
			t.Fatalf("stored gem: %d, X-Cache %q, %d bytes, equal %v", resp.StatusCode, resp.Header.Get("X-Cache"), len(body), bytes.Equal(body, gem))
		}
		const start, end = cache.ChunkSize - 3, 3*cache.ChunkSize + 2
		resp, body = get(fmt.Sprintf("bytes=%d-%d", start, end))
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, gem[start:end+1]) {
			t.Fatalf("range of the stored gem: %d, %d bytes, equal %v", resp.StatusCode, len(body), bytes.Equal(body, gem[start:end+1]))
		}
	}
}
