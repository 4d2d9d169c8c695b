package cache

import (
	"bytes"
	"compress/gzip"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// gunzip decompresses b.
func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return out
}

// tmpFiles lists the staging files in s's data directory.
func tmpFiles(t testing.TB, s *Store) []string {
	t.Helper()
	des, err := os.ReadDir(s.tmpDir)
	if err != nil {
		t.Fatalf("read tmp: %v", err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestStageCommit(t *testing.T) {
	cases := []struct {
		name  string
		size  int
		gzip  bool
		spill bool // staged in a file in DATA/tmp
	}{
		{name: "empty", size: 0},
		{name: "one byte", size: 1},
		{name: "small gzip", size: 1000, gzip: true},
		{name: "memory limit", size: 64 << 10},
		{name: "above memory limit", size: 64<<10 + 1, gzip: true},
		{name: "one chunk", size: ChunkSize},
		{name: "staging limit in memory", size: stagingMemoryLimit},
		{name: "staging spills", size: stagingMemoryLimit + 1, spill: true},
		{name: "several chunks gzip", size: 5*ChunkSize + 12345, gzip: true, spill: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t, Options{})
			body := testBody(tc.size, 1)
			st := stage(t, s, body)
			if got := len(tmpFiles(t, s)) > 0; got != tc.spill {
				t.Fatalf("staging file present = %v, want %v", got, tc.spill)
			}
			if st.Size() != int64(tc.size) || st.MD5() != md5.Sum(body) || st.SHA256() != sha256.Sum256(body) {
				t.Fatalf("staging sums wrong")
			}
			e, err := s.Commit(st, testEntry("/k", s.now()), CommitOptions{Gzip: tc.gzip})
			if err != nil {
				t.Fatal(err)
			}
			if files := tmpFiles(t, s); len(files) != 0 {
				t.Fatalf("staging files left after commit: %v", files)
			}
			if e.Size != int64(tc.size) || e.MD5 != md5.Sum(body) || e.SHA256 != sha256.Sum256(body) {
				t.Fatalf("entry sums wrong: size %d", e.Size)
			}
			if e.ID == 0 || (e.GzipID != 0) != tc.gzip || (e.GzipSize != 0) != tc.gzip {
				t.Fatalf("ids: %d gzip %d/%d", e.ID, e.GzipID, e.GzipSize)
			}
			if n := chunksOf(t, s, e.ID); n != wantChunks(tc.size) {
				t.Fatalf("%d chunks, want %d", n, wantChunks(tc.size))
			}
			if got := readBodyOf(t, s, e, false); !bytes.Equal(got, body) {
				t.Fatalf("Open/Read returned %d bytes, not the body", len(got))
			}
			if tc.gzip {
				if got := gunzip(t, readBodyOf(t, s, e, true)); !bytes.Equal(got, body) {
					t.Fatal("gzip body does not decompress to the body")
				}
			} else if _, err := s.Open(e, true); err == nil {
				t.Fatal("Open(gzip) of an entry without gzip body succeeded")
			}

			// Ranges, across chunk boundaries when the body has several.
			for _, rg := range [][2]int64{{0, 0}, {0, 1}, {int64(tc.size) / 3, int64(tc.size) * 2 / 3},
				{ChunkSize - 10, ChunkSize + 10}, {int64(tc.size) - 1, int64(tc.size)}, {0, int64(tc.size)}} {
				start, end := rg[0], rg[1]
				if start < 0 || end > int64(tc.size) || start > end {
					continue
				}
				for _, src := range []*Entry{e, s.Lookup("/k")} {
					r, err := s.Open(src, false)
					if err != nil {
						t.Fatal(err)
					}
					if r.Size() != int64(tc.size) {
						t.Fatalf("Reader.Size = %d", r.Size())
					}
					r.Limit(start, end)
					got, err := io.ReadAll(r)
					r.Close()
					if err != nil || !bytes.Equal(got, body[start:end]) {
						t.Fatalf("range [%d,%d) (memory=%v): %d bytes, %v", start, end, src.Body != nil, len(got), err)
					}
				}
			}

			l := s.Lookup("/k")
			inMemory := int64(tc.size) <= s.opts.MemoryBodyLimit
			if (l.Body != nil) != inMemory {
				t.Fatalf("Lookup: Body kept in memory = %v, want %v", l.Body != nil, inMemory)
			}
			if inMemory {
				if !bytes.Equal(l.Body, body) {
					t.Fatal("memory body differs")
				}
				if tc.gzip && !bytes.Equal(gunzip(t, l.Gzip), body) {
					t.Fatal("memory gzip body differs")
				}
				if got := readBodyOf(t, s, l, false); !bytes.Equal(got, body) {
					t.Fatal("Reader of memory body differs")
				}
			}
		})
	}
}

func TestCommitRejectsInvalidEntry(t *testing.T) {
	s := newTestStore(t, Options{})
	e := testEntry("/k", s.now())
	e.Status = 0
	if _, err := s.Commit(stage(t, s, []byte("x")), e, CommitOptions{}); err == nil {
		t.Fatal("Commit with status 0 succeeded; the entry could not be decoded after a restart")
	}
	if s.Peek("/k") != nil || totalChunks(t, s) != 0 {
		t.Fatal("rejected commit left data behind")
	}
}

func TestCommitFromCopiedEntry(t *testing.T) {
	// The proxy builds new metadata from an old entry; fields Commit owns
	// must not leak from the copy into the stored record.
	s := newTestStore(t, Options{})
	old := putKey(t, s, "/k", textBody(5000, 1), CommitOptions{Gzip: true, Appendable: true})
	next := *old
	next.FreshUntil = old.FreshUntil.Add(time.Hour)
	e := put(t, s, next, []byte("plain"), CommitOptions{})
	if e.GzipID != 0 || e.GzipSize != 0 || e.HashState != nil || e.Size != 5 {
		t.Fatalf("committed entry kept fields of the copy: %+v", summary(e))
	}
	s = reopen(t, s, Options{})
	if got := s.Peek("/k"); got == nil || got.ID != e.ID {
		t.Fatalf("after reopen: %v", got)
	}
}

func TestReplaceFreesOldBody(t *testing.T) {
	s := newTestStore(t, Options{})
	old := putKey(t, s, "/k", testBody(3*ChunkSize, 1), CommitOptions{Gzip: true})
	e := putKey(t, s, "/k", testBody(100, 2), CommitOptions{Gzip: true})
	if chunksOf(t, s, old.ID)+chunksOf(t, s, old.GzipID) != 0 {
		t.Fatal("chunks of the replaced body left behind")
	}
	if e.ID == old.ID || e.GzipID == old.GzipID {
		t.Fatal("body id reused")
	}
}

// appendFixture commits an appendable (optionally gzip) entry of body.
func appendFixture(t *testing.T, s *Store, key string, body []byte, gz bool) *Entry {
	t.Helper()
	return putKey(t, s, key, body, CommitOptions{Gzip: gz, Appendable: true})
}

// keepMeta is an Append check func that stores old's metadata unchanged.
func keepMeta(old *Entry) func(Appended) (Entry, error) {
	return func(Appended) (Entry, error) { return *old, nil }
}

func TestAppend(t *testing.T) {
	cases := []struct {
		name       string
		oldSize    int
		tailSize   int
		gzip       bool
		memoryBody bool // old entry carries its body in memory
	}{
		{name: "empty old", oldSize: 0, tailSize: 10},
		{name: "empty tail", oldSize: 1000, tailSize: 0, gzip: true},
		{name: "small in memory", oldSize: 1000, tailSize: 500, gzip: true, memoryBody: true},
		{name: "just below chunk", oldSize: ChunkSize - 1, tailSize: 1},
		{name: "just below chunk crossing", oldSize: ChunkSize - 1, tailSize: 100},
		{name: "at chunk", oldSize: ChunkSize, tailSize: 100, gzip: true},
		{name: "above chunk", oldSize: ChunkSize + 1, tailSize: 100},
		{name: "below second chunk, long tail", oldSize: 2*ChunkSize - 3, tailSize: 2*ChunkSize + 7, gzip: true},
		{name: "at second chunk, whole chunks", oldSize: 2 * ChunkSize, tailSize: ChunkSize},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t, Options{})
			clock := newTestClock()
			s.now = clock.Now
			full := textBody(tc.oldSize+tc.tailSize, 3)
			oldBody, tail := full[:tc.oldSize], full[tc.oldSize:]
			old := appendFixture(t, s, "/info/rack", oldBody, tc.gzip)
			if tc.memoryBody {
				old = s.Lookup("/info/rack")
				if old.Body == nil {
					t.Fatal("fixture not in memory")
				}
			}
			// Readers opened before the append keep the old length.
			before, err := s.Open(s.Peek("/info/rack"), false)
			if err != nil {
				t.Fatal(err)
			}
			defer before.Close()
			var beforeGz *Reader
			if tc.gzip {
				if beforeGz, err = s.Open(s.Peek("/info/rack"), true); err != nil {
					t.Fatal(err)
				}
				defer beforeGz.Close()
			}

			clock.Advance(time.Minute)
			var seen Appended
			next, err := s.Append(old, tail, func(a Appended) (Entry, error) {
				seen = a
				e := *old
				e.StoredAt = clock.Now()
				e.FreshUntil = clock.Now().Add(time.Hour)
				e.Header = []Field{{Name: "Etag", Value: `"new"`}}
				return e, nil
			})
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			wantMD5, wantSHA := md5.Sum(full), sha256.Sum256(full)
			if seen.Size != int64(len(full)) || seen.MD5 != wantMD5 || seen.SHA256 != wantSHA {
				t.Fatalf("check saw %+v, want sums of the whole body", seen)
			}
			if next.Size != int64(len(full)) || next.MD5 != wantMD5 || next.SHA256 != wantSHA ||
				next.ID != old.ID || next.HeaderValue("Etag") != `"new"` || !next.FreshUntil.Equal(clock.Now().Add(time.Hour)) {
				t.Fatalf("appended entry %+v", summary(next))
			}

			// Same result as committing the concatenation.
			ref := appendFixture(t, s, "/ref", full, tc.gzip)
			if ref.Size != next.Size || ref.MD5 != next.MD5 || ref.SHA256 != next.SHA256 || !bytes.Equal(ref.HashState, next.HashState) {
				t.Fatal("append differs from committing the whole body")
			}
			if got := readBodyOf(t, s, next, false); !bytes.Equal(got, full) {
				t.Fatalf("appended body reads %d bytes, want %d", len(got), len(full))
			}
			if got := s.Lookup("/info/rack"); got.ID != next.ID || got.Size != next.Size {
				t.Fatal("Lookup does not return the appended entry")
			}
			if tc.gzip {
				if next.GzipID == 0 || next.GzipID == old.GzipID {
					t.Fatalf("gzip body not rebuilt: %d -> %d", old.GzipID, next.GzipID)
				}
				if got := gunzip(t, readBodyOf(t, s, next, true)); !bytes.Equal(got, full) {
					t.Fatal("rebuilt gzip body does not decompress to the whole body")
				}
			} else if next.GzipID != 0 {
				t.Fatal("gzip body appeared")
			}

			got, err := io.ReadAll(before)
			if err != nil || !bytes.Equal(got, oldBody) {
				t.Fatalf("reader opened before the append read %d bytes (%v), want the %d old bytes", len(got), err, len(oldBody))
			}
			before.Close()
			if tc.gzip {
				gz, err := io.ReadAll(beforeGz)
				if err != nil || !bytes.Equal(gunzip(t, gz), oldBody) {
					t.Fatalf("old gzip reader: %v", err)
				}
				beforeGz.Close()
				if n := chunksOf(t, s, old.GzipID); n != 0 {
					t.Fatalf("old gzip body has %d chunks after its reader closed", n)
				}
			}

			// A second append chains from the stored hash state.
			more := []byte("zzz 1.0 abc\n")
			again, err := s.Append(next, more, keepMeta(next))
			if err != nil {
				t.Fatal(err)
			}
			all := append(append([]byte(nil), full...), more...)
			if again.SHA256 != sha256.Sum256(all) || !bytes.Equal(readBodyOf(t, s, again, false), all) {
				t.Fatal("second append wrong")
			}

			s = reopen(t, s, Options{})
			if got := s.Lookup("/info/rack"); got == nil || got.SHA256 != again.SHA256 || !bytes.Equal(readBodyOf(t, s, got, false), all) {
				t.Fatal("appended entry lost at reopen")
			}
		})
	}
}

func TestAppendRejected(t *testing.T) {
	s := newTestStore(t, Options{})
	old := appendFixture(t, s, "/versions", textBody(ChunkSize+10, 1), true)
	chunks := totalChunks(t, s)
	boom := errors.New("checksum mismatch")
	_, err := s.Append(old, []byte("tail\n"), func(Appended) (Entry, error) { return Entry{}, boom })
	if !errors.Is(err, ErrRejected) || !errors.Is(err, boom) {
		t.Fatalf("Append = %v, want ErrRejected wrapping the check's error", err)
	}
	if cur := s.Peek("/versions"); cur != old {
		t.Fatal("rejected append changed the entry")
	}
	if n := totalChunks(t, s); n != chunks {
		t.Fatalf("rejected append left %d chunks, had %d", n, chunks)
	}
	if files := tmpFiles(t, s); len(files) != 0 {
		t.Fatalf("staging files left: %v", files)
	}
}

func TestAppendNotAppendable(t *testing.T) {
	s := newTestStore(t, Options{})
	old := putKey(t, s, "/k", []byte("body"), CommitOptions{})
	if _, err := s.Append(old, []byte("x"), keepMeta(old)); err == nil {
		t.Fatal("Append to an entry without hash state succeeded")
	}
}

func TestAppendConflict(t *testing.T) {
	cases := map[string]func(t *testing.T, s *Store, old *Entry){
		"replaced": func(t *testing.T, s *Store, old *Entry) {
			appendFixture(t, s, old.Key, textBody(500, 9), true)
		},
		"appended meanwhile": func(t *testing.T, s *Store, old *Entry) {
			if _, err := s.Append(old, []byte("first\n"), keepMeta(old)); err != nil {
				t.Fatal(err)
			}
		},
		"deleted": func(t *testing.T, s *Store, old *Entry) {
			if err := s.Delete(old.Key); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, change := range cases {
		for _, gz := range []bool{false, true} {
			t.Run(name+map[bool]string{true: " gzip", false: ""}[gz], func(t *testing.T) {
				s := newTestStore(t, Options{MemoryBodyLimit: -1})
				old := appendFixture(t, s, "/info/x", textBody(ChunkSize+100, 1), gz)
				change(t, s, old)
				cur := s.Peek(old.Key)
				chunks := totalChunks(t, s)
				_, err := s.Append(old, []byte("second\n"), keepMeta(old))
				if !errors.Is(err, ErrConflict) {
					t.Fatalf("Append = %v, want ErrConflict", err)
				}
				if s.Peek(old.Key) != cur || totalChunks(t, s) != chunks {
					t.Fatal("conflicting append changed the store")
				}
			})
		}
	}
}

func TestRenew(t *testing.T) {
	s := newTestStore(t, Options{})
	clock := newTestClock()
	s.now = clock.Now
	body := textBody(3000, 1)
	old := putKey(t, s, "/versions", body, CommitOptions{Gzip: true, Appendable: true})
	old = s.Lookup("/versions") // with its memory body
	clock.Advance(2 * time.Hour)
	if old.Fresh(clock.Now()) {
		t.Fatal("fixture still fresh")
	}
	next := *old
	next.StoredAt = clock.Now()
	next.FreshUntil = clock.Now().Add(time.Minute)
	next.Header = []Field{{Name: "Etag", Value: `"v2"`}}
	got, err := s.Renew(old, next)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != old.ID || got.GzipID != old.GzipID || got.SHA256 != old.SHA256 || !bytes.Equal(got.HashState, old.HashState) {
		t.Fatal("Renew changed the body")
	}
	if !got.Fresh(clock.Now()) || got.HeaderValue("Etag") != `"v2"` {
		t.Fatal("Renew did not store new freshness and headers")
	}
	if !bytes.Equal(readBodyOf(t, s, got, false), body) {
		t.Fatal("body changed")
	}
	s = reopen(t, s, Options{})
	s.now = clock.Now
	e := s.Lookup("/versions")
	if e == nil || !e.Fresh(clock.Now()) || e.HeaderValue("Etag") != `"v2"` || !e.StoredAt.Equal(clock.Now()) {
		t.Fatalf("renewal lost at reopen: %+v", e)
	}
	if !bytes.Equal(readBodyOf(t, s, e, false), body) || !bytes.Equal(gunzip(t, readBodyOf(t, s, e, true)), body) {
		t.Fatal("body changed after reopen")
	}
}

func TestRenewKeepsMemoryAccounting(t *testing.T) {
	s := newTestStore(t, Options{})
	putKey(t, s, "/k", []byte("small body"), CommitOptions{})
	peeked := s.Peek("/k") // no memory body yet
	if s.Lookup("/k").Body == nil {
		t.Fatal("not loaded into memory")
	}
	next := *peeked
	next.FreshUntil = next.FreshUntil.Add(time.Hour)
	if _, err := s.Renew(peeked, next); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("/k"); err != nil {
		t.Fatal(err)
	}
	if n := s.memoryBytes.Load(); n != 0 {
		t.Fatalf("memoryBytes = %d with no entry left", n)
	}
}

func TestRenewConflict(t *testing.T) {
	s := newTestStore(t, Options{})
	old := putKey(t, s, "/k", []byte("one"), CommitOptions{})
	cur := putKey(t, s, "/k", []byte("two"), CommitOptions{})
	if _, err := s.Renew(old, *old); !errors.Is(err, ErrConflict) {
		t.Fatalf("Renew of a replaced entry = %v, want ErrConflict", err)
	}
	if s.Peek("/k") != cur {
		t.Fatal("conflicting renew changed the entry")
	}
}

func TestInvalidate(t *testing.T) {
	s := newTestStore(t, Options{})
	clock := newTestClock()
	s.now = clock.Now
	putKey(t, s, "/info/rack", []byte("mutable"), CommitOptions{})
	imm := testEntry("/gems/rack-1.0.gem", clock.Now())
	imm.FreshUntil, imm.Immutable = time.Time{}, true
	put(t, s, imm, []byte("gem"), CommitOptions{})
	s.Lookup("/info/rack") // memory body loaded

	for key, wantExisted := range map[string]bool{"/info/rack": true, "/gems/rack-1.0.gem": true, "/absent": false} {
		existed, err := s.Invalidate(key)
		if err != nil || existed != wantExisted {
			t.Fatalf("Invalidate(%s) = %v, %v", key, existed, err)
		}
	}
	check := func(s *Store) {
		t.Helper()
		e := s.Lookup("/info/rack")
		if e == nil || e.Fresh(clock.Now()) || !e.FreshUntil.Equal(Expired) {
			t.Fatalf("mutable entry after Invalidate: %+v", e)
		}
		if !bytes.Equal(readBodyOf(t, s, e, false), []byte("mutable")) {
			t.Fatal("invalidated body changed")
		}
		if s.Peek("/gems/rack-1.0.gem") != nil {
			t.Fatal("immutable entry not deleted")
		}
	}
	check(s)
	s = reopen(t, s, Options{})
	check(s)
}

func TestStagingDiscard(t *testing.T) {
	s := newTestStore(t, Options{})
	st := stage(t, s, testBody(stagingMemoryLimit+10, 1))
	if len(tmpFiles(t, s)) != 1 {
		t.Fatal("no staging file")
	}
	st.Discard()
	if files := tmpFiles(t, s); len(files) != 0 {
		t.Fatalf("Discard left %v", files)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(s.Path()), "tmp")); err != nil {
		t.Fatal(err)
	}
}

func TestStagingBytes(t *testing.T) {
	for _, size := range []int{0, 100, stagingMemoryLimit + 100} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			s := newTestStore(t, Options{})
			body := testBody(size, 1)
			st := stage(t, s, body)
			defer st.Discard()
			got, err := st.Bytes()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("Bytes = %d bytes, %v; want %d", len(got), err, size)
			}
			// Still committable after Bytes.
			e, err := s.Commit(st, testEntry("/k", s.now()), CommitOptions{})
			if err != nil || !bytes.Equal(readBodyOf(t, s, e, false), body) {
				t.Fatalf("Commit after Bytes: %v", err)
			}
		})
	}
}

func TestCommitLargeBodyInBatches(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(3*commitBatch+ChunkSize+77, 9)
	e := put(t, s, Entry{Key: "/gems/huge.gem", Class: "gem", Status: 200, Immutable: true}, body, CommitOptions{Gzip: true})
	r, err := s.Open(e, false)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if _, err := r.WriteTo(&got); err != nil || !bytes.Equal(got.Bytes(), body) {
		t.Fatalf("large body read back: %d bytes, %v", got.Len(), err)
	}
	r.Close()
	// Replacing it frees every chunk of the old bodies (checkStore verifies
	// no chunk is left that no entry names).
	put(t, s, Entry{Key: "/gems/huge.gem", Class: "gem", Status: 200, Immutable: true}, body[:100], CommitOptions{})
}

// versionsBody returns about n bytes shaped like rubygems.org's /versions:
// a header, then one line per gem with its versions and the MD5 (hex) of
// its /info file, which compresses about as well as the real file.
func versionsBody(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 5))
	b := bytes.NewBufferString("created_at: 2024-04-01T00:00:05Z\n---\n")
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(b, "gem-%c%c%c-%d ", 'a'+r.IntN(26), 'a'+r.IntN(26), 'a'+r.IntN(26), i)
		for v := range 1 + r.IntN(6) {
			if v > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, "%d.%d.%d", r.IntN(8), r.IntN(20), r.IntN(30))
		}
		sum := md5.Sum(fmt.Appendf(nil, "%d", r.Uint64()))
		fmt.Fprintf(b, " %x\n", sum)
	}
	return b.Bytes()
}

// BenchmarkAppendVersions appends one line to a 5 MB /versions stored
// with its gzip form: the identity body grows by the line, the gzip form
// is rebuilt from the whole body. gzip-B is the size of the gzip form.
func BenchmarkAppendVersions(b *testing.B) {
	s := newTestStore(b, Options{})
	e := putKey(b, s, "/versions", versionsBody(5<<20), CommitOptions{Gzip: true, Appendable: true})
	tail := []byte("gem-new 1.0.0 0123456789abcdef0123456789abcdef\n")
	b.SetBytes(e.Size)
	for b.Loop() {
		next, err := s.Append(e, tail, keepMeta(e))
		if err != nil {
			b.Fatal(err)
		}
		e = next
	}
	b.ReportMetric(float64(e.GzipSize), "gzip-B")
}
