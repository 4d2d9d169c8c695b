package cache

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

// readN reads exactly n bytes from r.
func readN(t testing.TB, r io.Reader, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

func TestReaderOutlivesItsEntry(t *testing.T) {
	cases := map[string]func(t *testing.T, s *Store, key string){
		"replace": func(t *testing.T, s *Store, key string) {
			putKey(t, s, key, []byte("new body"), CommitOptions{Gzip: true})
		},
		"delete": func(t *testing.T, s *Store, key string) {
			if err := s.Delete(key); err != nil {
				t.Fatal(err)
			}
		},
		"purge": func(t *testing.T, s *Store, key string) {
			if n, err := s.Purge("/gems/"); err != nil || n != 1 {
				t.Fatalf("Purge = %d, %v", n, err)
			}
		},
		"invalidate immutable": func(t *testing.T, s *Store, key string) {
			if ok, err := s.Invalidate(key); err != nil || !ok {
				t.Fatalf("Invalidate = %v, %v", ok, err)
			}
		},
	}
	for name, op := range cases {
		t.Run(name, func(t *testing.T) {
			s := newTestStore(t, Options{})
			const key = "/gems/big-1.0.gem"
			body := testBody(2*ChunkSize+ChunkSize/2, 1)
			e := testEntry(key, s.now())
			e.Immutable = true
			old := put(t, s, e, body, CommitOptions{Gzip: true})
			other := putKey(t, s, "/info/big", []byte("unrelated"), CommitOptions{})

			r1, err := s.Open(old, false)
			if err != nil {
				t.Fatal(err)
			}
			r2, err := s.Open(old, false)
			if err != nil {
				t.Fatal(err)
			}
			rg, err := s.Open(old, true)
			if err != nil {
				t.Fatal(err)
			}
			head := readN(t, r1, ChunkSize+10)

			op(t, s, key)
			if cur := s.Peek(key); cur != nil && cur.ID == old.ID {
				t.Fatal("operation did not remove the entry")
			}
			if n := chunksOf(t, s, old.ID); n != wantChunks(len(body)) {
				t.Fatalf("old body has %d chunks while read, want %d", n, wantChunks(len(body)))
			}

			rest, err := io.ReadAll(r1)
			if err != nil || !bytes.Equal(append(head, rest...), body) {
				t.Fatalf("open reader did not read the old body: %d+%d bytes, %v", len(head), len(rest), err)
			}
			r1.Close()
			if n := chunksOf(t, s, old.ID); n == 0 {
				t.Fatal("body deleted while a second reader still holds it")
			}
			if got, err := io.ReadAll(r2); err != nil || !bytes.Equal(got, body) {
				t.Fatalf("second reader: %d bytes, %v", len(got), err)
			}
			r2.Close()
			r2.Close() // idempotent
			if n := chunksOf(t, s, old.ID); n != 0 {
				t.Fatalf("old body has %d chunks after its last reader closed", n)
			}
			if n := chunksOf(t, s, old.GzipID); n == 0 {
				t.Fatal("gzip body deleted under its reader")
			}
			gz, err := io.ReadAll(rg)
			if err != nil || !bytes.Equal(gunzip(t, gz), body) {
				t.Fatalf("gzip reader: %v", err)
			}
			rg.Close()
			if n := chunksOf(t, s, old.GzipID); n != 0 {
				t.Fatalf("old gzip body has %d chunks after its reader closed", n)
			}
			if got := s.Peek(other.Key); got != other || !bytes.Equal(readBodyOf(t, s, got, false), []byte("unrelated")) {
				t.Fatal("unrelated entry disturbed")
			}
			if _, err := s.Open(old, false); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Open of a superseded body = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestReaderWithoutReplacementFreesNothing(t *testing.T) {
	s := newTestStore(t, Options{})
	e := putKey(t, s, "/k", testBody(ChunkSize+1, 1), CommitOptions{})
	r, err := s.Open(e, false)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if n := chunksOf(t, s, e.ID); n != 2 {
		t.Fatalf("closing a reader of a current body left %d chunks", n)
	}
}

func TestLimitOutOfRange(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(ChunkSize+100, 1)
	e := putKey(t, s, "/k", body, CommitOptions{})
	for _, src := range []*Entry{e, putKey(t, s, "/small", body[:100], CommitOptions{})} {
		src := src
		if src.Key == "/small" {
			src = s.Lookup("/small")
		}
		r, err := s.Open(src, false)
		if err != nil {
			t.Fatal(err)
		}
		r.Limit(src.Size-10, src.Size+1000)
		got, err := io.ReadAll(r)
		r.Close()
		want := body[src.Size-10 : src.Size]
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: Limit past the end read %d bytes, %v; want the last 10", src.Key, len(got), err)
		}
	}
}

func TestSweepEvictsLeastRecentlyUsed(t *testing.T) {
	const size = 1000
	// Every entry takes its body, its metadata and EntryOverhead.
	e := testEntry("/a", time.Time{})
	per := size + e.footprint()
	cases := []struct {
		name    string
		cap     float64  // MaxSize in entries; negative: no cap
		touch   []string // looked up after all were stored, in order
		reading string   // key with an open Reader
		evicted []string
	}{
		{name: "under cap", cap: 4, evicted: nil},
		{name: "oldest first", cap: 3.5, evicted: []string{"/a"}},
		{name: "lookup refreshes", cap: 3.5, touch: []string{"/a"}, evicted: []string{"/b"}},
		{name: "reader protects", cap: 3.5, touch: []string{"/a"}, reading: "/b", evicted: []string{"/c"}},
		{name: "several", cap: 2.1, touch: []string{"/b", "/a"}, evicted: []string{"/c", "/d", "/b"}},
		{name: "no cap", cap: -1, evicted: nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			maxSize := int64(-1)
			if tc.cap >= 0 {
				maxSize = int64(tc.cap * float64(per))
			}
			s := newTestStore(t, Options{MaxSize: maxSize, MemoryBodyLimit: -1})
			clock := newTestClock()
			s.now = clock.Now
			all := map[string]*Entry{}
			for i, k := range []string{"/a", "/b", "/c", "/d"} {
				clock.Advance(time.Second)
				all[k] = putKey(t, s, k, testBody(size, uint64(i)), CommitOptions{})
			}
			for _, k := range tc.touch {
				clock.Advance(time.Second)
				s.Lookup(k)
			}
			if tc.reading != "" {
				r, err := s.Open(s.Peek(tc.reading), false)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
			}
			n, err := s.Sweep()
			if err != nil || n != len(tc.evicted) {
				t.Fatalf("Sweep = %d, %v; want %d", n, err, len(tc.evicted))
			}
			gone := map[string]bool{}
			for _, k := range tc.evicted {
				gone[k] = true
			}
			for k, e := range all {
				if got := s.Peek(k) == nil; got != gone[k] {
					t.Errorf("%s evicted = %v, want %v", k, got, gone[k])
				}
				if gone[k] && chunksOf(t, s, e.ID) != 0 {
					t.Errorf("%s evicted but its chunks remain", k)
				}
			}
			if st := s.Stats(); st.Evictions != int64(len(tc.evicted)) || st.Bytes != per*int64(4-len(tc.evicted)) {
				t.Errorf("Stats: evictions %d, bytes %d", st.Evictions, st.Bytes)
			}
		})
	}
}

func TestSweepSkipsReaderThenEvictsItAfterClose(t *testing.T) {
	s := newTestStore(t, Options{MaxSize: 500, MemoryBodyLimit: -1})
	clock := newTestClock()
	s.now = clock.Now
	a := putKey(t, s, "/a", testBody(1000, 1), CommitOptions{})
	clock.Advance(time.Second)
	putKey(t, s, "/b", testBody(1000, 2), CommitOptions{})
	r, err := s.Open(a, false)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Sweep(); err != nil || n != 1 || s.Peek("/a") == nil || s.Peek("/b") != nil {
		t.Fatalf("Sweep = %d, %v; want /b evicted, /a kept under its reader", n, err)
	}
	if n, err := s.Sweep(); err != nil || n != 0 || s.Peek("/a") == nil {
		t.Fatalf("Sweep with only a read entry to evict = %d, %v", n, err)
	}
	if got, err := io.ReadAll(r); err != nil || len(got) != 1000 {
		t.Fatalf("reader: %d, %v", len(got), err)
	}
	r.Close()
	if n, err := s.Sweep(); err != nil || n != 1 || s.Peek("/a") != nil || chunksOf(t, s, a.ID) != 0 {
		t.Fatalf("Sweep after Close = %d, %v; want /a evicted", n, err)
	}
}

// TestReplaceWhileReading replaces a key over and over while readers look it
// up and read it: every Reader that Open hands out must read a whole body
// matching its entry, and Open may only refuse with ErrNotFound.
func TestReplaceWhileReading(t *testing.T) {
	s := newTestStore(t, Options{MemoryBodyLimit: -1})
	const key = "/versions"
	putKey(t, s, key, testBody(ChunkSize+1, 0), CommitOptions{})
	const writers, rounds, readers = 2, 15, 4
	var done sync.WaitGroup
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, readers+writers)
	for w := range writers {
		done.Add(1)
		go func() {
			defer done.Done()
			for i := range rounds {
				body := testBody(ChunkSize+1+w*rounds+i, uint64(w*rounds+i))
				if _, err := s.Commit(stage(t, s, body), testEntry(key, time.Now()), CommitOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				e := s.Lookup(key)
				r, err := s.Open(e, false)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(r)
				r.Close()
				if err != nil {
					errs <- fmt.Errorf("reader of body %d: %w", e.ID, err)
					return
				}
				if sha256.Sum256(b) != e.SHA256 {
					errs <- fmt.Errorf("body %d read with wrong bytes", e.ID)
					return
				}
			}
		}()
	}
	done.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestConcurrentWritesKeepIndexCoherent races every kind of write on a few
// keys; the cleanup check then compares the index with the file.
func TestConcurrentWritesKeepIndexCoherent(t *testing.T) {
	s := newTestStore(t, Options{MaxSize: 20_000})
	keys := []string{"/a", "/b", "/c"}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				key := keys[(g+i)%len(keys)]
				var err error
				switch (g + i) % 7 {
				case 0, 1, 2:
					_, err = s.Commit(stage(t, s, testBody(1000+i, uint64(g))), testEntry(key, time.Now()),
						CommitOptions{Gzip: i%2 == 0, Appendable: true})
				case 3:
					err = s.Delete(key)
				case 4:
					if e := s.Peek(key); e != nil {
						next := *e
						next.FreshUntil = time.Now().Add(time.Minute)
						_, err = s.Renew(e, next)
					}
				case 5:
					if e := s.Lookup(key); e != nil {
						_, err = s.Append(e, []byte("tail\n"), keepMeta(e))
					}
					_, _ = s.Invalidate(key)
				case 6:
					_, err = s.Sweep()
				}
				if err != nil && !errors.Is(err, ErrConflict) {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}

func TestWriteToCopiesExactRanges(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(3*ChunkSize+1234, 7)
	e := putKey(t, s, "/big", body, CommitOptions{})
	small := putKey(t, s, "/small", body[:1000], CommitOptions{})
	small = s.Lookup(small.Key) // with its body in memory
	tests := []struct {
		e          *Entry
		start, end int64
	}{
		{e, 0, e.Size},
		{e, 1, e.Size},
		{e, ChunkSize - 1, ChunkSize + 1},
		{e, ChunkSize, 2 * ChunkSize},
		{e, e.Size - 5, e.Size},
		{small, 10, 900},
	}
	for _, tt := range tests {
		r, err := s.Open(tt.e, false)
		if err != nil {
			t.Fatal(err)
		}
		r.Limit(tt.start, tt.end)
		var out bytes.Buffer
		n, err := r.WriteTo(&out)
		r.Close()
		if err != nil || n != tt.end-tt.start || !bytes.Equal(out.Bytes(), body[tt.start:tt.end]) {
			t.Fatalf("%s [%d,%d): wrote %d bytes, %v", tt.e.Key, tt.start, tt.end, n, err)
		}
	}
}

func TestMemoryClassesKeepLargeBodiesInMemory(t *testing.T) {
	s := newTestStore(t, Options{MemoryClasses: []string{"versions"}, MemoryBudget: 4 << 20})
	body := testBody(ChunkSize*3, 3)
	put(t, s, Entry{Key: "/versions", Class: "versions", Status: 200}, body, CommitOptions{})
	put(t, s, Entry{Key: "/gems/x.gem", Class: "gem", Status: 200}, body, CommitOptions{})
	if e := s.Lookup("/versions"); e.Body == nil || !bytes.Equal(e.Body, body) {
		t.Fatal("a large body of a memory class was not kept in memory")
	}
	if e := s.Lookup("/gems/x.gem"); e.Body != nil {
		t.Fatal("a large body of another class was kept in memory")
	}
	// The budget still bounds memory classes.
	put(t, s, Entry{Key: "/versions2", Class: "versions", Status: 200}, testBody(5<<20, 4), CommitOptions{})
	if e := s.Lookup("/versions2"); e.Body != nil {
		t.Fatal("a body over the memory budget was kept in memory")
	}
}
