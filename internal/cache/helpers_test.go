package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/testupstream"
	bolt "go.etcd.io/bbolt"
)

// newTestClock returns a clock stopped at a fixed instant.
func newTestClock() *testupstream.Clock {
	return testupstream.NewClock(time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC))
}

// newTestStore opens a store in a fresh temporary directory. The store is
// checked for consistency and closed when the test ends.
func newTestStore(t testing.TB, opts Options) *Store {
	t.Helper()
	return openTestStore(t, t.TempDir(), opts)
}

// openTestStore opens the store in dir and registers the consistency check
// and Close as cleanups.
func openTestStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if isClosed(s) {
			return // checked before it was closed (reopen)
		}
		checkStore(t, s)
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// reopen checks and closes s, then opens its directory again with opts.
func reopen(t testing.TB, s *Store, opts Options) *Store {
	t.Helper()
	checkStore(t, s)
	dir := filepath.Dir(s.Path()) // Path is empty once closed
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return openTestStore(t, dir, opts)
}

// isClosed reports whether s's bbolt file has been closed.
func isClosed(s *Store) bool {
	err := s.db.View(func(*bolt.Tx) error { return nil })
	return errors.Is(err, bolt.ErrDatabaseNotOpen)
}

// checkStore is the consistency check run after every test: Verify finds no
// problem, every Reader was closed, the chunks bucket holds exactly the
// chunks of the stored entries (no orphans, no gaps, no extra chunks), and
// the in-memory index and byte counters agree with the file.
func checkStore(t testing.TB, s *Store) {
	t.Helper()
	problems, err := s.Verify()
	if err != nil {
		t.Errorf("Verify: %v", err)
	}
	for _, p := range problems {
		t.Errorf("Verify: key %q: %s", p.Key, p.Reason)
	}

	s.readersMu.Lock()
	if len(s.readers) != 0 || len(s.doomed) != 0 {
		t.Errorf("readers left open: readers=%v doomed=%v", s.readers, s.doomed)
	}
	s.readersMu.Unlock()

	stored := map[string]*Entry{}
	chunks := map[uint64][]int{} // body ID -> chunk lengths by index
	err = s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			e, err := decodeEntry(string(k), v)
			if err != nil {
				t.Errorf("entry %q does not decode: %v", k, err)
				return nil
			}
			stored[e.Key] = e
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketChunks).ForEach(func(k, v []byte) error {
			if len(k) != chunkKeyLen {
				t.Errorf("malformed chunk key %x", k)
				return nil
			}
			id, index := idOf(k), binary.BigEndian.Uint32(k[8:])
			if int(index) != len(chunks[id]) {
				t.Errorf("body %d: chunk %d follows %d chunks", id, index, len(chunks[id]))
			}
			chunks[id] = append(chunks[id], len(v))
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketAccess).ForEach(func(k, _ []byte) error {
			if stored[string(k)] == nil {
				t.Errorf("access record %q without entry", k)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}

	checkBody := func(key string, id uint64, size int64) {
		lens, ok := chunks[id]
		if !ok {
			if size > 0 {
				t.Errorf("%s: body %d has no chunks", key, id)
			}
			return
		}
		delete(chunks, id)
		want := int((size + ChunkSize - 1) / ChunkSize)
		if len(lens) != want {
			t.Errorf("%s: body %d has %d chunks, want %d", key, id, len(lens), want)
			return
		}
		for i, n := range lens {
			if i < want-1 && n != ChunkSize || i == want-1 && int64(n) != size-int64(i)*ChunkSize {
				t.Errorf("%s: body %d chunk %d has %d bytes", key, id, i, n)
			}
		}
	}
	var usedBytes, memBytes int64
	negatives := 0
	s.mu.RLock()
	if len(s.items) != len(stored) {
		t.Errorf("index has %d entries, file %d", len(s.items), len(stored))
	}
	for key, it := range s.items {
		e := it.entry.Load()
		usedBytes += e.footprint()
		if e.negative() {
			negatives++
			if _, ok := s.negatives[key]; !ok {
				t.Errorf("%s: negative entry missing from the negative keys", key)
			}
		}
		if e.Body != nil {
			memBytes += e.Size + e.GzipSize
			if int64(len(e.Body)) != e.Size || int64(len(e.Gzip)) != e.GzipSize {
				t.Errorf("%s: memory body has %d+%d bytes, entry says %d+%d", key, len(e.Body), len(e.Gzip), e.Size, e.GzipSize)
			}
		}
		d := stored[key]
		if d == nil {
			t.Errorf("%s: in the index but not in the file", key)
			continue
		}
		if e.ID != d.ID || e.GzipID != d.GzipID || e.Size != d.Size || e.GzipSize != d.GzipSize ||
			e.MD5 != d.MD5 || e.SHA256 != d.SHA256 || !e.FreshUntil.Equal(d.FreshUntil) || e.Immutable != d.Immutable {
			t.Errorf("%s: index entry %+v differs from file entry %+v", key, summary(e), summary(d))
		}
	}
	if len(s.negatives) != negatives {
		t.Errorf("%d negative keys, index holds %d negative entries", len(s.negatives), negatives)
	}
	s.mu.RUnlock()
	for key, e := range stored {
		checkBody(key, e.ID, e.Size)
		if e.GzipID != 0 {
			checkBody(key, e.GzipID, e.GzipSize)
		}
	}
	for id, lens := range chunks {
		t.Errorf("orphan body %d: %d chunks", id, len(lens))
	}
	if got := s.usedBytes.Load(); got != usedBytes {
		t.Errorf("usedBytes counter %d, entries take %d", got, usedBytes)
	}
	if got := s.memoryBytes.Load(); got != memBytes {
		t.Errorf("memoryBytes counter %d, memory bodies hold %d", got, memBytes)
	}
	if pending, err := s.PendingUploads(); err != nil || int64(len(pending)) != s.PendingCount() {
		t.Errorf("PendingCount %d, the file holds %d keys pending upload (%v)", s.PendingCount(), len(pending), err)
	}
}

// summary is the part of an entry worth printing.
func summary(e *Entry) map[string]any {
	return map[string]any{"id": e.ID, "gzipID": e.GzipID, "size": e.Size, "gzipSize": e.GzipSize,
		"fresh": e.FreshUntil, "immutable": e.Immutable}
}

// testBody returns n deterministic pseudo-random bytes for seed.
func testBody(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// textBody returns n bytes of compressible text, like a compact index file.
func textBody(n int, seed uint64) []byte {
	var b bytes.Buffer
	r := rand.New(rand.NewPCG(seed, 7))
	for b.Len() < n {
		b.WriteString("gem-")
		b.WriteString(string(rune('a' + r.IntN(26))))
		b.WriteString(" 1.0.0,1.0.1 0123456789abcdef0123456789abcdef\n")
	}
	return b.Bytes()[:n]
}

// testEntry returns entry metadata for key as the proxy would fill it.
func testEntry(key string, now time.Time) Entry {
	return Entry{
		Key:        key,
		Class:      "test",
		Status:     200,
		Header:     []Field{{Name: "Content-Type", Value: "application/octet-stream"}},
		StoredAt:   now,
		FreshUntil: now.Add(time.Hour),
	}
}

// stage writes body into a new staging in uneven pieces.
func stage(t testing.TB, s *Store, body []byte) *Staging {
	t.Helper()
	st := s.Stage()
	for rest := body; len(rest) > 0; {
		n := min(len(rest), 7919)
		if _, err := st.Write(rest[:n]); err != nil {
			t.Fatalf("Staging.Write: %v", err)
		}
		rest = rest[n:]
	}
	return st
}

// put commits body as the entry e.
func put(t testing.TB, s *Store, e Entry, body []byte, opts CommitOptions) *Entry {
	t.Helper()
	got, err := s.Commit(stage(t, s, body), e, opts)
	if err != nil {
		t.Fatalf("Commit(%s): %v", e.Key, err)
	}
	return got
}

// putKey commits body under key with default metadata.
func putKey(t testing.TB, s *Store, key string, body []byte, opts CommitOptions) *Entry {
	t.Helper()
	return put(t, s, testEntry(key, s.now()), body, opts)
}

// readBodyOf reads the identity (or gzip) body of e through a Reader.
func readBodyOf(t testing.TB, s *Store, e *Entry, gz bool) []byte {
	t.Helper()
	r, err := s.Open(e, gz)
	if err != nil {
		t.Fatalf("Open(%s, gzip=%v): %v", e.Key, gz, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s (gzip=%v): %v", e.Key, gz, err)
	}
	return b
}

// chunksOf counts the chunks stored for body id.
func chunksOf(t testing.TB, s *Store, id uint64) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketChunks).Cursor()
		p := chunkPrefix(id)
		for k, _ := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("count chunks: %v", err)
	}
	return n
}

// totalChunks counts every chunk in the file.
func totalChunks(t testing.TB, s *Store) int {
	t.Helper()
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketChunks).Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatalf("count chunks: %v", err)
	}
	return n
}

// wantChunks is the number of chunks of a body of size bytes.
func wantChunks(size int) int { return (size + ChunkSize - 1) / ChunkSize }
