// Package localblob is the local tier of gemproxy (a *cache.Store, one
// bbolt file) seen as a blobstore.Store, so that both tiers of a fleet
// sit behind the one contract of package blobstore and the compliance
// suite blobtest checks both (localblob_test.go runs it).
//
// Object key K is the entry of cache key "/"+K (ObjectKey, CacheKey): the
// object "gems/a-1.gem" is the entry the proxy serves at /gems/a-1.gem.
// An entry that holds no body (a negative 404 entry) is no object.
//
// How each guarantee of blobstore.Store holds here:
//   - Atomicity: an entry becomes visible in the one bbolt transaction
//     that stores its metadata (cache.Store.Commit); the chunks a large
//     body writes ahead are invisible until then, and a crash leaves them
//     as orphans that cache.Open collects.
//   - Read-after-write: a commit publishes the entry in the cache's
//     in-memory index before it returns, and Get and Stat read that index.
//   - Conditional writes: PutIfAbsent and PutIfMatch commit with
//     cache.CommitOptions.IfAbsent and IfMatch, whose condition is decided
//     inside the storing transaction, under the cache's write lock.
//   - "Many processes": bbolt locks its file, so one process opens a cache
//     directory (cache.ErrLocked for any other); the guarantees hold for
//     every goroutine of that process.
//   - Recorded checksums: the cache hashes every body it commits, so this
//     store computes Info.SHA256 (the SHA-256 of the bytes stored, never
//     zero) and refuses a PutIfAbsent whose PutOptions.SHA256 is not the
//     body's, as blobstore.Store allows a store that computes it to.
//   - Versions: Info.Version is the entry's body ID and size ("ID-SIZE"):
//     body IDs come from a sequence and are never reused, and an append
//     (cache.Store.Append), which keeps the ID, grows the size.
package localblob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/cache"
)

// EntryFunc returns the metadata of the entry that stores a body written
// through the Store at cache key key, given the body's sums: its class,
// status (200), headers, freshness and immutability; Commit sets the ID,
// sizes and sums. An error refuses the write: a key the caller does not
// store objects at.
type EntryFunc func(key string, md5 [16]byte, sha [32]byte) (cache.Entry, error)

// Store is the blobstore.Store view of a cache.Store. It is safe for
// concurrent use.
type Store struct {
	// c holds the entries.
	c *cache.Store
	// entry gives the metadata of the entries written.
	entry EntryFunc
}

// New returns the view of c whose writes store the entries that entry
// describes.
func New(c *cache.Store, entry EntryFunc) *Store {
	return &Store{c: c, entry: entry}
}

// CacheKey is the cache key of the object key key.
func CacheKey(key string) string { return "/" + key }

// ObjectKey is the object key of the entry at cacheKey, ok only when
// blobstore.CheckKey accepts it: "/gems/a-1.gem" is "gems/a-1.gem".
func ObjectKey(cacheKey string) (key string, ok bool) {
	key, ok = strings.CutPrefix(cacheKey, "/")
	return key, ok && blobstore.CheckKey(key) == nil
}

// Version is the Info.Version of the object that entry e stores.
func Version(e *cache.Entry) string {
	return strconv.FormatUint(e.ID, 10) + "-" + strconv.FormatInt(e.Size, 10)
}

// parseVersion returns the body ID and size that a Version names, ID 0
// (which no body has: the commit it conditions fails with ErrConflict)
// when it names none.
func parseVersion(v string) (id uint64, size int64) {
	idPart, sizePart, _ := strings.Cut(v, "-")
	id, errID := strconv.ParseUint(idPart, 10, 64)
	size, errSize := strconv.ParseInt(sizePart, 10, 64)
	if errID != nil || errSize != nil {
		return 0, 0
	}
	return id, size
}

// info describes the object that entry e stores.
func info(e *cache.Entry) blobstore.Info {
	return blobstore.Info{Size: e.Size, Version: Version(e), SHA256: e.SHA256}
}

// Get implements blobstore.Store. The reader also reads at offsets
// (io.ReaderAt), as PutIfAbsent needs when it copies the object to
// another store.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, blobstore.Info, error) {
	if err := ready(ctx, key); err != nil {
		return nil, blobstore.Info{}, err
	}
	for {
		e, err := s.current(key)
		if err != nil {
			return nil, blobstore.Info{}, err
		}
		r, err := s.c.Open(e, false)
		if errors.Is(err, cache.ErrNotFound) && s.c.Peek(e.Key) != e {
			continue // replaced or deleted since current read it
		}
		if err != nil {
			return nil, blobstore.Info{}, fmt.Errorf("localblob: %s: %w", key, translate(err))
		}
		return &body{r: r}, info(e), nil
	}
}

// Stat implements blobstore.Store.
func (s *Store) Stat(ctx context.Context, key string) (blobstore.Info, error) {
	if err := ready(ctx, key); err != nil {
		return blobstore.Info{}, err
	}
	e, err := s.current(key)
	if err != nil {
		return blobstore.Info{}, err
	}
	return info(e), nil
}

// current is the entry that holds the object at key, without counting an
// access; ErrNotFound when there is none, or only a negative one.
func (s *Store) current(key string) (*cache.Entry, error) {
	e := s.c.Peek(CacheKey(key))
	if e == nil || e.Status != http.StatusOK {
		return nil, fmt.Errorf("localblob: %s: %w: %w", key, blobstore.ErrNotFound, cache.ErrNotFound)
	}
	return e, nil
}

// PutIfAbsent implements blobstore.Store.
func (s *Store) PutIfAbsent(ctx context.Context, key string, body io.ReaderAt, size int64, opts blobstore.PutOptions) (blobstore.Info, error) {
	return s.put(ctx, key, io.NewSectionReader(body, 0, size), size, opts.SHA256, cache.CommitOptions{IfAbsent: true})
}

// PutIfMatch implements blobstore.Store.
func (s *Store) PutIfMatch(ctx context.Context, key string, body []byte, version string) (blobstore.Info, error) {
	cond := &cache.Entry{Key: CacheKey(key)}
	cond.ID, cond.Size = parseVersion(version)
	return s.put(ctx, key, bytes.NewReader(body), int64(len(body)), [32]byte{}, cache.CommitOptions{IfMatch: cond})
}

// put stages the size bytes of body and commits them at key with opts'
// condition, refusing a body shorter than size, one whose SHA-256 is not
// claim (when claim is not zero) and a ctx that ended; nothing is stored
// then.
func (s *Store) put(ctx context.Context, key string, body io.Reader, size int64, claim [32]byte, opts cache.CommitOptions) (blobstore.Info, error) {
	if err := ready(ctx, key); err != nil {
		return blobstore.Info{}, err
	}
	st := s.c.Stage()
	if err := stage(st, body, size, claim); err != nil {
		st.Discard()
		return blobstore.Info{}, fmt.Errorf("localblob: %s: %w", key, err)
	}
	e, err := s.entry(CacheKey(key), st.MD5(), st.SHA256())
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		st.Discard()
		return blobstore.Info{}, fmt.Errorf("localblob: %s: %w", key, err)
	}
	e.Key = CacheKey(key)
	stored, err := s.c.Commit(st, e, opts)
	if err != nil {
		return blobstore.Info{}, fmt.Errorf("localblob: %s: %w", key, translate(err))
	}
	return info(stored), nil
}

// stage copies the size bytes of body into st and checks them: a shorter
// body, or one whose SHA-256 is not claim (when claim is not zero), is an
// error.
func stage(st *cache.Staging, body io.Reader, size int64, claim [32]byte) error {
	if _, err := io.Copy(st, body); err != nil {
		return fmt.Errorf("reading the body: %w", err)
	}
	if st.Size() != size {
		return fmt.Errorf("body of %d bytes, announced %d", st.Size(), size)
	}
	if claim != ([32]byte{}) && st.SHA256() != claim {
		return fmt.Errorf("body's SHA-256 %x is not the %x recorded with it", st.SHA256(), claim)
	}
	return nil
}

// Delete implements blobstore.Store.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ready(ctx, key); err != nil {
		return err
	}
	return s.c.Delete(CacheKey(key))
}

// ready checks what every call checks first: the key, and that ctx is
// still live.
func ready(ctx context.Context, key string) error {
	if err := blobstore.CheckKey(key); err != nil {
		return err
	}
	return ctx.Err()
}

// translate adds to a cache error the blobstore sentinel it means.
func translate(err error) error {
	switch {
	case errors.Is(err, cache.ErrNotFound):
		return fmt.Errorf("%w: %w", blobstore.ErrNotFound, err)
	case errors.Is(err, cache.ErrExists):
		return fmt.Errorf("%w: %w", blobstore.ErrExists, err)
	case errors.Is(err, cache.ErrConflict):
		return fmt.Errorf("%w: %w", blobstore.ErrConflict, err)
	}
	return err
}

// body reads a stored body from start to end (io.Reader) and at any
// offset (io.ReaderAt), as blobstore.Store.PutIfAbsent may read its body
// again on a retry. Close it when done.
type body struct {
	// mu serialises the reads of r, whose range each read sets.
	mu sync.Mutex
	r  *cache.Reader
	// off is where the next Read starts.
	off int64
}

// Read implements io.Reader.
func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadAt(p, b.off)
	b.off += int64(n)
	if n > 0 && errors.Is(err, io.EOF) {
		err = nil // the next Read says io.EOF
	}
	return n, err
}

// ReadAt implements io.ReaderAt.
func (b *body) ReadAt(p []byte, off int64) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.r.Limit(off, off+int64(len(p)))
	n, err := io.ReadFull(b.r, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

// Close implements io.Closer; the body may be freed once it is closed.
func (b *body) Close() error { return b.r.Close() }
