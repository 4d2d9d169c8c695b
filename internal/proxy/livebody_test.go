package proxy

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"

	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// liveGemPath is the gem the streaming tests fill.
const liveGemPath = "/gems/live-1.0.0.gem"

// newLiveProxy publishes a gem of size random bytes as live 1.0.0 on a
// testupstream and starts gemproxy in front of it, listening on loopback.
func newLiveProxy(t *testing.T, size int) (*testProxy, *testupstream.Server, []byte, string) {
	t.Helper()
	gem := make([]byte, size)
	rand.Read(gem)
	up, ts := testupstream.Start(t, testupstream.Options{MaxStall: 20 * time.Second})
	up.Publish(testupstream.GemSpec{Name: "live", Version: "1.0.0"}, gem)
	tp := newTestProxy(t, ts.URL)
	return tp, up, gem, tp.listen(t)
}

// stallGem makes the upstream send the first after bytes of the gem and
// wait for the returned channel to be closed before it sends the rest.
func stallGem(up *testupstream.Server, after int, fault testupstream.Fault) chan struct{} {
	release := make(chan struct{})
	fault.StallAfter, fault.Release = after, release
	up.SetFault(liveGemPath, fault)
	return release
}

// startDownload sends a GET of path to addr and reads the first n bytes
// of the answer; the caller reads the rest.
func startDownload(addr, path string, n int) (*http.Response, []byte, error) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return nil, nil, err
	}
	head := make([]byte, n)
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		resp.Body.Close()
		return nil, nil, fmt.Errorf("first %d bytes: %w", n, err)
	}
	return resp, head, nil
}

// finishDownload reads the rest of resp after head and closes it.
func finishDownload(resp *http.Response, head []byte) ([]byte, error) {
	defer resp.Body.Close()
	rest, err := io.ReadAll(resp.Body)
	return append(head, rest...), err
}

// TestLiveBodyFlowsBeforeUpstreamEnds: the first bytes of a cold gem
// reach the client while the upstream is still sending it (here: stalled
// halfway), with the upstream's Content-Length; the whole gem is then
// served, verified and stored.
func TestLiveBodyFlowsBeforeUpstreamEnds(t *testing.T) {
	tp, up, gem, addr := newLiveProxy(t, 8<<20)
	release := stallGem(up, 4<<20, testupstream.Fault{})
	resp, head, err := startDownload(addr, liveGemPath, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.ContentLength != int64(len(gem)) || resp.Header.Get("X-Cache") != "MISS" {
		t.Fatalf("streamed answer: %d, Content-Length %d, X-Cache %q", resp.StatusCode, resp.ContentLength, resp.Header.Get("X-Cache"))
	}
	if tp.store.Peek(liveGemPath) != nil {
		t.Fatal("stored before the upstream finished")
	}
	close(release)
	body, err := finishDownload(resp, head)
	if err != nil || !bytes.Equal(body, gem) {
		t.Fatalf("streamed gem: %v, %d bytes, equal %v", err, len(body), bytes.Equal(body, gem))
	}
	// The last byte went out once the gem was verified; it is stored once
	// its fill ends.
	tp.Wait()
	if e := tp.store.Peek(liveGemPath); e == nil || e.SHA256 != sha256.Sum256(gem) {
		t.Fatalf("streamed gem not stored once complete: %+v", e)
	}
	r, again := tp.do(t, "GET", liveGemPath)
	if r.Header.Get("X-Cache") != "HIT" || !bytes.Equal(again, gem) {
		t.Fatalf("after the streamed fill: %q, equal %v", r.Header.Get("X-Cache"), bytes.Equal(again, gem))
	}
}

// storedWithin reports whether key is stored within d: the last byte of
// a streamed gem goes out before the gem is committed.
func storedWithin(tp *testProxy, key string, d time.Duration) bool {
	for deadline := time.Now().Add(d); tp.store.Peek(key) == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// pacedGem serves gem as foo-bar 1.0.0 (see miniGems) with its
// Content-Length, in chunks with a pause after each: an upstream slower
// than loopback.
func pacedGem(gem []byte, chunks int, pause time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/gems/foo-bar-1.0.0.gem" {
			miniGems(gem)(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(gem)))
		rc := http.NewResponseController(w)
		step := len(gem) / chunks
		for off := 0; off < len(gem); off += step {
			if _, err := w.Write(gem[off:min(off+step, len(gem))]); err != nil {
				return
			}
			_ = rc.Flush()
			time.Sleep(pause)
		}
	}
}

// TestLiveBodyTimeToFirstByte: through an upstream that takes about
// 400 ms to send a 20 MiB gem, the first byte of a cold miss arrives in
// less than half that time.
func TestLiveBodyTimeToFirstByte(t *testing.T) {
	gem := make([]byte, 20<<20)
	rand.Read(gem)
	const chunks, pause = 20, 20 * time.Millisecond
	up := newCountingUpstream(t, pacedGem(gem, chunks, pause))
	tp := newTestProxy(t, up.URL)
	addr := tp.listen(t)
	start := time.Now()
	resp, head, err := startDownload(addr, "/gems/foo-bar-1.0.0.gem", 1)
	if err != nil {
		t.Fatal(err)
	}
	ttfb := time.Since(start)
	body, err := finishDownload(resp, head)
	ttlb := time.Since(start)
	t.Logf("cold 20 MiB gem, upstream sending for >= %v: time to first byte %v, to last byte %v", chunks*pause, ttfb, ttlb)
	if err != nil || !bytes.Equal(body, gem) {
		t.Fatalf("paced gem: %v, %d bytes", err, len(body))
	}
	if ttfb >= chunks*pause/2 {
		t.Errorf("time to first byte %v, want under half the upstream's send time %v", ttfb, chunks*pause)
	}
}

// TestLiveBodyCoalescesEveryClient: clients that ask for a cold gem while
// it downloads, in the fill's flight or after it handed out the streamed
// entry, all read it as it arrives from one upstream fetch, and all get
// the same correct bytes.
func TestLiveBodyCoalescesEveryClient(t *testing.T) {
	early, late := 100, 50
	if raceEnabled {
		early, late = 40, 20
	}
	tp, up, gem, addr := newLiveProxy(t, 4<<20)
	release := stallGem(up, 2<<20, testupstream.Fault{})
	var wg sync.WaitGroup
	errs := make(chan error, early+late)
	started := make(chan struct{}, early+late)
	download := func() {
		defer wg.Done()
		resp, head, err := startDownload(addr, liveGemPath, 64<<10)
		started <- struct{}{}
		if err == nil {
			var body []byte
			if body, err = finishDownload(resp, head); err == nil && !bytes.Equal(body, gem) {
				err = fmt.Errorf("%d bytes, not the gem", len(body))
			}
		}
		errs <- err
	}
	for _, n := range []int{early, late} {
		// The late ones start once every earlier client got bytes: the
		// fill's flight has ended, its body is still downloading.
		for range n {
			wg.Add(1)
			go download()
		}
		for range n {
			<-started
		}
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := up.Requests(liveGemPath); n != 1 {
		t.Fatalf("%d clients caused %d upstream fetches, want 1", early+late, n)
	}
	if got := testutil.ToFloat64(tp.m.Lookup("gem", metrics.ResultCoalesced)); got != float64(early+late-1) {
		t.Errorf("coalesced lookups = %v, want %d", got, early+late-1)
	}
}

// TestLiveBodyCorruptCutsEveryClient: a gem whose bytes do not match the
// compact index's checksum reaches no client whole: every answer, begun
// while the gem downloaded, ends short of its Content-Length. Nothing is
// stored, no staging file is left, and the next request fills again.
func TestLiveBodyCorruptCutsEveryClient(t *testing.T) {
	const clients = 20
	tp, up, gem, addr := newLiveProxy(t, 4<<20)
	release := stallGem(up, 1<<20, testupstream.Fault{Corrupt: true, Count: 1})
	type result struct {
		status int
		n      int
		err    error
	}
	results := make(chan result, clients)
	started := make(chan error, clients)
	for range clients {
		go func() {
			resp, head, err := startDownload(addr, liveGemPath, 64<<10)
			started <- err
			if err != nil {
				return
			}
			body, err := finishDownload(resp, head)
			results <- result{resp.StatusCode, len(body), err}
		}()
	}
	for range clients {
		if err := <-started; err != nil {
			t.Fatalf("no bytes while the gem downloaded: %v", err)
		}
	}
	close(release)
	for range clients {
		r := <-results
		if r.status != 200 || r.err == nil || r.n >= len(gem) {
			t.Errorf("corrupt gem: status %d, %d of %d bytes, error %v; want a 200 cut short", r.status, r.n, len(gem), r.err)
		}
	}
	tp.Wait()
	if tp.store.Peek(liveGemPath) != nil {
		t.Fatal("a corrupt gem was stored")
	}
	if got := testutil.ToFloat64(tp.m.CacheChecksumFailures.WithLabelValues("mismatch")); got != 1 {
		t.Errorf("checksum mismatch counter = %v, want 1", got)
	}
	if files, _ := os.ReadDir(filepath.Join(tp.dir, "tmp")); len(files) != 0 {
		t.Errorf("staging files left: %d", len(files))
	}
	verifyClean(t, tp)
	resp, body := tp.do(t, "GET", liveGemPath)
	if resp.StatusCode != 200 || !bytes.Equal(body, gem) || up.Requests(liveGemPath) != 2 {
		t.Fatalf("after the corrupt fill: %d, equal %v, %d fetches", resp.StatusCode, bytes.Equal(body, gem), up.Requests(liveGemPath))
	}
}

// TestLiveBodySlowReaderDoesNotDelayOthers: a client that stops reading
// a streamed gem holds back neither the fill nor another client.
func TestLiveBodySlowReaderDoesNotDelayOthers(t *testing.T) {
	tp, _, gem, addr := newLiveProxy(t, 32<<20)
	slow, head, err := startDownload(addr, liveGemPath, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Body.Close()
	resp, fastHead, err := startDownload(addr, liveGemPath, 1)
	if err != nil {
		t.Fatal(err)
	}
	body, err := finishDownload(resp, fastHead)
	if err != nil || !bytes.Equal(body, gem) {
		t.Fatalf("fast reader: %v, %d bytes", err, len(body))
	}
	if !storedWithin(tp, liveGemPath, 10*time.Second) {
		t.Fatal("the fill waited for the slow reader")
	}
	if body, err = finishDownload(slow, head); err != nil || !bytes.Equal(body, gem) {
		t.Fatalf("slow reader: %v, %d bytes", err, len(body))
	}
}

// TestLiveBodyHeapPerStream: each client of a streamed gem costs the heap
// a small fraction of the gem: the body goes from the staging file to the
// socket in small pooled buffers. The cost of one stream is what 20 more
// clients add to the fill of a gem the same size, after a first fill
// warmed the proxy up.
func TestLiveBodyHeapPerStream(t *testing.T) {
	const size, extra = 16 << 20, 20
	tp, up, _, addr := newLiveProxy(t, size)
	for _, version := range []string{"2.0.0", "3.0.0"} {
		other := make([]byte, size)
		rand.Read(other)
		up.Publish(testupstream.GemSpec{Name: "live", Version: version}, other)
	}
	fill := func(path string, clients int) uint64 {
		total, _ := allocsDuring(func() {
			var wg sync.WaitGroup
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := http.Get("http://" + addr + path)
					if err != nil {
						t.Error(err)
						return
					}
					defer resp.Body.Close()
					if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != size {
						t.Errorf("%s: %d bytes, %v", path, n, err)
					}
				}()
			}
			wg.Wait()
			tp.Wait()
		})
		return total
	}
	fill(liveGemPath, 1)
	one := fill("/gems/live-2.0.0.gem", 1)
	many := fill("/gems/live-3.0.0.gem", 1+extra)
	perStream := (int64(many) - int64(one)) / extra
	t.Logf("%d MiB streamed gem: heap allocated %.1f MiB for one client, %.1f MiB for %d; %.0f KiB per extra stream",
		size>>20, float64(one)/(1<<20), float64(many)/(1<<20), 1+extra, float64(perStream)/(1<<10))
	if raceEnabled {
		t.Log("heap bound not checked under the race detector (sync.Pool drops buffers); make test checks it without -race")
		return
	}
	if perStream > size/64 {
		t.Errorf("%d bytes of heap per stream of a %d-byte gem, want at most %d", perStream, size, size/64)
	}
}

// TestLiveBodyClientDisconnectLeavesFill: a client that hangs up in the
// middle of a streamed gem ends neither the fill nor another client's
// answer.
func TestLiveBodyClientDisconnectLeavesFill(t *testing.T) {
	tp, up, gem, addr := newLiveProxy(t, 4<<20)
	release := stallGem(up, 2<<20, testupstream.Fault{})
	quitter, _, err := startDownload(addr, liveGemPath, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	stayer, head, err := startDownload(addr, liveGemPath, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	quitter.Body.Close()
	close(release)
	body, err := finishDownload(stayer, head)
	if err != nil || !bytes.Equal(body, gem) {
		t.Fatalf("the client that stayed: %v, %d bytes", err, len(body))
	}
	tp.Wait()
	if e := tp.store.Peek(liveGemPath); e == nil || up.Requests(liveGemPath) != 1 {
		t.Fatalf("after a client hung up: stored %v, %d fetches", e != nil, up.Requests(liveGemPath))
	}
}
