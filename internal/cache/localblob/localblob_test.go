package localblob_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/blobstore/blobtest"
	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/cache/localblob"
)

// newCache opens a cache in a fresh directory; when the test ends it is
// verified (no problem, no orphan chunk) and closed.
func newCache(t *testing.T) *cache.Store {
	t.Helper()
	c, err := cache.Open(t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if problems, err := c.Verify(); err != nil || len(problems) != 0 {
			t.Errorf("Verify = %v, %v", problems, err)
		}
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

// blobEntry is the metadata of the entries the tests write: an immutable
// 200 with a Content-Type, as the proxy stores a gem.
func blobEntry(key string, _ [16]byte, _ [32]byte) (cache.Entry, error) {
	return cache.Entry{Key: key, Class: "gem", Status: http.StatusOK, Immutable: true, StoredAt: time.Now(),
		Header: []cache.Field{{Name: "Content-Type", Value: "application/octet-stream"}}}, nil
}

// TestCompliance runs the compliance suite of blobstore.Store on the
// local tier's view.
func TestCompliance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Store { return localblob.New(newCache(t), blobEntry) })
}

// TestKeys: an object key is its cache key without the leading "/", and
// a cache key that has none or that CheckKey refuses has no object key.
func TestKeys(t *testing.T) {
	if k, ok := localblob.ObjectKey("/gems/a-1.gem"); !ok || k != "gems/a-1.gem" || localblob.CacheKey(k) != "/gems/a-1.gem" {
		t.Fatalf("ObjectKey(/gems/a-1.gem) = %q, %v", k, ok)
	}
	for _, bad := range []string{"gems/a-1.gem", "/", "/gems/a 1.gem", "/api/v1/gems?x=1"} {
		if k, ok := localblob.ObjectKey(bad); ok {
			t.Errorf("ObjectKey(%q) = %q, true; want none", bad, k)
		}
	}
}

// TestEntryMetadata: an object written through the view is stored as the
// entry that EntryFunc describes, with the sums of the body, and one the
// function refuses is not stored.
func TestEntryMetadata(t *testing.T) {
	c := newCache(t)
	refused := errors.New("not a gem")
	s := localblob.New(c, func(key string, md5 [16]byte, sha [32]byte) (cache.Entry, error) {
		if key != "/gems/a-1.gem" {
			return cache.Entry{}, refused
		}
		e, _ := blobEntry(key, md5, sha)
		e.Header = append(e.Header, cache.Field{Name: "Etag", Value: string(md5[:2])})
		return e, nil
	})
	body := []byte("gem bytes")
	info, err := s.PutIfAbsent(t.Context(), "gems/a-1.gem", bytes.NewReader(body), int64(len(body)), blobstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := c.Peek("/gems/a-1.gem")
	if e == nil || e.Class != "gem" || !e.Immutable || e.HeaderValue("Content-Type") != "application/octet-stream" ||
		e.HeaderValue("Etag") != string(e.MD5[:2]) || info.Version != localblob.Version(e) || info.SHA256 != e.SHA256 {
		t.Fatalf("stored entry %+v for Info %+v", e, info)
	}
	if _, err := s.PutIfAbsent(t.Context(), "versions", bytes.NewReader(body), int64(len(body)), blobstore.PutOptions{}); !errors.Is(err, refused) {
		t.Fatalf("PutIfAbsent of a key EntryFunc refuses = %v", err)
	}
	if c.Peek("/versions") != nil {
		t.Fatal("a refused write stored an entry")
	}
}

// TestNegativeEntryIsNoObject: a 404 the cache remembers is no object, and
// PutIfAbsent replaces it.
func TestNegativeEntryIsNoObject(t *testing.T) {
	c := newCache(t)
	st := c.Stage()
	_, _ = st.Write([]byte("not found"))
	if _, err := c.Commit(st, cache.Entry{Key: "/gems/a-1.gem", Status: http.StatusNotFound, FreshUntil: time.Now().Add(time.Hour)}, cache.CommitOptions{}); err != nil {
		t.Fatal(err)
	}
	s := localblob.New(c, blobEntry)
	if _, err := s.Stat(t.Context(), "gems/a-1.gem"); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat of a negative entry = %v; want ErrNotFound", err)
	}
	body := []byte("gem bytes")
	if _, err := s.PutIfAbsent(t.Context(), "gems/a-1.gem", bytes.NewReader(body), int64(len(body)), blobstore.PutOptions{}); err != nil {
		t.Fatalf("PutIfAbsent over a negative entry: %v", err)
	}
}

// TestVersionChangesOnAppend: an append to an entry, which keeps its body
// ID, changes the object's version, so a PutIfMatch on the version read
// before it is ErrConflict.
func TestVersionChangesOnAppend(t *testing.T) {
	c := newCache(t)
	st := c.Stage()
	_, _ = st.Write([]byte("line 1\n"))
	e, err := c.Commit(st, cache.Entry{Key: "/versions", Status: http.StatusOK}, cache.CommitOptions{Appendable: true})
	if err != nil {
		t.Fatal(err)
	}
	s := localblob.New(c, blobEntry)
	before, err := s.Stat(t.Context(), "versions")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(e, []byte("line 2\n"), func(cache.Appended) (cache.Entry, error) { return *e, nil }); err != nil {
		t.Fatal(err)
	}
	after, err := s.Stat(t.Context(), "versions")
	if err != nil || after.Version == before.Version {
		t.Fatalf("version %q before the append, %q, %v after", before.Version, after.Version, err)
	}
	if _, err := s.PutIfMatch(t.Context(), "versions", []byte("x"), before.Version); !errors.Is(err, blobstore.ErrConflict) {
		t.Fatalf("PutIfMatch on the version before the append = %v; want ErrConflict", err)
	}
}

// TestGetReadsAtOffsets: the reader of Get also reads at any offset, in
// any order, interleaved with Read.
func TestGetReadsAtOffsets(t *testing.T) {
	c := newCache(t)
	s := localblob.New(c, blobEntry)
	body := bytes.Repeat([]byte("0123456789abcdef"), cache.ChunkSize/8) // two chunks
	if _, err := s.PutIfAbsent(t.Context(), "gems/a-1.gem", bytes.NewReader(body), int64(len(body)), blobstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Get(t.Context(), "gems/a-1.gem")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ra, ok := rc.(io.ReaderAt)
	if !ok {
		t.Fatalf("Get's reader %T does not read at offsets", rc)
	}
	head := make([]byte, 10)
	if _, err := io.ReadFull(rc, head); err != nil || !bytes.Equal(head, body[:10]) {
		t.Fatalf("Read = %q, %v", head, err)
	}
	p := make([]byte, 100)
	if n, err := ra.ReadAt(p, int64(cache.ChunkSize-50)); n != 100 || err != nil || !bytes.Equal(p, body[cache.ChunkSize-50:cache.ChunkSize+50]) {
		t.Fatalf("ReadAt across chunks = %d, %v", n, err)
	}
	if n, err := ra.ReadAt(p, int64(len(body)-40)); n != 40 || !errors.Is(err, io.EOF) {
		t.Fatalf("ReadAt at the end = %d, %v; want 40, io.EOF", n, err)
	}
	rest, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(rest, body[10:]) {
		t.Fatalf("Read after ReadAt: %d bytes, %v", len(rest), err)
	}
}
