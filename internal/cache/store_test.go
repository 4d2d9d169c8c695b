package cache

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// withFile runs fn in a write transaction on the closed store file in dir.
func withFile(t testing.TB, dir string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o640, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{MemoryBodyLimit: -1})
	clock := newTestClock()
	s.now = clock.Now
	keys := []string{"/versions", "/gems/a-1.0.gem", "/info/missing", "/api/v1/gems.txt"}
	bodies := map[string][]byte{
		"/versions":        textBody(40_000, 1),
		"/gems/a-1.0.gem":  testBody(3000, 2),
		"/info/missing":    {},
		"/api/v1/gems.txt": []byte("x"),
	}
	lastAccess := map[string]int64{}
	for _, k := range keys {
		clock.Advance(time.Second)
		putKey(t, s, k, bodies[k], CommitOptions{Gzip: k == "/versions", Appendable: k == "/versions"})
		lastAccess[k] = clock.Now().Unix()
	}
	// Hits and access times: /versions is looked up last, three times.
	for _, k := range []string{"/gems/a-1.0.gem", "/versions", "/versions", "/versions"} {
		clock.Advance(time.Minute)
		s.Lookup(k)
		lastAccess[k] = clock.Now().Unix()
	}
	before := map[string]*Entry{}
	for _, k := range keys {
		before[k] = s.Peek(k)
	}

	// Litter left by a crashed process: orphan chunks, a malformed chunk key
	// and staging files.
	checkStore(t, s)
	s.Close()
	withFile(t, dir, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketChunks)
		seq := c.Sequence()
		for _, k := range [][]byte{chunkKey(seq+100, 0), chunkKey(seq+100, 1), chunkKey(seq+1, 0), []byte("junk")} {
			if err := c.Put(k, []byte("orphan")); err != nil {
				return err
			}
		}
		return nil
	})
	for _, name := range []string{"fill-123", "fill-456"} {
		if err := os.WriteFile(filepath.Join(dir, "tmp", name), []byte("stale"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	s = openTestStore(t, dir, Options{MemoryBodyLimit: -1})
	s.now = clock.Now
	for _, k := range keys {
		e, want := s.Peek(k), before[k]
		if e == nil || e.ID != want.ID || e.GzipID != want.GzipID || e.SHA256 != want.SHA256 ||
			!e.StoredAt.Equal(want.StoredAt) || !e.FreshUntil.Equal(want.FreshUntil) || e.Class != want.Class ||
			e.HeaderValue("Content-Type") != want.HeaderValue("Content-Type") || !bytes.Equal(e.HashState, want.HashState) {
			t.Fatalf("%s after reopen: %+v, want %+v", k, e, want)
		}
		if !bytes.Equal(readBodyOf(t, s, e, false), bodies[k]) {
			t.Fatalf("%s body changed", k)
		}
		s.mu.RLock()
		last := s.items[k].lastAccess.Load()
		s.mu.RUnlock()
		if last != lastAccess[k] {
			t.Errorf("%s: last access after reopen %d, want %d", k, last, lastAccess[k])
		}
	}
	if files := tmpFiles(t, s); len(files) != 0 {
		t.Fatalf("staging files survived Open: %v", files)
	}
	want := wantChunks(len(bodies["/versions"])) + chunksOf(t, s, before["/versions"].GzipID) + 1 + 1
	if n := totalChunks(t, s); n != want {
		t.Fatalf("%d chunks after Open, want %d (orphans not collected)", n, want)
	}
	if got := s.Stats().Classes["test"].Hits; got != 4 {
		t.Fatalf("hits after reopen = %d, want 4", got)
	}
	// Access times drive eviction after a restart: evicting 5% takes the
	// two entries never looked up and then the gem, never /versions,
	// although it was stored first.
	s.opts.MaxSize = s.usedBytes.Load() - 1
	if n, err := s.Sweep(); err != nil || n != 3 {
		t.Fatalf("Sweep after reopen = %d, %v; want 3", n, err)
	}
	if s.Peek("/versions") == nil {
		t.Fatal("most recently used entry evicted")
	}
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{})
	// A fill in progress in the first process, staged in DATA/tmp.
	st := stage(t, s, testBody(stagingMemoryLimit+1, 1))
	staged := tmpFiles(t, s)

	start := time.Now()
	second, err := Open(dir, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		second.Close()
		t.Fatal("second Open of a locked directory succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	// bbolt gives up one 50ms retry before the timeout.
	if d := time.Since(start); d < 40*time.Millisecond || d > 5*time.Second {
		t.Fatalf("second Open gave up after %v, want about LockTimeout", d)
	}
	if got := tmpFiles(t, s); len(got) != 1 || got[0] != staged[0] {
		t.Fatalf("failed Open touched the running process's staging files: %v, had %v", got, staged)
	}
	if _, err := s.Commit(st, testEntry("/k", s.now()), CommitOptions{}); err != nil {
		t.Fatalf("Commit after a failed second Open: %v", err)
	}
}

func TestOpenReadOnly(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{})
	e := putKey(t, s, "/k", []byte("body"), CommitOptions{})
	s = reopen(t, s, Options{})
	s.Close()
	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if got := ro.Peek("/k"); got == nil || got.ID != e.ID || !bytes.Equal(readBodyOf(t, ro, got, false), []byte("body")) {
		t.Fatalf("read-only Peek = %+v", got)
	}
	if err := ro.Writable(); err == nil {
		t.Fatal("read-only store says it is writable")
	}
	if p, err := ro.Verify(); err != nil || len(p) != 0 {
		t.Fatalf("Verify = %v, %v", p, err)
	}
}

func TestVerifyDetects(t *testing.T) {
	cases := []struct {
		name   string
		damage func(tx *bolt.Tx, e *Entry) error
		reason string
	}{
		{name: "corrupted chunk byte", reason: "MD5", damage: func(tx *bolt.Tx, e *Entry) error {
			b := tx.Bucket(bucketChunks)
			v := append([]byte(nil), b.Get(chunkKey(e.ID, 1))...)
			v[100] ^= 1
			return b.Put(chunkKey(e.ID, 1), v)
		}},
		{name: "missing chunk", reason: "unreadable", damage: func(tx *bolt.Tx, e *Entry) error {
			return tx.Bucket(bucketChunks).Delete(chunkKey(e.ID, 1))
		}},
		{name: "short last chunk", reason: "unreadable", damage: func(tx *bolt.Tx, e *Entry) error {
			b := tx.Bucket(bucketChunks)
			v := b.Get(chunkKey(e.ID, 2))
			return b.Put(chunkKey(e.ID, 2), append([]byte(nil), v[:len(v)-1]...))
		}},
		{name: "missing gzip chunk", reason: "gzip", damage: func(tx *bolt.Tx, e *Entry) error {
			return tx.Bucket(bucketChunks).Delete(chunkKey(e.GzipID, 0))
		}},
		{name: "undecodable metadata", reason: "corrupt entry", damage: func(tx *bolt.Tx, e *Entry) error {
			return tx.Bucket(bucketEntries).Put([]byte(e.Key), []byte{entryVersion, 1, 2, 3})
		}},
	}
	for _, tc := range cases {
		for _, viaFile := range []bool{false, true} {
			name := tc.name
			if viaFile {
				name += " after reopen"
			}
			t.Run(name, func(t *testing.T) {
				dir := t.TempDir()
				s := openTestStore(t, dir, Options{})
				e := putKey(t, s, "/bad", testBody(2*ChunkSize+500, 1), CommitOptions{Gzip: true})
				putKey(t, s, "/good", []byte("fine"), CommitOptions{Gzip: true})
				if viaFile {
					s.Close()
					withFile(t, dir, func(tx *bolt.Tx) error { return tc.damage(tx, e) })
					s = openTestStore(t, dir, Options{})
				} else if err := s.db.Update(func(tx *bolt.Tx) error { return tc.damage(tx, e) }); err != nil {
					t.Fatal(err)
				}
				problems, err := s.Verify()
				if err != nil {
					t.Fatal(err)
				}
				if len(problems) != 1 || problems[0].Key != "/bad" || !strings.Contains(problems[0].Reason, tc.reason) {
					t.Fatalf("Verify = %+v, want one problem with /bad mentioning %q", problems, tc.reason)
				}
				// Repair, so the cleanup check passes: Delete removes even an
				// undecodable record.
				if err := s.Delete("/bad"); err != nil {
					t.Fatal(err)
				}
				if p, err := s.Verify(); err != nil || len(p) != 0 {
					t.Fatalf("after Delete: %+v, %v", p, err)
				}
			})
		}
	}
}

func TestSchemaMismatch(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{})
	s.Close()
	withFile(t, dir, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, []byte{0, 0, 0, 99})
	})
	if s2, err := Open(dir, Options{}); !errors.Is(err, ErrSchema) {
		if err == nil {
			s2.Close()
		}
		t.Fatalf("Open = %v, want ErrSchema", err)
	}
	withFile(t, dir, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, schemaBytes())
	})
	openTestStore(t, dir, Options{})
}

func TestStats(t *testing.T) {
	s := newTestStore(t, Options{})
	clock := newTestClock()
	s.now = clock.Now
	t0 := clock.Now()
	type stored struct {
		key, class string
		size       int
		gzip       bool
		at         time.Duration
		hits       int
	}
	data := []stored{
		{"/gems/a.gem", "gem", 5000, false, 0, 2},
		{"/gems/b.gem", "gem", 7000, false, time.Hour, 0},
		{"/info/a", "info", 3000, true, 30 * time.Minute, 5},
		{"/versions", "versions", 100, true, 2 * time.Hour, 1},
	}
	want := map[string]ClassStats{}
	var total int64
	for _, d := range data {
		e := testEntry(d.key, t0.Add(d.at))
		e.Class = d.class
		got := put(t, s, e, textBody(d.size, 1), CommitOptions{Gzip: d.gzip})
		for range d.hits {
			s.Lookup(d.key)
		}
		c := want[d.class]
		c.Entries++
		c.Bytes += got.footprint()
		c.Hits += int64(d.hits)
		if c.Oldest.IsZero() || e.StoredAt.Before(c.Oldest) {
			c.Oldest = e.StoredAt
		}
		if e.StoredAt.After(c.Newest) {
			c.Newest = e.StoredAt
		}
		want[d.class] = c
		total += got.footprint()
	}
	st := s.Stats()
	if st.Bytes != total || st.Evictions != 0 || len(st.Classes) != len(want) {
		t.Fatalf("Stats = %+v", st)
	}
	for class, w := range want {
		g := st.Classes[class]
		if g.Entries != w.Entries || g.Bytes != w.Bytes || g.Hits != w.Hits || !g.Oldest.Equal(w.Oldest) || !g.Newest.Equal(w.Newest) {
			t.Errorf("class %s: %+v, want %+v", class, g, w)
		}
	}
	if w := want["gem"]; !w.Oldest.Equal(t0) || !w.Newest.Equal(t0.Add(time.Hour)) {
		t.Fatalf("fixture: %+v", w)
	}
}

func TestWritable(t *testing.T) {
	s := newTestStore(t, Options{})
	if err := s.Writable(); err != nil {
		t.Fatal(err)
	}
}

// TestWritableNeverWrites checks that a flood of readiness checks on a
// healthy store commits no write transaction and writes no page.
func TestWritableNeverWrites(t *testing.T) {
	s := newTestStore(t, Options{})
	putKey(t, s, "/k", []byte("body"), CommitOptions{})
	pagesWritten := func() int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }
	writes, pages := s.Stats().Writes, pagesWritten()
	for range 1000 {
		if err := s.Writable(); err != nil {
			t.Fatal(err)
		}
	}
	if w, p := s.Stats().Writes, pagesWritten(); w != writes || p != pages {
		t.Fatalf("1000 readiness checks: %d write transactions, %d pages written", w-writes, p-pages)
	}
	putKey(t, s, "/k2", []byte("body"), CommitOptions{})
	if w := s.Stats().Writes; w != writes+1 {
		t.Fatalf("a commit counted as %d write transactions", w-writes)
	}
}

// TestWritableReportsFailedWrite checks that a write the file refuses makes
// the store unwritable at once, that it tries no write of its own for
// writableRecheck, and that one write of its own after that brings
// readiness back once the file takes writes again.
func TestWritableReportsFailedWrite(t *testing.T) {
	s := newTestStore(t, Options{})
	clock := newTestClock()
	s.now = clock.Now
	putKey(t, s, "/k", []byte("body"), CommitOptions{})
	// The file goes away under the store: its next real write fails.
	path := s.Path()
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("/k"); err == nil {
		t.Fatal("Delete on a closed file succeeded")
	}
	if err := s.Writable(); err == nil {
		t.Fatal("Writable after a failed write = nil")
	}
	db, err := bolt.Open(path, 0o640, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		t.Fatal(err)
	}
	s.db = db
	writes := s.Stats().Writes
	clock.Advance(writableRecheck - time.Millisecond)
	if err := s.Writable(); err == nil || s.Stats().Writes != writes {
		t.Fatalf("Writable within writableRecheck of the failure = %v after %d writes; want the failure, no write", err, s.Stats().Writes-writes)
	}
	clock.Advance(time.Millisecond)
	if err := s.Writable(); err != nil || s.Stats().Writes != writes+1 {
		t.Fatalf("Writable after writableRecheck = %v after %d writes; want nil after one", err, s.Stats().Writes-writes)
	}
}

// TestWritableAfterClose checks that a closed store is not ready, then or
// after writableRecheck.
func TestWritableAfterClose(t *testing.T) {
	s := newTestStore(t, Options{})
	clock := newTestClock()
	s.now = clock.Now
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Writable(); err == nil {
		t.Fatal("Writable on a closed store = nil")
	}
	clock.Advance(writableRecheck)
	if err := s.Writable(); err == nil {
		t.Fatal("Writable on a closed store after writableRecheck = nil")
	}
}

func BenchmarkLookupHit(b *testing.B) {
	s := newTestStore(b, Options{})
	putKey(b, s, "/info/rack", textBody(4096, 1), CommitOptions{Gzip: true, Appendable: true})
	if e := s.Lookup("/info/rack"); e.Body == nil || e.Gzip == nil {
		b.Fatal("entry not in memory")
	}
	b.ReportAllocs()
	for b.Loop() {
		if e := s.Lookup("/info/rack"); e == nil || e.Body == nil {
			b.Fatal("miss")
		}
	}
}
