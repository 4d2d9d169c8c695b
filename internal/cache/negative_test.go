package cache

import (
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// negativeTTL is the lifetime of the 404 entries of these tests, the
// proxy's default negative_ttl.
const negativeTTL = time.Minute

// putNotFound stores a 404 for key as the proxy's storeNotFound does.
func putNotFound(t testing.TB, s *Store, key string) *Entry {
	t.Helper()
	now := s.now()
	e := Entry{
		Key: key, Class: "info", Status: 404, StoredAt: now, FreshUntil: now.Add(negativeTTL),
		Header: []Field{{Name: "Content-Type", Value: "text/plain; charset=utf-8"}, {Name: "Cache-Control", Value: "max-age=60, public"}},
	}
	return put(t, s, e, []byte("This gem could not be found\n"), CommitOptions{})
}

// fileSize is the size of s's bbolt file.
func fileSize(t testing.TB, s *Store) int64 {
	t.Helper()
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestNegativeEntriesBounded stores rounds of distinct 404s: their number
// never exceeds MaxNegativeEntries (the oldest go first), a sweep after
// they expired removes them all and gives back their bytes, entries with a
// body stay even when expired, and the second round reuses the file's free
// pages instead of growing it.
func TestNegativeEntriesBounded(t *testing.T) {
	const limit, perRound = 50, 400
	s := newTestStore(t, Options{MaxNegativeEntries: limit})
	clock := newTestClock()
	s.now = clock.Now
	putKey(t, s, "/info/rack", textBody(3000, 1), CommitOptions{Gzip: true}) // mutable: expires within the hour
	gem := testEntry("/gems/rack-1.0.gem", s.now())
	gem.Immutable, gem.FreshUntil = true, time.Time{}
	put(t, s, gem, testBody(5000, 2), CommitOptions{})
	baseline := s.usedBytes.Load()

	var sizes []int64
	for round := range 2 {
		for i := range perRound {
			clock.Advance(time.Millisecond)
			putNotFound(t, s, fmt.Sprintf("/info/unknown-%d-%d", round, i))
			if n := s.negativeCount(); n > limit {
				t.Fatalf("round %d: %d negative entries after %d stored, cap %d", round, n, i+1, limit)
			}
		}
		// The newest survive the cap; the oldest went first.
		if s.Peek(fmt.Sprintf("/info/unknown-%d-%d", round, perRound-1)) == nil {
			t.Fatalf("round %d: the newest negative entry was removed", round)
		}
		if s.Peek(fmt.Sprintf("/info/unknown-%d-%d", round, perRound-limit-1)) != nil {
			t.Fatalf("round %d: a negative entry older than the newest %d survived", round, limit)
		}
		clock.Advance(2 * time.Hour) // every 404 and /info/rack expired
		if _, err := s.Sweep(); err != nil {
			t.Fatal(err)
		}
		if n := s.negativeCount(); n != 0 {
			t.Fatalf("round %d: %d negative entries after expiry and sweep", round, n)
		}
		if got := s.usedBytes.Load(); got != baseline {
			t.Fatalf("round %d: %d bytes used after the sweep, %d before the 404s", round, got, baseline)
		}
		if s.Peek("/info/rack") == nil || s.Peek(gem.Key) == nil {
			t.Fatalf("round %d: an entry with a body was swept", round)
		}
		sizes = append(sizes, fileSize(t, s))
	}
	if sizes[1] > sizes[0] {
		t.Fatalf("file grew from %d to %d bytes in the second round: free pages not reused", sizes[0], sizes[1])
	}
}

// TestSweepKeepsFreshNegatives checks that only expired negative entries
// are swept: a fresh one stays, an invalidated one goes.
func TestSweepKeepsFreshNegatives(t *testing.T) {
	s := newTestStore(t, Options{})
	clock := newTestClock()
	s.now = clock.Now
	putNotFound(t, s, "/info/old")
	putNotFound(t, s, "/info/invalidated")
	clock.Advance(negativeTTL / 2)
	putNotFound(t, s, "/info/young")
	if _, err := s.Invalidate("/info/invalidated"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(negativeTTL / 2)
	if _, err := s.Sweep(); err != nil {
		t.Fatal(err)
	}
	if s.Peek("/info/old") != nil || s.Peek("/info/invalidated") != nil || s.Peek("/info/young") == nil {
		t.Fatalf("after sweep: old %v, invalidated %v, young %v; want only young",
			s.Peek("/info/old") != nil, s.Peek("/info/invalidated") != nil, s.Peek("/info/young") != nil)
	}
}

// TestDeleteUnchangedKeepsReplacement checks that an entry chosen for
// removal (expired, or among the oldest negatives) but replaced before the
// removal stays: the sweeper never deletes what a fill just stored.
func TestDeleteUnchangedKeepsReplacement(t *testing.T) {
	s := newTestStore(t, Options{})
	chosen := putNotFound(t, s, "/gems/rack-1.0.gem")
	putKey(t, s, "/gems/rack-1.0.gem", testBody(100, 1), CommitOptions{})
	if n, err := s.deleteUnchanged([]*Entry{chosen}); err != nil || n != 0 {
		t.Fatalf("deleteUnchanged = %d, %v; want 0", n, err)
	}
	if e := s.Peek("/gems/rack-1.0.gem"); e == nil || e.Status != 200 {
		t.Fatalf("replacement removed: %+v", e)
	}
}

// TestMaxSizeCountsEntryOverhead checks that entries with tiny or empty
// bodies count toward MaxSize: without EntryOverhead, no number of them
// would ever be evicted.
func TestMaxSizeCountsEntryOverhead(t *testing.T) {
	const n, maxEntries = 40, 10
	s := newTestStore(t, Options{MaxSize: maxEntries * EntryOverhead * 2, MaxNegativeEntries: -1})
	for i := range n {
		putKey(t, s, fmt.Sprintf("/api/v1/gems/g%d.json", i), nil, CommitOptions{})
	}
	evicted, err := s.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if evicted == 0 || s.usedBytes.Load() > s.opts.MaxSize {
		t.Fatalf("Sweep evicted %d of %d empty entries; %d bytes used, cap %d", evicted, n, s.usedBytes.Load(), s.opts.MaxSize)
	}
}

// footprintFigures is the heap and the cache file at one step of
// BenchmarkNegativeChurn.
type footprintFigures struct {
	heapAlloc, heapInuse, file int64
	freePages                  int
}

// measure collects garbage and returns s's footprint figures.
func measure(b *testing.B, s *Store) footprintFigures {
	b.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := s.db.Stats()
	return footprintFigures{heapAlloc: int64(ms.HeapAlloc), heapInuse: int64(ms.HeapInuse),
		file: fileSize(b, s), freePages: st.FreePageN + st.PendingPageN}
}

// String renders f in MiB.
func (f footprintFigures) String() string {
	const mib = 1 << 20
	return fmt.Sprintf("heap alloc %.1f MiB, heap in use %.1f MiB, file %.1f MiB (%d free pages)",
		float64(f.heapAlloc)/mib, float64(f.heapInuse)/mib, float64(f.file)/mib, f.freePages)
}

// BenchmarkNegativeChurn stores two rounds of 100,000 distinct 404s (the
// default MaxNegativeEntries keeps at most 10,000), lets them expire and
// sweeps, logging the heap and the file size at each step. Run it with
// -benchtime 1x; it takes one to two minutes.
func BenchmarkNegativeChurn(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		s := newTestStore(b, Options{})
		s.db.NoSync = true // the figures do not depend on fsync; the run time does
		clock := newTestClock()
		s.now = clock.Now
		b.Logf("empty: %v", measure(b, s))
		for round := range 2 {
			for i := range n {
				putNotFound(b, s, fmt.Sprintf("/info/unknown-%d-%d", round, i))
			}
			b.Logf("round %d, after %d 404s: %v, %d entries", round+1, n, measure(b, s), len(s.items))
			clock.Advance(negativeTTL + time.Second)
			if _, err := s.Sweep(); err != nil {
				b.Fatal(err)
			}
			b.Logf("round %d, expired and swept: %v, %d entries", round+1, measure(b, s), len(s.items))
		}
	}
}
