package prefetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"
)

// fakeFetcher answers from a map of path to body; a path missing from it
// fails with err. It records the paths asked.
type fakeFetcher struct {
	// bodies maps the paths that succeed to their bodies.
	bodies map[string]string
	// hits lists the paths answered as cache hits.
	hits map[string]bool
	// err is the error of the other paths.
	err error
	// mu guards asked.
	mu sync.Mutex
	// asked lists the paths fetched, in order.
	asked []string
}

// Fetch answers path from f.bodies.
func (f *fakeFetcher) Fetch(_ context.Context, path string) (Result, error) {
	f.mu.Lock()
	f.asked = append(f.asked, path)
	f.mu.Unlock()
	body, ok := f.bodies[path]
	if !ok {
		return Result{}, f.err
	}
	r := Result{Hit: f.hits[path], Size: int64(len(body)), SHA256: sha256.Sum256([]byte(body))}
	if isInfo(path) {
		r.Body = []byte(body)
	}
	return r, nil
}

// sumHex is the hex SHA-256 of s.
func sumHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestRunCountsAndChecks runs a plan against a fake fetcher: gems cached
// and fetched, index files counted apart, a CHECKSUMS mismatch and a
// conflict failing, skipped gems listed first.
func TestRunCountsAndChecks(t *testing.T) {
	f := &fakeFetcher{bodies: map[string]string{
		"/versions": "v", "/names": "n", "/info/a": "ia", "/info/b": "ib",
		"/gems/a-1.gem": "gem a", "/gems/b-1.gem": "gem b!", "/gems/b-2.gem": "gem b2",
	}, hits: map[string]bool{"/gems/a-1.gem": true}}
	pl := Plan{
		Gems: []*Target{
			{File: "a-1.gem", Name: "a", SHA256: sumHex("gem a"), SumFrom: "x.lock"},
			{File: "b-1.gem", Name: "b"},
			{File: "b-2.gem", Name: "b", SHA256: sumHex("other"), SumFrom: "x.lock"},
			{File: "b-3.gem", Name: "b", Conflict: "CHECKSUMS disagree"},
		},
		Skipped: []Skip{{File: "c-1.gem", Reason: "elsewhere"}},
	}
	var out bytes.Buffer
	sum := Run(t.Context(), pl, Options{Fetcher: f, Jobs: 1, Out: newProgress(&out, 0, time.Now)})
	want := Summary{Cached: 1, Fetched: 1, Bytes: int64(len("gem a") + len("gem b!")), Index: 4, Failed: 2, Skipped: 1, Elapsed: sum.Elapsed}
	if sum != want {
		t.Errorf("summary %+v\nwant    %+v", sum, want)
	}
	wantOut := "c-1.gem: skipped: elsewhere\n" +
		"b-2.gem: sha256 " + sumHex("gem b2") + ", but the CHECKSUMS section of x.lock says " + sumHex("other") + "\n" +
		"b-3.gem: CHECKSUMS disagree\n"
	if out.String() != wantOut {
		t.Errorf("output %q\nwant %q", out.String(), wantOut)
	}
	for _, p := range f.asked {
		if p == "/gems/b-3.gem" {
			t.Error("a gem with conflicting checksums was fetched")
		}
	}
	if line := sum.String(); !regexp.MustCompile(`^prefetched 2 gems \(1 already cached, 1 fetched, 11 bytes\) and 4 index files in \S+; 2 failed, 1 skipped$`).MatchString(line) {
		t.Errorf("summary line %q", line)
	}
}

// TestRunFollowsInfoDependencies checks the /info files of the
// dependencies of every version are fetched, round after round, each once
// however often and circularly they are named.
func TestRunFollowsInfoDependencies(t *testing.T) {
	f := &fakeFetcher{bodies: map[string]string{
		"/versions": "v", "/names": "n", "/gems/a-1.gem": "gem a",
		"/info/a": "---\n0.9 c:>= 0,a:>= 0|checksum:x\n1.0 b:>= 0|\n",
		"/info/b": "---\n1.0 c:>= 0|\n",
		"/info/c": "---\n1.0 a:~> 1,d:>= 0|\n",
	}, err: errors.New("HTTP 404 Not Found")}
	pl := Plan{Gems: []*Target{{File: "a-1.gem", Name: "a"}}}
	var out bytes.Buffer
	sum := Run(t.Context(), pl, Options{Fetcher: f, Jobs: 2, Out: newProgress(&out, 0, time.Now)})
	if sum.Index != 5 || sum.Failed != 1 || sum.Fetched != 1 {
		t.Errorf("summary %+v, want 5 index files, 1 gem, 1 failure", sum)
	}
	if want := "/info/d: HTTP 404 Not Found\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	asked := make(map[string]int)
	for _, p := range f.asked {
		asked[p]++
	}
	for _, p := range []string{"/info/a", "/info/b", "/info/c", "/info/d"} {
		if asked[p] != 1 {
			t.Errorf("%s fetched %d times, want once", p, asked[p])
		}
	}
}

// TestRunGroupsFailuresByCause checks that many files failing for one
// reason (a server that is down) make one line with a count and examples,
// and that other causes keep lines of their own.
func TestRunGroupsFailuresByCause(t *testing.T) {
	f := &fakeFetcher{bodies: map[string]string{"/info/g0": "i"}, err: errors.New("request failed: connection refused")}
	var pl Plan
	for i := range 35 {
		pl.Gems = append(pl.Gems, &Target{File: fmt.Sprintf("g%d-1.gem", i), Name: fmt.Sprintf("g%d", i)})
	}
	pl.Gems = append(pl.Gems, &Target{File: "odd-1.gem", Name: "g0", Conflict: "CHECKSUMS disagree"})
	var out bytes.Buffer
	sum := Run(t.Context(), pl, Options{Fetcher: f, Jobs: 4, Out: newProgress(&out, 0, time.Now)})
	if sum.Failed != 2+35+34+1 || sum.Index != 1 {
		t.Errorf("summary %+v", sum)
	}
	// The examples are the first three failures, in an order the four
	// concurrent fetches decide.
	want := regexp.MustCompile(`^71 files failed: request failed: connection refused \([^ ,]+, [^ ,]+, [^ ,]+ and 68 more\)\n` +
		`odd-1\.gem: CHECKSUMS disagree\n$`)
	if !want.MatchString(out.String()) {
		t.Errorf("output %q\nwant %s", out.String(), want)
	}
}

// TestRunInterrupted checks nothing starts once the context is done and
// every file counts as not attempted.
func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f := &fakeFetcher{}
	pl := Plan{Gems: []*Target{{File: "a-1.gem", Name: "a"}, {File: "b-1.gem", Name: "b"}, {File: "c-1.gem", Name: "c"}}}
	var out bytes.Buffer
	sum := Run(ctx, pl, Options{Fetcher: f, Jobs: 2, Out: newProgress(&out, 0, time.Now)})
	if sum.NotAttempted != 8 || sum.Failed != 0 || out.Len() != 0 || len(f.asked) != 0 {
		t.Errorf("summary %+v, output %q, fetched %v", sum, out.String(), f.asked)
	}
}
