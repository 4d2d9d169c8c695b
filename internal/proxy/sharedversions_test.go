package proxy

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// The fleet's /versions in tests: rack's /info before and after a push,
// and the /versions naming each one's MD5.
var (
	fleetInfo1     = "---\n1.0.0 |checksum:aa\n"
	fleetInfo2     = fleetInfo1 + "2.0.0 |checksum:bb\n"
	fleetVersions1 = "created_at: 2024-04-01T00:00:05Z\n---\nrack 1.0.0 " + md5Hex(fleetInfo1) + "\n"
	fleetVersions2 = fleetVersions1 + "rack 2.0.0 " + md5Hex(fleetInfo2) + "\n"
)

// md5Hex is the hex MD5 of s.
func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// fleetUpstream serves fleetVersions1 and fleetInfo1 until push.
func fleetUpstream(t *testing.T) (*indexUpstream, *countingUpstream) {
	iu := &indexUpstream{files: map[string][]byte{"/versions": []byte(fleetVersions1), "/info/rack": []byte(fleetInfo1)}}
	return iu, newCountingUpstream(t, iu.ServeHTTP)
}

// push publishes rack 2.0.0 upstream.
func push(iu *indexUpstream) {
	iu.set("/info/rack", []byte(fleetInfo2))
	iu.set("/versions", []byte(fleetVersions2))
}

// newReplica is a test proxy sharing s in mode, reading the /versions
// pointer every poll.
func newReplica(t *testing.T, up string, s blobstore.Store, mode blobstore.Mode, name string, poll time.Duration) *testProxy {
	return newTestProxy(t, up, func(o *Options) {
		o.Shared = SharedOptions{Store: s, Mode: mode, Replica: name, VersionsPoll: poll}
	})
}

// neverPoll is a poll interval no test lasts.
const neverPoll = time.Hour

// getVersions fetches /versions through tp with the request headers h
// and checks the status.
func getVersions(t *testing.T, tp *testProxy, status int, h ...string) (*http.Response, string) {
	t.Helper()
	resp, body := tp.do(t, "GET", "/versions", h...)
	if resp.StatusCode != status {
		t.Fatalf("GET /versions %v: %d %q, want %d", h, resp.StatusCode, body, status)
	}
	return resp, string(body)
}

// pointer is the /versions pointer in s.
func pointer(t *testing.T, s blobstore.Store) versionsPointer {
	t.Helper()
	var p versionsPointer
	b := storedObject(t, s, versionsPointerKey)
	if b == nil {
		t.Fatal("no /versions pointer in the store")
	}
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// setPointer publishes body as generation gen in s, with a pointer that
// states size and sha (those of body when zero).
func setPointer(t *testing.T, s blobstore.Store, gen int64, body string, size int64, sha [32]byte) {
	t.Helper()
	if err := movePointer(s, gen, body, size, sha); err != nil {
		t.Fatal(err)
	}
}

// movePointer is setPointer, returning its error.
func movePointer(s blobstore.Store, gen int64, body string, size int64, sha [32]byte) error {
	if size == 0 {
		size, sha = int64(len(body)), sha256.Sum256([]byte(body))
	}
	p := versionsPointer{Generation: gen, Key: generationKey(gen, sha), Size: size, SHA256: hex.EncodeToString(sha[:]),
		CreatedAt: createdAt(body)}
	ctx := context.Background()
	if _, err := s.PutIfAbsent(ctx, p.Key, bytes.NewReader([]byte(body)), int64(len(body)), blobstore.PutOptions{}); err != nil {
		return err
	}
	b, _ := json.Marshal(p)
	info, err := s.Stat(ctx, versionsPointerKey)
	switch {
	case errors.Is(err, blobstore.ErrNotFound):
		_, err = s.PutIfAbsent(ctx, versionsPointerKey, bytes.NewReader(b), int64(len(b)), blobstore.PutOptions{})
	case err == nil:
		_, err = s.PutIfMatch(ctx, versionsPointerKey, b, info.Version)
	}
	return err
}

// createdAt is the created_at stamp of the /versions body, "" when it has
// none.
func createdAt(body string) string {
	line, _, _ := strings.Cut(body, "\n")
	stamp, _ := strings.CutPrefix(line, "created_at: ")
	return stamp
}

// versionsEvents is gemproxy_shared_store_versions_total{event}.
func versionsEvents(tp *testProxy, ev metrics.VersionsEvent) float64 {
	return testutil.ToFloat64(tp.m.SharedStore.Versions.WithLabelValues(ev.String()))
}

// localVersions is the size of tp's stored /versions, 0 when none.
func localVersions(tp *testProxy) int64 {
	if e := tp.store.Peek(versionsKey); e != nil {
		return e.Size
	}
	return 0
}

// expire moves tp's clock past the TTL of /versions and /info.
func expire(tp *testProxy) { tp.clock.Advance(2 * time.Minute) }

// TestVersionsPublishedThenAdopted: replica a publishes each /versions it
// gets from the upstream (the first as generation 1, a refresh after a
// push as generation 2); replica b, polling the pointer, adopts generation
// 2 without asking the upstream, and serves it with the ETag and digest
// of its bytes.
func TestVersionsPublishedThenAdopted(t *testing.T) {
	iu, up := fleetUpstream(t)
	s := blobstore.NewMemory()
	a := newReplica(t, up.URL, s, blobstore.Conditional, "a", neverPoll)
	b := newReplica(t, up.URL, s, blobstore.Conditional, "b", 10*time.Millisecond)
	getVersions(t, a, http.StatusOK)
	a.Wait()
	if p := pointer(t, s); p.Generation != 1 || p.Size != int64(len(fleetVersions1)) || string(storedObject(t, s, p.Key)) != fleetVersions1 {
		t.Fatalf("pointer after the first fetch: %+v", p)
	}
	getVersions(t, b, http.StatusOK)

	push(iu)
	expire(a)
	if _, body := getVersions(t, a, http.StatusOK); body != fleetVersions2 {
		t.Fatalf("replica a after the push: %q", body)
	}
	a.Wait()
	if p := pointer(t, s); p.Generation != 2 || string(storedObject(t, s, p.Key)) != fleetVersions2 {
		t.Fatalf("pointer after the push: %+v", p)
	}
	// Counted once committed: waiting for the count waits for both.
	waitFor(t, func() bool { return versionsEvents(b, metrics.VersionsAdopted) == 1 })
	resp, body := getVersions(t, b, http.StatusOK)
	if body != fleetVersions2 {
		t.Fatalf("replica b serves %q", body)
	}
	for name, want := range validators(fleetVersions2) {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if n := up.count("/versions"); n != 3 {
		t.Errorf("upstream /versions requests: %d, want 3 (a twice, b once)", n)
	}
	if n := versionsEvents(a, metrics.VersionsPublished); n != 2 {
		t.Errorf("a published %v generations, want 2", n)
	}
	if g := testutil.ToFloat64(b.m.SharedStore.VersionsGeneration); g != 2 {
		t.Errorf("b's generation gauge: %v, want 2", g)
	}
}

// TestVersionsClientAheadAdopts: a client that a fresher replica served
// asks replica b, whose /versions is still fresh but older, for the range
// from its old length: b reads the pointer at once and answers 206 with
// the tail, without asking the upstream.
func TestVersionsClientAheadAdopts(t *testing.T) {
	_, up := fleetUpstream(t)
	s := blobstore.NewMemory()
	b := newReplica(t, up.URL, s, blobstore.Conditional, "b", neverPoll)
	getVersions(t, b, http.StatusOK)
	b.Wait()
	setPointer(t, s, 2, fleetVersions2, 0, [32]byte{})
	resp, body := getVersions(t, b, http.StatusPartialContent, "Range", "bytes="+strconv.Itoa(len(fleetVersions1))+"-")
	if body != fleetVersions2[len(fleetVersions1):] {
		t.Fatalf("206 body %q, want the tail", body)
	}
	want := fmt.Sprintf("bytes %d-%d/%d", len(fleetVersions1), len(fleetVersions2)-1, len(fleetVersions2))
	if got := resp.Header.Get("Content-Range"); got != want {
		t.Errorf("Content-Range %q, want %q", got, want)
	}
	if n := up.count("/versions"); n != 1 {
		t.Errorf("upstream /versions requests: %d, want 1 (the first fill)", n)
	}
}

// TestVersionsNeverBackwards: a pointer is adopted only when it names a
// generation newer than the one held and a longer body: a higher
// generation with a shorter body, or an older generation with a longer
// one, leaves the local copy as it is.
func TestVersionsNeverBackwards(t *testing.T) {
	_, up := fleetUpstream(t)
	s := blobstore.NewMemory()
	b := newReplica(t, up.URL, s, blobstore.Conditional, "b", neverPoll)
	setPointer(t, s, 3, fleetVersions1, 0, [32]byte{})
	getVersions(t, b, http.StatusOK)
	b.Wait() // b found its body under the pointer: it holds generation 3
	ctx := context.Background()

	shorter := fleetVersions1[:len(fleetVersions1)-10]
	setPointer(t, s, 4, shorter, 0, [32]byte{})
	if e := b.fill.adoptVersions(ctx); e != nil || localVersions(b) != int64(len(fleetVersions1)) {
		t.Fatalf("a shorter body of generation 4 was adopted: local size %d", localVersions(b))
	}
	setPointer(t, s, 2, fleetVersions2, 0, [32]byte{})
	if e := b.fill.adoptVersions(ctx); e != nil || localVersions(b) != int64(len(fleetVersions1)) {
		t.Fatalf("a longer body of the older generation 2 was adopted: local size %d", localVersions(b))
	}
	setPointer(t, s, 5, fleetVersions2, 0, [32]byte{})
	if e := b.fill.adoptVersions(ctx); e == nil || localVersions(b) != int64(len(fleetVersions2)) {
		t.Fatalf("generation 5, newer and longer, not adopted: local size %d", localVersions(b))
	}
	if n := versionsEvents(b, metrics.VersionsAdopted); n != 1 {
		t.Errorf("adoptions counted: %v, want 1", n)
	}
}

// TestVersionsChecksumRefused: a generation object whose SHA-256 or size
// is not the pointer's is dropped and counted; the local copy stays.
func TestVersionsChecksumRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
	}{
		{"sha256", fleetVersions2[:len(fleetVersions2)-2] + "x\n"},
		{"size", fleetVersions2 + "more\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, up := fleetUpstream(t)
			s := blobstore.NewMemory()
			b := newReplica(t, up.URL, s, blobstore.Conditional, "b", neverPoll)
			getVersions(t, b, http.StatusOK)
			b.Wait()
			setPointer(t, s, 2, tc.body, int64(len(fleetVersions2)), sha256.Sum256([]byte(fleetVersions2)))
			if e := b.fill.adoptVersions(context.Background()); e != nil {
				t.Fatal("a generation that does not check was adopted")
			}
			if _, body := getVersions(t, b, http.StatusOK); body != fleetVersions1 {
				t.Fatalf("b serves %q", body)
			}
			if n := versionsEvents(b, metrics.VersionsRefused); n != 1 {
				t.Errorf("refusals counted: %v, want 1", n)
			}
		})
	}
}

// TestVersionsAdoptedRefreshesInfo: an /info that the adopted /versions
// contradicts (rack's MD5 changed) is refreshed from the upstream before
// it is served, although it was fresh.
func TestVersionsAdoptedRefreshesInfo(t *testing.T) {
	iu, up := fleetUpstream(t)
	s := blobstore.NewMemory()
	b := newReplica(t, up.URL, s, blobstore.Conditional, "b", neverPoll)
	getVersions(t, b, http.StatusOK)
	if _, body := b.do(t, "GET", "/info/rack"); string(body) != fleetInfo1 {
		t.Fatalf("/info/rack: %q", body)
	}
	b.Wait()
	push(iu)
	setPointer(t, s, 2, fleetVersions2, 0, [32]byte{})
	if e := b.fill.adoptVersions(context.Background()); e == nil {
		t.Fatal("generation 2 not adopted")
	}
	if _, body := b.do(t, "GET", "/info/rack"); string(body) != fleetInfo2 {
		t.Fatalf("/info/rack after the adoption: %q, want the pushed version", body)
	}
}

// TestClientAheadRevalidatesUpstream: without a shared tier (and with an
// unconditional one, which has no pointer), a client ahead of the
// replica's fresh copy (a Range from the end of it, or an ETag it does
// not know) makes it revalidate with the upstream before answering, at
// most once a second per key.
func TestClientAheadRevalidatesUpstream(t *testing.T) {
	for _, mode := range []string{"alone", "unconditional"} {
		t.Run(mode, func(t *testing.T) {
			iu, up := fleetUpstream(t)
			s := blobstore.NewMemory()
			tp := newTestProxy(t, up.URL)
			if mode == "unconditional" {
				tp = newReplica(t, up.URL, s, blobstore.Unconditional, "a", 10*time.Millisecond)
			}
			getVersions(t, tp, http.StatusOK)
			tp.do(t, "GET", "/info/rack")
			push(iu)
			resp, info := tp.do(t, "GET", "/info/rack", "If-None-Match", `"`+md5Hex(fleetInfo2)+`"`)
			if resp.StatusCode != http.StatusNotModified {
				t.Fatalf("/info/rack with the pushed ETag: %d %q, want 304", resp.StatusCode, info)
			}
			_, body := getVersions(t, tp, http.StatusPartialContent, "Range", "bytes="+strconv.Itoa(len(fleetVersions1))+"-")
			if body != fleetVersions2[len(fleetVersions1):] {
				t.Fatalf("206 body %q, want the tail", body)
			}
			// Limited: a second client ahead within the second is answered
			// from what the replica holds.
			iu.set("/versions", []byte(fleetVersions2+"rack 3.0.0 0123\n"))
			getVersions(t, tp, http.StatusOK, "Range", "bytes="+strconv.Itoa(len(fleetVersions2))+"-")
			if n := up.count("/versions"); n != 2 {
				t.Errorf("upstream /versions requests: %d, want 2", n)
			}
			tp.Wait()
			if b := storedObject(t, s, versionsPointerKey); b != nil {
				t.Errorf("a pointer was written: %s", b)
			}
		})
	}
}

// TestVersionsSwapConflictAdopts: when another replica swaps the pointer
// first (ErrConflict on the swap), the replica deletes its own generation
// object, which nobody points to, re-reads the pointer and adopts the
// other's generation, newer than its own copy.
func TestVersionsSwapConflictAdopts(t *testing.T) {
	iu, up := fleetUpstream(t)
	mem := blobstore.NewMemory()
	s := &faultyStore{Memory: mem}
	a := newReplica(t, up.URL, s, blobstore.Conditional, "a", neverPoll)
	getVersions(t, a, http.StatusOK)
	a.Wait()
	newest := fleetVersions2 + "rack 3.0.0 0123\n"
	var moved error
	s.putIfMatch = func(ctx context.Context, key string, body []byte, version string) (blobstore.Info, error) {
		if key != versionsPointerKey {
			return mem.PutIfMatch(ctx, key, body, version)
		}
		moved = movePointer(mem, 2, newest, 0, [32]byte{})
		return blobstore.Info{}, blobstore.ErrConflict
	}
	push(iu)
	expire(a)
	getVersions(t, a, http.StatusOK)
	a.Wait()
	if moved != nil {
		t.Fatal(moved)
	}
	if _, body := getVersions(t, a, http.StatusOK); body != newest {
		t.Fatalf("a serves %q, want the generation that won the swap", body)
	}
	if lost := generationKey(2, sha256.Sum256([]byte(fleetVersions2))); storedObject(t, mem, lost) != nil {
		t.Errorf("the generation object of the lost swap is still there: %s", lost)
	}
	if n := versionsEvents(a, metrics.VersionsAdopted); n != 1 {
		t.Errorf("adoptions: %v, want 1", n)
	}
}

// TestVersionsStoreFailures: a store that fails (ErrUnavailable) or stalls
// costs /versions nothing but metrics: fills are served, and a client
// ahead is caught up from the upstream within the class's
// RevalidateTimeout.
func TestVersionsStoreFailures(t *testing.T) {
	iu, up := fleetUpstream(t)
	// Every write fails; every read fails too, after waiting while stalled
	// holds an open channel.
	down := fmt.Errorf("%w: down", blobstore.ErrUnavailable)
	var stalled atomic.Pointer[chan struct{}]
	s := &faultyStore{Memory: blobstore.NewMemory(),
		get: func(ctx context.Context, _ string) (io.ReadCloser, blobstore.Info, error) {
			if stall := stalled.Load(); stall != nil {
				select {
				case <-ctx.Done():
				case <-*stall:
				}
			}
			return nil, blobstore.Info{}, down
		},
		putIfAbsent: func(context.Context, string, io.ReaderAt, int64, blobstore.PutOptions) (blobstore.Info, error) {
			return blobstore.Info{}, down
		},
		putIfMatch: func(context.Context, string, []byte, string) (blobstore.Info, error) { return blobstore.Info{}, down },
	}
	const timeout = time.Second
	tp := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"),
		func(o *Options) { o.TunePolicy(ClassVersions, func(p *Policy) { p.RevalidateTimeout = timeout }) })
	getVersions(t, tp, http.StatusOK)
	tp.Wait()
	stall := make(chan struct{})
	stalled.Store(&stall)
	t.Cleanup(func() { close(stall) }) // before the proxy's cleanup waits for its publication
	push(iu)
	start := time.Now()
	_, body := getVersions(t, tp, http.StatusPartialContent, "Range", "bytes="+strconv.Itoa(len(fleetVersions1))+"-")
	if d := time.Since(start); d > 2*timeout {
		t.Errorf("client ahead answered after %v with the store stalled, want under %v", d, 2*timeout)
	}
	if body != fleetVersions2[len(fleetVersions1):] {
		t.Fatalf("206 body %q, want the tail from the upstream", body)
	}
	if n := sharedRequests(tp, metrics.SharedGet, metrics.SharedError); n < 1 {
		t.Errorf("store errors counted: %v", n)
	}
}

// generations lists the generation objects in s.
func generations(s *blobstore.Memory) []string { return s.Keys(versionsGenPrefix) }

// TestVersionsOldGenerationsDeleted: a replica that moves the pointer
// from generation N to N+1 deletes the generation N replaced once the
// grace has run out (and not before), so that the bucket holds a bounded
// number of generations however many are published; replica b, following
// the pointer meanwhile, ends up with the last one.
func TestVersionsOldGenerationsDeleted(t *testing.T) {
	iu, up := fleetUpstream(t)
	s := blobstore.NewMemory()
	a := newReplica(t, up.URL, s, blobstore.Conditional, "a", neverPoll)
	b := newReplica(t, up.URL, s, blobstore.Conditional, "b", 10*time.Millisecond)
	getVersions(t, b, http.StatusOK)
	b.Wait()                         // b published generation 1
	getVersions(t, b, http.StatusOK) // and follows the pointer again
	body := fleetVersions1
	ctx := context.Background()
	const publications = 12
	for i := range publications {
		body += fmt.Sprintf("rack 1.0.%d %s\n", i, md5Hex(body))
		iu.set("/versions", []byte(body))
		expire(a)
		getVersions(t, a, http.StatusOK)
		a.Wait()
		replaced := pointer(t, s).Replaced
		a.fill.deleteDueGenerations(ctx, a.fill.shared.versions)
		if replaced != "" && storedObject(t, s, replaced) == nil {
			t.Fatalf("publication %d: the generation the pointer replaced was deleted within the grace", i)
		}
	}
	p := pointer(t, s)
	if p.Generation != publications+1 || string(storedObject(t, s, p.Key)) != body { // b's first fill is generation 1
		t.Fatalf("pointer after %d publications: %+v", publications, p)
	}
	if g := generations(s); len(g) > 3 {
		t.Errorf("%d generation objects after %d publications, want at most 3: %q", len(g), publications, g)
	}
	expire(a)
	a.fill.deleteDueGenerations(ctx, a.fill.shared.versions)
	if g := generations(s); len(g) != 2 || !slices.Contains(g, p.Key) || !slices.Contains(g, p.Replaced) {
		t.Errorf("generation objects once the grace has run out: %q, want the pointer's and the one it replaced", g)
	}
	waitFor(t, func() bool { return localVersions(b) == int64(len(body)) })
}

// TestVersionsDoomedCurrentKept: a doomed generation that the pointer
// names (again) is never deleted.
func TestVersionsDoomedCurrentKept(t *testing.T) {
	_, up := fleetUpstream(t)
	s := blobstore.NewMemory()
	a := newReplica(t, up.URL, s, blobstore.Conditional, "a", neverPoll)
	setPointer(t, s, 1, fleetVersions1, 0, [32]byte{})
	v := a.fill.shared.versions
	v.doom(pointer(t, s).Key, time.Time{})
	a.fill.deleteDueGenerations(context.Background(), v)
	if storedObject(t, s, pointer(t, s).Key) == nil {
		t.Fatal("the pointer's generation was deleted")
	}
}

// TestVersionsGoneGenerationRereadsPointer: a replica that finds the
// generation the pointer named gone (deleted once the pointer moved past
// it) reads the pointer again and adopts the generation it names now.
func TestVersionsGoneGenerationRereadsPointer(t *testing.T) {
	_, up := fleetUpstream(t)
	mem := blobstore.NewMemory()
	s := &faultyStore{Memory: mem}
	b := newReplica(t, up.URL, s, blobstore.Conditional, "b", neverPoll)
	getVersions(t, b, http.StatusOK)
	b.Wait()
	setPointer(t, mem, 2, fleetVersions2, 0, [32]byte{})
	gen2 := pointer(t, mem).Key
	newest := fleetVersions2 + "rack 3.0.0 0123\n"
	var moved error
	s.get = func(ctx context.Context, key string) (io.ReadCloser, blobstore.Info, error) {
		if key == gen2 && moved == nil {
			moved = movePointer(mem, 3, newest, 0, [32]byte{})
			_ = mem.Delete(ctx, gen2)
		}
		return mem.Get(ctx, key)
	}
	e := b.fill.adoptVersions(context.Background())
	if moved != nil {
		t.Fatal(moved)
	}
	if e == nil || localVersions(b) != int64(len(newest)) {
		t.Fatalf("generation 3 not adopted after generation 2 was found gone: local size %d", localVersions(b))
	}
}

// TestVersionsRebuildPublishedAndAdopted: after an upstream rebuild (a
// later created_at, a shorter file), the replica that gets the rebuilt
// file publishes it and another one adopts it; a body with an older
// created_at is then neither published nor adopted, however long it is.
func TestVersionsRebuildPublishedAndAdopted(t *testing.T) {
	iu, up := fleetUpstream(t)
	iu.set("/versions", []byte(fleetVersions2))
	s := blobstore.NewMemory()
	a := newReplica(t, up.URL, s, blobstore.Conditional, "a", neverPoll)
	b := newReplica(t, up.URL, s, blobstore.Conditional, "b", 10*time.Millisecond)
	getVersions(t, a, http.StatusOK)
	a.Wait()
	getVersions(t, b, http.StatusOK)

	rebuilt := "created_at: 2024-05-01T00:00:05Z\n---\nrack 1.0.0,2.0.0 " + md5Hex(fleetInfo2) + "\n"
	iu.set("/versions", []byte(rebuilt))
	expire(a)
	if _, body := getVersions(t, a, http.StatusOK); body != rebuilt {
		t.Fatalf("replica a after the rebuild: %q", body)
	}
	a.Wait()
	if p := pointer(t, s); p.Generation != 2 || p.CreatedAt != "2024-05-01T00:00:05Z" || string(storedObject(t, s, p.Key)) != rebuilt {
		t.Fatalf("pointer after the rebuild: %+v", p)
	}
	waitFor(t, func() bool { return versionsEvents(b, metrics.VersionsAdopted) == 1 })
	if _, body := getVersions(t, b, http.StatusOK); body != rebuilt {
		t.Fatalf("replica b serves %q, want the rebuilt file", body)
	}

	// An upstream node still serving the old file, longer than the rebuilt
	// one: a new replica c gets it, and adopts the pointer instead of
	// publishing it.
	older := fleetVersions2 + "rack 3.0.0 " + md5Hex("3") + "\n"
	iu.set("/versions", []byte(older))
	c := newReplica(t, up.URL, s, blobstore.Conditional, "c", neverPoll)
	getVersions(t, c, http.StatusOK)
	c.Wait()
	if p := pointer(t, s); p.Generation != 2 {
		t.Fatalf("a body with an older created_at was published: %+v", p)
	}
	if _, body := getVersions(t, c, http.StatusOK); body != rebuilt {
		t.Errorf("replica c serves %q, want the rebuilt file it adopted", body)
	}
	setPointer(t, s, 3, older, 0, [32]byte{})
	if e := b.fill.adoptVersions(context.Background()); e != nil || localVersions(b) != int64(len(rebuilt)) {
		t.Fatalf("a longer body with an older created_at was adopted: local size %d", localVersions(b))
	}
}

// TestVersionsUnreadablePointerReplaced: a pointer that is not JSON, or
// names no valid generation, is replaced by the next publication (on its
// version), counted and logged as a corrupt object replaced.
func TestVersionsUnreadablePointerReplaced(t *testing.T) {
	for name, junk := range map[string]string{
		"not json": `{"generation": 7, "key": "versions/gen/7-`,
		"invalid":  `{"generation": 7, "key": "elsewhere", "size": 999999999, "sha256": "00"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, up := fleetUpstream(t)
			s := blobstore.NewMemory()
			if _, err := s.PutIfAbsent(context.Background(), versionsPointerKey, strings.NewReader(junk), int64(len(junk)), blobstore.PutOptions{}); err != nil {
				t.Fatal(err)
			}
			a := newReplica(t, up.URL, s, blobstore.Conditional, "a", neverPoll)
			getVersions(t, a, http.StatusOK)
			a.Wait()
			if p := pointer(t, s); p.Generation != 1 || !p.valid() || string(storedObject(t, s, p.Key)) != fleetVersions1 {
				t.Fatalf("pointer after the publication: %+v", p)
			}
			if n := testutil.ToFloat64(a.m.SharedStore.CorruptReplaced); n != 1 {
				t.Errorf("corrupt objects replaced: %v, want 1", n)
			}
		})
	}
}
