package s3store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/blobstore/s3store"
	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/proxy"
	"github.com/gemproxy/gemproxy/internal/testupstream"
	"github.com/gemproxy/gemproxy/internal/testweed"
)

// The fleet tests run gemproxy replicas in process over one SeaweedFS
// bucket (prefix) and one fake rubygems.org: the integration tests of
// issue 13, here because this directory's tests own SeaweedFS.

// fleetGem is the gem every replica is asked for.
var fleetGem = testupstream.GemSpec{Name: "fleetgem", Version: "1.0.0", Padding: 256 << 10}

// fleetGemPath is fleetGem's path and object key.
const (
	fleetGemPath = "/gems/fleetgem-1.0.0.gem"
	fleetGemKey  = "gems/fleetgem-1.0.0.gem"
)

// startReplica serves a gemproxy replica on an empty data directory, over
// the shared store s (none when nil), with its options changed by tweak,
// and returns its base URL.
func startReplica(t *testing.T, upstream string, s blobstore.Store, name string, tweak ...func(*proxy.Options)) string {
	t.Helper()
	store, err := cache.Open(t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(upstream)
	opts := proxy.Options{Upstream: proxy.UpstreamOptions{URL: u}, Logger: slog.New(slog.DiscardHandler), Version: "test"}
	if s != nil {
		opts.Shared = proxy.SharedOptions{Store: s, Mode: blobstore.Conditional, Replica: name}
	}
	for _, f := range tweak {
		f(&opts)
	}
	p, err := proxy.New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.App().Listener(ln)
	t.Cleanup(func() {
		_ = p.App().ShutdownWithTimeout(5 * time.Second)
		p.Wait()
		store.Close()
	})
	return "http://" + ln.Addr().String()
}

// getBody fetches url and returns its status and body.
func getBody(url string) (int, []byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestFleetColdGemFetchedOnce: 300 concurrent cold requests for one gem,
// spread over 1, 2 and 3 replicas sharing one bucket: one upstream fetch
// of the gem whatever the number of replicas, every client the gem's
// bytes, one object in the bucket and no claim left. Then a replica on an
// empty data directory serves the gem with no upstream request at all: it
// verifies the object against the SHA-256 recorded with it, not against an
// /info fetched from the upstream.
func TestFleetColdGemFetchedOnce(t *testing.T) {
	gem, err := testupstream.BuildGem(fleetGem)
	if err != nil {
		t.Fatal(err)
	}
	for _, replicas := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) {
			s := s3store.WeedStore(t)
			up, ts := testupstream.Start(t, testupstream.Options{})
			up.Publish(fleetGem, nil)
			// The fill takes a while, as it does from rubygems.org, so that
			// every replica's miss overlaps the first one's.
			up.SetLatency(200 * time.Millisecond)
			var urls []string
			for i := range replicas {
				urls = append(urls, startReplica(t, ts.URL, s, fmt.Sprintf("r%d", i)))
			}
			const clients = 300
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				wg.Go(func() {
					code, body, err := getBody(urls[i%replicas] + fleetGemPath)
					switch {
					case err != nil:
						errs <- err
					case code != http.StatusOK || !bytes.Equal(body, gem):
						errs <- fmt.Errorf("client %d: %d, %d bytes", i, code, len(body))
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			fetches := up.Requests(fleetGemPath)
			t.Logf("%d replicas, %d clients: %d upstream fetches of the gem", replicas, clients, fetches)
			if fetches != 1 {
				t.Fatalf("upstream fetches of the gem: %d, want 1", fetches)
			}
			waitForObject(t, s, fleetGemKey, gem)
			if _, err := s.Stat(context.Background(), "claims/"+fleetGemKey); !errors.Is(err, blobstore.ErrNotFound) {
				t.Errorf("claim left behind: %v", err)
			}

			up.SetLatency(0)
			earlier := len(up.Log())
			start := time.Now()
			code, body, err := getBody(startReplica(t, ts.URL, s, "fresh") + fleetGemPath)
			fromStore := time.Since(start)
			if err != nil || code != http.StatusOK || !bytes.Equal(body, gem) {
				t.Fatalf("fresh replica: %d, %d bytes, %v", code, len(body), err)
			}
			if asked := up.Paths()[earlier:]; len(asked) != 0 {
				t.Fatalf("fresh replica asked the upstream for %v; want nothing", asked)
			}
			start = time.Now()
			if code, _, err := getBody(startReplica(t, ts.URL, nil, "alone") + fleetGemPath); err != nil || code != http.StatusOK {
				t.Fatalf("replica without the store: %d, %v", code, err)
			}
			t.Logf("local miss of a %d-byte gem: %s from the shared store, %s from the upstream (no added latency)",
				len(gem), fromStore, time.Since(start))
		})
	}
}

// waitForObject waits until the object at key holds want: replicas write
// it after serving their clients.
func waitForObject(t *testing.T, s blobstore.Store, key string, want []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rc, _, err := s.Get(context.Background(), key)
		if err == nil {
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("object %s: %d bytes, %v; want the gem", key, len(got), err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("object %s never written: %v", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFleetSurvivesAStoppedStore: with the shared store stopped (SIGSTOP:
// connections open, no answer), replicas keep serving from their local
// tier and the upstream, each miss delayed at most by the store's call
// timeouts; once it is resumed, verified gems reach it again.
func TestFleetSurvivesAStoppedStore(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s := s3store.QuickWeedStore(t, timeout)
	up, ts := testupstream.Start(t, testupstream.Options{})
	specs := []testupstream.GemSpec{{Name: "before", Version: "1.0.0"}, {Name: "during", Version: "1.0.0"}}
	for i := range 45 {
		specs = append(specs, testupstream.GemSpec{Name: fmt.Sprintf("after%d", i), Version: "1.0.0"})
	}
	gems := map[string][]byte{}
	for _, spec := range specs {
		gem, err := testupstream.BuildGem(spec)
		if err != nil {
			t.Fatal(err)
		}
		up.Publish(spec, gem)
		gems[spec.Name] = gem
	}
	get := func(base, name string) time.Duration {
		t.Helper()
		start := time.Now()
		code, body, err := getBody(base + "/gems/" + name + "-1.0.0.gem")
		if err != nil || code != http.StatusOK || !bytes.Equal(body, gems[name]) {
			t.Fatalf("%s: %d, %d bytes, %v", name, code, len(body), err)
		}
		return time.Since(start)
	}
	r := startReplica(t, ts.URL, s, "r")
	get(r, "before")
	waitForObject(t, s, "gems/before-1.0.0.gem", gems["before"])

	resume := testweed.Start(t).Pause(t)
	// A read (Get), a claim (PutIfAbsent) and its release may each wait for
	// the timeout before the breaker opens: a bounded delay, never an error.
	const bound = 10 * timeout
	if d := get(r, "during"); d > bound {
		t.Errorf("a cold miss with the store stopped took %v, want under %v", d, bound)
	}
	if d := get(r, "before"); d > timeout {
		t.Errorf("a local hit with the store stopped took %v", d)
	}
	fresh := startReplica(t, ts.URL, s, "fresh")
	if d := get(fresh, "before"); d > bound {
		t.Errorf("a fresh replica's miss with the store stopped took %v, want under %v", d, bound)
	}
	t.Logf("with the store stopped: cold misses served from the upstream within %v", bound)

	resume()
	// The store's breaker lets a probe through after its back-off, which
	// doubled with each probe that failed while the store was stopped
	// (about 45 s here): keep filling new gems, 2 s apart, until one
	// reaches the bucket again.
	resumed := time.Now()
	for i := 0; ; i++ {
		name := fmt.Sprintf("after%d", i)
		get(r, name)
		if obj, _, err := s.Get(context.Background(), "gems/"+name+"-1.0.0.gem"); err == nil {
			obj.Close()
			t.Logf("resumed: %s reached the store %v after the resumption, at fill %d", name, time.Since(resumed).Round(time.Second), i+1)
			break
		}
		if i == 44 {
			t.Fatalf("no gem reached the store within %v of its resumption", time.Since(resumed).Round(time.Second))
		}
		time.Sleep(2 * time.Second)
	}
}

// TestFleetVersionsClientNeverGoesBack: replica a refreshes /versions
// after a push upstream and publishes it; replica b, whose /versions is
// still fresh, is asked by a client that a served for the range from b's
// old length: b reads the pointer at once, adopts a's generation and
// answers 206 with the tail, without asking the upstream for /versions,
// and its /info for the pushed gem has the new version.
func TestFleetVersionsClientNeverGoesBack(t *testing.T) {
	s := s3store.WeedStore(t)
	up, ts := testupstream.Start(t, testupstream.Options{})
	up.Publish(testupstream.GemSpec{Name: "fleetver", Version: "1.0.0"}, nil)
	// a's /versions expires quickly; b only adopts when a client is ahead.
	a := startReplica(t, ts.URL, s, "a", func(o *proxy.Options) {
		o.TunePolicy(proxy.ClassVersions, func(p *proxy.Policy) { p.TTL = 100 * time.Millisecond })
	})
	b := startReplica(t, ts.URL, s, "b", func(o *proxy.Options) {
		o.Shared.VersionsPoll = time.Hour
		// SeaweedFS's reads may be slow under load: leave the pointer time.
		o.TunePolicy(proxy.ClassVersions, func(p *proxy.Policy) { p.RevalidateTimeout = 20 * time.Second })
	})
	old := mustGet(t, a+"/versions")
	waitForGeneration(t, s, 1)
	if got := mustGet(t, b+"/versions"); got != old {
		t.Fatalf("b's first /versions differs from a's")
	}
	if info := mustGet(t, b+"/info/fleetver"); strings.Contains(info, "2.0.0") {
		t.Fatalf("/info/fleetver before the push: %q", info)
	}

	up.Publish(testupstream.GemSpec{Name: "fleetver", Version: "2.0.0"}, nil)
	current := waitForGrowth(t, a+"/versions", len(old))
	waitForGeneration(t, s, 2)
	before := up.Requests("/versions")

	req, _ := http.NewRequest(http.MethodGet, b+"/versions", nil)
	req.Header.Set("Range", "bytes="+strconv.Itoa(len(old))+"-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tail, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusPartialContent || string(tail) != current[len(old):] {
		t.Fatalf("b, Range from a's old length: %d %q (%v), want 206 and %q", resp.StatusCode, tail, err, current[len(old):])
	}
	if n := up.Requests("/versions"); n != before {
		t.Errorf("b asked the upstream for /versions: %d requests, was %d", n, before)
	}
	if info := mustGet(t, b+"/info/fleetver"); !strings.Contains(info, "2.0.0") {
		t.Errorf("b's /info/fleetver after adopting /versions: %q, want 2.0.0 in it", info)
	}
}

// waitForGrowth fetches url until its body is longer than size (a's
// /versions, once its short TTL has run out) and returns that body.
func waitForGrowth(t *testing.T, url string, size int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if body := mustGet(t, url); len(body) > size {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not grow past %d bytes after the push", url, size)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mustGet fetches url and returns its body, failing unless it is a 200.
func mustGet(t *testing.T, url string) string {
	t.Helper()
	code, body, err := getBody(url)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET %s: %d, %v", url, code, err)
	}
	return string(body)
}

// waitForGeneration waits until the /versions pointer in s names
// generation gen: replicas publish after serving their clients.
func waitForGeneration(t *testing.T, s blobstore.Store, gen int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var p struct {
			Generation int64 `json:"generation"`
		}
		rc, _, err := s.Get(context.Background(), "versions/current")
		if err == nil {
			err = json.NewDecoder(rc).Decode(&p)
			rc.Close()
		}
		if err == nil && p.Generation == gen {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the /versions pointer never reached generation %d: at %d, %v", gen, p.Generation, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
