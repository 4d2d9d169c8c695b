// Package cache stores upstream responses in a bbolt file: entry metadata,
// bodies split into chunks, freshness bookkeeping, coalesced fills, a size cap
// with least-recently-used eviction, statistics and verification. It knows
// nothing about HTTP: the proxy decides what to store and for how long.
package cache

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/singleflight"
)

// Sentinel errors of the package; test with errors.Is.
var (
	// ErrLocked means another process holds the bbolt file.
	ErrLocked = errors.New("cache: data file is locked by another process")
	// ErrNotFound means no entry exists for the key. Open also returns it
	// for an entry whose body was replaced or removed since it was looked
	// up: look the key up again.
	ErrNotFound = errors.New("cache: entry not found")
	// ErrConflict means the entry changed since it was read: while an
	// append or a renewal was being prepared, or before a commit whose
	// CommitOptions.IfMatch named it (or it is gone).
	ErrConflict = errors.New("cache: entry changed concurrently")
	// ErrExists means a commit with CommitOptions.IfAbsent found an entry
	// with a body stored for its key; nothing was written.
	ErrExists = errors.New("cache: entry already exists")
	// ErrSchema means the file was written by an incompatible version.
	ErrSchema = errors.New("cache: unsupported schema version")
)

// Options configures Open. The zero value of each field selects its default.
type Options struct {
	// LockTimeout bounds the wait for the file lock held by another process.
	// Default 1s; zero means the default.
	LockTimeout time.Duration
	// MaxSize is the cap enforced by Sweep on the bytes entries take: their
	// bodies, keys and metadata, plus EntryOverhead each. Default 10 GiB;
	// zero means the default, a negative value means no cap.
	MaxSize int64
	// MaxNegativeEntries caps the number of negative (404) entries: storing
	// one more removes the oldest ones. Default 10,000; zero means the
	// default, a negative value means no cap. Expired negative entries are
	// removed by Sweep whatever their number.
	MaxNegativeEntries int
	// MemoryBodyLimit is the largest body kept in memory for fast hits.
	// Default 64 KiB; zero means the default, negative disables it.
	MemoryBodyLimit int64
	// MemoryClasses are classes whose bodies are kept in memory whatever
	// their size, within MemoryBudget: small files every client asks for
	// (the compact index's /versions). Default none.
	MemoryClasses []string
	// MemoryBudget bounds the bytes of bodies kept in memory; when a body
	// does not fit, the least recently used ones are dropped from memory
	// (they stay stored). Default 64 MiB; zero means the default.
	MemoryBudget int64
	// FillTimeout bounds one coalesced fill, detached from the clients that
	// wait for it. Default 10m; zero means the default.
	FillTimeout time.Duration
	// ReadOnly opens the file without writing (for inspection commands).
	ReadOnly bool
}

// DefaultOptions returns the values zero fields select.
func DefaultOptions() Options {
	return Options{LockTimeout: time.Second, MaxSize: 10 << 30, MaxNegativeEntries: 10_000,
		MemoryBodyLimit: 64 << 10, MemoryBudget: 64 << 20, FillTimeout: 10 * time.Minute}
}

// withDefaults returns o with zero fields replaced by defaults.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	o.LockTimeout = cmp.Or(o.LockTimeout, d.LockTimeout)
	o.MaxSize = cmp.Or(o.MaxSize, d.MaxSize)
	o.MaxNegativeEntries = cmp.Or(o.MaxNegativeEntries, d.MaxNegativeEntries)
	o.MemoryBodyLimit = cmp.Or(o.MemoryBodyLimit, d.MemoryBodyLimit)
	o.MemoryBudget = cmp.Or(o.MemoryBudget, d.MemoryBudget)
	o.FillTimeout = cmp.Or(o.FillTimeout, d.FillTimeout)
	return o
}

// FileName is the name of the bbolt file inside the data directory.
const FileName = "cache.db"

// item is the in-memory index record of one entry.
type item struct {
	// entry is the current metadata; replaced, never mutated, once published.
	entry atomic.Pointer[Entry]
	// lastAccess is the unix time of the last hit, for LRU eviction.
	lastAccess atomic.Int64
	// hits counts lookups answered with this entry.
	hits atomic.Int64
	// flushed is the hits value last written to the access bucket.
	flushed atomic.Int64
}

// Store is the bbolt-backed cache. It is safe for concurrent use.
type Store struct {
	db *bolt.DB
	// file is the bbolt file opened for reading, which Readers of large
	// bodies read with pread (see Reader.copyChunk).
	file    *os.File
	opts    Options
	tmpDir  string
	flights singleflight.Group
	// now is the clock, replaceable in tests.
	now func() time.Time

	// wmu is held from a write transaction that changes entries until the
	// index shows its result, so the index and the file change in the same
	// order. bbolt serialises writers anyway.
	wmu sync.Mutex

	mu    sync.RWMutex
	items map[string]*item
	// negatives holds the keys of the negative entries in items.
	negatives map[string]struct{}
	// usedBytes is the total footprint of all entries (see Options.MaxSize).
	usedBytes atomic.Int64
	// memoryBytes is the total of bodies held in memory.
	memoryBytes atomic.Int64
	// memoryMu is held by the one caller that drops memory bodies to make
	// room for another (see roomInMemory).
	memoryMu sync.Mutex
	// evictions counts entries removed by the size cap.
	evictions atomic.Int64
	// pendingCount is the number of keys in the pending bucket
	// (PendingCount).
	pendingCount atomic.Int64
	// trimMu is held while the oldest negative entries are removed, so
	// that concurrent commits do not remove them twice.
	trimMu sync.Mutex

	// lastWrite is the outcome of the most recent write transaction, which
	// Writable reports.
	lastWrite atomic.Pointer[writeOutcome]
	// writes counts the write transactions committed since Open.
	writes atomic.Int64
	// probeMu is held while Writable tries a write of its own.
	probeMu sync.Mutex

	readersMu sync.Mutex
	// readers counts open Readers per body ID.
	readers map[uint64]int
	// doomed holds body IDs to delete once their last reader closes.
	doomed map[uint64]bool
	// retiring holds body IDs being deleted by a write transaction that has
	// not yet committed and reached the index: Open refuses them.
	retiring map[uint64]bool
}

// Open opens (creating if needed) the cache in dir. It fails with ErrLocked
// within opts.LockTimeout when another process holds the file.
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	tmp := filepath.Join(dir, "tmp")
	if !opts.ReadOnly {
		if err := os.MkdirAll(tmp, 0o750); err != nil {
			return nil, fmt.Errorf("cache: create %s: %w", tmp, err)
		}
	}
	path := filepath.Join(dir, FileName)
	db, err := openCurrent(path, &bolt.Options{
		Timeout:      opts.LockTimeout,
		ReadOnly:     opts.ReadOnly,
		FreelistType: bolt.FreelistMapType,
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	}
	file, err := os.Open(path)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	}
	if !opts.ReadOnly {
		// Staging files of a previous process are garbage by definition;
		// only the lock holder may say so (they may be a live process's).
		if old, err := os.ReadDir(tmp); err == nil {
			for _, f := range old {
				_ = os.Remove(filepath.Join(tmp, f.Name()))
			}
		}
	}
	s := &Store{
		db:        db,
		file:      file,
		opts:      opts,
		tmpDir:    tmp,
		now:       time.Now,
		items:     make(map[string]*item),
		negatives: make(map[string]struct{}),
		readers:   make(map[uint64]int),
		doomed:    make(map[uint64]bool),
		retiring:  make(map[uint64]bool),
	}
	if err := s.init(); err != nil {
		_ = file.Close()
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// init creates the buckets, checks the schema, loads the index and collects
// orphaned chunks.
func (s *Store) init() error {
	if !s.opts.ReadOnly {
		err := s.update(func(tx *bolt.Tx) error {
			for _, name := range [][]byte{bucketMeta, bucketEntries, bucketChunks, bucketAccess, bucketPending} {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return err
				}
			}
			meta := tx.Bucket(bucketMeta)
			if meta.Get(keySchema) == nil {
				return meta.Put(keySchema, schemaBytes())
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("cache: initialise: %w", err)
		}
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil // read-only open of an empty file
		}
		if v := meta.Get(keySchema); string(v) != string(schemaBytes()) {
			return fmt.Errorf("%w: file has %x, this build reads %d", ErrSchema, v, SchemaVersion)
		}
		s.pendingCount.Store(countPending(tx))
		access := tx.Bucket(bucketAccess)
		return tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			e, err := decodeEntry(string(k), v)
			if err != nil {
				// A corrupt record is skipped here and reported by Verify.
				return nil
			}
			it := &item{}
			it.entry.Store(e)
			last, hits := parseAccess(access.Get(k))
			if last == 0 {
				last = e.StoredAt.Unix()
			}
			it.lastAccess.Store(last)
			it.hits.Store(hits)
			it.flushed.Store(hits)
			s.items[e.Key] = it
			s.remember(e)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("cache: load index: %w", err)
	}
	if s.opts.ReadOnly {
		return nil
	}
	return s.collectOrphans()
}

// schemaBytes encodes SchemaVersion as stored in the meta bucket.
func schemaBytes() []byte {
	return []byte{byte(SchemaVersion >> 24), byte(SchemaVersion >> 16), byte(SchemaVersion >> 8), byte(SchemaVersion)}
}

// collectOrphans deletes chunks whose body ID no entry references.
func (s *Store) collectOrphans() error {
	live := make(map[uint64]bool, len(s.items))
	for _, it := range s.items {
		e := it.entry.Load()
		live[e.ID] = true
		if e.GzipID != 0 {
			live[e.GzipID] = true
		}
	}
	return s.update(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketChunks).Cursor()
		for k, _ := c.First(); k != nil; {
			if len(k) == chunkKeyLen && live[idOf(k)] {
				k, _ = c.Next()
				continue
			}
			if err := c.Delete(); err != nil {
				return err
			}
			k, _ = c.Seek(k)
		}
		return nil
	})
}

// Close closes the bbolt file after flushing access times. Writable reports
// an error from then on.
func (s *Store) Close() error {
	if !s.opts.ReadOnly {
		_ = s.flushAccess()
	}
	err := errors.Join(s.db.Close(), s.file.Close())
	s.lastWrite.Store(&writeOutcome{err: errClosed, at: s.now()})
	return err
}

// errClosed is what Writable reports once the store is closed.
var errClosed = errors.New("cache: store is closed")

// Path is the bbolt file's path.
func (s *Store) Path() string { return s.db.Path() }

// writeOutcome is the result of a write transaction and when it ended.
type writeOutcome struct {
	err error
	at  time.Time
}

// writableRecheck is how long after a failed write Writable tries a write
// of its own, so that readiness returns once the cause is gone even when no
// request writes.
const writableRecheck = 5 * time.Second

// Writable reports whether the store can write (readiness): the outcome of
// its most recent write transaction. It never writes while writes succeed,
// so readiness probes cost nothing; after a failed write it tries one write
// itself at most every writableRecheck.
func (s *Store) Writable() error {
	if s.opts.ReadOnly {
		return errors.New("cache: opened read-only")
	}
	last := s.lastWrite.Load()
	if last.err == nil || s.now().Sub(last.at) < writableRecheck || !s.probeMu.TryLock() {
		return last.err
	}
	defer s.probeMu.Unlock()
	return s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, schemaBytes())
	})
}

// update runs fn in a write transaction and records whether the file took
// it, for Writable. An error of fn itself (a conflict, a short staging
// file) says nothing about the file and is not recorded.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	var fnErr error
	err := s.db.Update(func(tx *bolt.Tx) error {
		fnErr = fn(tx)
		return fnErr
	})
	if fnErr == nil {
		if err == nil {
			s.writes.Add(1)
		}
		s.lastWrite.Store(&writeOutcome{err: err, at: s.now()})
	}
	return err
}

// Lookup returns the entry for key and records the access, or nil. The entry
// must not be modified. Bodies of small entries are loaded into memory on
// first use.
func (s *Store) Lookup(key string) *Entry {
	it := s.item(key)
	if it == nil {
		return nil
	}
	it.lastAccess.Store(s.now().Unix())
	it.hits.Add(1)
	e := it.entry.Load()
	if e.Body == nil && s.keepsInMemory(e) && s.roomInMemory(e.Size+e.GzipSize) {
		e = s.loadMemoryBody(it, e)
	}
	return e
}

// Peek returns the entry for key without counting an access, or nil.
func (s *Store) Peek(key string) *Entry {
	it := s.item(key)
	if it == nil {
		return nil
	}
	return it.entry.Load()
}

// item returns the index record of key, or nil.
func (s *Store) item(key string) *item {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.items[key]
}

// readBody copies body id of length size out of tx.
func readBody(tx *bolt.Tx, id uint64, size int64) ([]byte, error) {
	out := make([]byte, 0, size)
	b := tx.Bucket(bucketChunks)
	for i := uint32(0); int64(len(out)) < size; i++ {
		v := b.Get(chunkKey(id, i))
		if v == nil {
			return nil, fmt.Errorf("cache: body %d: chunk %d missing", id, i)
		}
		out = append(out, v...)
	}
	if int64(len(out)) != size {
		return nil, fmt.Errorf("cache: body %d: %d bytes stored, %d recorded", id, len(out), size)
	}
	return out, nil
}

// idOf returns the body ID of a chunk key.
func idOf(k []byte) uint64 {
	return uint64(k[0])<<56 | uint64(k[1])<<48 | uint64(k[2])<<40 | uint64(k[3])<<32 |
		uint64(k[4])<<24 | uint64(k[5])<<16 | uint64(k[6])<<8 | uint64(k[7])
}

// Fill coalesces concurrent misses for key: the first caller runs load on a
// context detached from ctx with the FillTimeout; the others wait for its
// result. Inside the flight, an entry for which fresh returns true is
// returned without calling load (another flight may just have stored it).
// shared reports whether the result was produced for another caller too.
// A caller whose ctx ends stops waiting; the fill goes on for the others.
func (s *Store) Fill(ctx context.Context, key string, fresh func(*Entry) bool,
	load func(ctx context.Context) (*Entry, error)) (e *Entry, shared bool, err error) {
	ch := s.flights.DoChan(key, func() (any, error) {
		if cur := s.Lookup(key); cur != nil && fresh(cur) {
			return cur, nil
		}
		fillCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.FillTimeout)
		defer cancel()
		return load(fillCtx)
	})
	select {
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Shared, r.Err
		}
		e, _ := r.Val.(*Entry)
		return e, r.Shared, nil
	}
}

// Invalidate makes the entry for key stale at once (mutable entries) so the
// next request revalidates it. It reports whether an entry existed.
func (s *Store) Invalidate(key string) (bool, error) {
	it := s.item(key)
	if it == nil {
		return false, nil
	}
	old := it.entry.Load()
	if old.Immutable {
		return true, s.Delete(key)
	}
	stale := Expired
	s.wmu.Lock()
	defer s.wmu.Unlock()
	err := s.update(func(tx *bolt.Tx) error {
		stored := storedEntry(tx, key)
		if stored == nil || stored.ID != old.ID {
			return nil // replaced meanwhile: the new entry is what counts
		}
		stored.FreshUntil = stale
		return tx.Bucket(bucketEntries).Put([]byte(key), encodeEntry(stored))
	})
	if err != nil {
		return true, fmt.Errorf("cache: invalidate %s: %w", key, err)
	}
	// The entry may have gained its memory body since old was read: retry
	// on the current copy rather than lose the invalidation.
	it = s.item(key)
	for it != nil {
		cur := it.entry.Load()
		if cur.ID != old.ID {
			break // replaced meanwhile
		}
		c := *cur
		c.FreshUntil = stale
		if it.entry.CompareAndSwap(cur, &c) {
			break
		}
	}
	return true, nil
}

// Delete removes the entry for key; its body is freed once no reader uses it.
func (s *Store) Delete(key string) error {
	_, err := s.deleteKeys([]string{key}, nil)
	return err
}

// Purge deletes every entry whose key starts with prefix ("" deletes all)
// and reports how many were removed.
func (s *Store) Purge(prefix string) (int, error) {
	var keys []string
	s.mu.RLock()
	for k := range s.items {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			keys = append(keys, k)
		}
	}
	s.mu.RUnlock()
	return s.deleteKeys(keys, nil)
}

// deleteUnchanged removes the given entries in one transaction, each only
// while its key still holds the same body: one stored meanwhile stays.
func (s *Store) deleteUnchanged(victims []*Entry) (int, error) {
	keys := make([]string, len(victims))
	ids := make(map[string]uint64, len(victims))
	for i, e := range victims {
		keys[i], ids[e.Key] = e.Key, e.ID
	}
	return s.deleteKeys(keys, func(e *Entry) bool { return e.ID == ids[e.Key] })
}

// deleteKeys removes the entries for keys in one transaction. When doomed
// is not nil, an entry stays unless doomed returns true for it as stored.
func (s *Store) deleteKeys(keys []string, doomed func(*Entry) bool) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var removed []string
	var freeNow, deferred []uint64
	var unpended int64
	err := s.update(func(tx *bolt.Tx) error {
		entries, access := tx.Bucket(bucketEntries), tx.Bucket(bucketAccess)
		for _, key := range keys {
			v := entries.Get([]byte(key))
			if v == nil {
				continue
			}
			e, err := decodeEntry(key, v)
			if err != nil {
				e = s.Peek(key) // an undecodable record: the index still names its bodies
			}
			if e != nil && doomed != nil && !doomed(e) {
				continue
			}
			if e != nil {
				now, later := s.releasable(e.ID, e.GzipID)
				freeNow, deferred = append(freeNow, now...), append(deferred, later...)
			}
			removed = append(removed, key)
			if err := entries.Delete([]byte(key)); err != nil {
				return err
			}
			if err := access.Delete([]byte(key)); err != nil {
				return err
			}
			dropped, err := unmarkPending(tx, key)
			if err != nil {
				return err
			}
			unpended += dropped
		}
		return deleteBodies(tx, freeNow)
	})
	if err != nil {
		s.settle(freeNow, deferred, false)
		return 0, fmt.Errorf("cache: delete: %w", err)
	}
	s.pendingCount.Add(-unpended)
	s.mu.Lock()
	for _, key := range removed {
		if it := s.items[key]; it != nil {
			s.forget(it.entry.Load())
			delete(s.items, key)
		}
	}
	s.mu.Unlock()
	s.settle(freeNow, deferred, true)
	return len(removed), nil
}

// forget updates the byte counters and the negative keys for an entry
// leaving the index. The caller holds mu for writing.
func (s *Store) forget(e *Entry) {
	s.usedBytes.Add(-e.footprint())
	if e.Body != nil {
		s.memoryBytes.Add(-(e.Size + e.GzipSize))
	}
	delete(s.negatives, e.Key)
}

// remember updates the byte counters and the negative keys for an entry
// entering the index. The caller holds mu for writing.
func (s *Store) remember(e *Entry) {
	s.usedBytes.Add(e.footprint())
	if e.Body != nil {
		s.memoryBytes.Add(e.Size + e.GzipSize)
	}
	if e.negative() {
		s.negatives[e.Key] = struct{}{}
	}
}

// releasable splits ids into those no reader uses (to delete in the caller's
// transaction; Open refuses them from now on) and those marked for deletion
// when their last reader closes. Zero IDs are ignored. The caller holds wmu
// and calls settle once the index shows the transaction's outcome.
func (s *Store) releasable(ids ...uint64) (now, later []uint64) {
	s.readersMu.Lock()
	defer s.readersMu.Unlock()
	for _, id := range ids {
		if id == 0 {
			continue
		}
		if s.readers[id] > 0 {
			s.doomed[id] = true
			later = append(later, id)
			continue
		}
		s.retiring[id] = true
		now = append(now, id)
	}
	return now, later
}

// settle ends what releasable started once the index is up to date: the
// bodies deleted at once are no longer referenced by the index (Open refuses
// them from there), and if the transaction did not commit, the deferred
// deletions are withdrawn because those bodies are still referenced.
func (s *Store) settle(now, later []uint64, committed bool) {
	s.readersMu.Lock()
	defer s.readersMu.Unlock()
	for _, id := range now {
		delete(s.retiring, id)
	}
	if !committed {
		for _, id := range later {
			delete(s.doomed, id)
		}
	}
}

// deleteBodies removes every chunk of the given body IDs.
func deleteBodies(tx *bolt.Tx, ids []uint64) error {
	c := tx.Bucket(bucketChunks).Cursor()
	for _, id := range ids {
		prefix := chunkPrefix(id)
		for k, _ := c.Seek(prefix); k != nil && len(k) == chunkKeyLen && idOf(k) == id; k, _ = c.Seek(prefix) {
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return nil
}

// acquire registers a reader of body id of the entry for key, unless the
// body is no longer (or soon no longer) stored: a body no reader holds must
// still be referenced by the index and not be in a deleting transaction.
func (s *Store) acquire(key string, id uint64) bool {
	s.readersMu.Lock()
	defer s.readersMu.Unlock()
	if s.retiring[id] {
		return false
	}
	if s.readers[id] == 0 {
		cur := s.Peek(key)
		if cur == nil || cur.ID != id && cur.GzipID != id {
			return false
		}
	}
	s.readers[id]++
	return true
}

// release unregisters a reader of body id and deletes the body if it was
// superseded while being read.
func (s *Store) release(id uint64) {
	s.readersMu.Lock()
	s.readers[id]--
	last := s.readers[id] == 0
	if last {
		delete(s.readers, id)
	}
	doomed := last && s.doomed[id]
	if doomed {
		// The transaction that doomed the body may not have reached the
		// index yet, which then still offers it: refuse new readers now.
		s.retiring[id] = true
	}
	s.readersMu.Unlock()
	if !doomed {
		return
	}
	// Wait for that transaction to commit (or fail) and reach the index.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.readersMu.Lock()
	// Withdrawn if the transaction failed; retiring kept new readers out.
	doomed = s.doomed[id] && s.readers[id] == 0
	if doomed {
		delete(s.doomed, id)
	}
	s.readersMu.Unlock()
	if doomed {
		_ = s.update(func(tx *bolt.Tx) error { return deleteBodies(tx, []uint64{id}) })
	}
	s.readersMu.Lock()
	delete(s.retiring, id)
	s.readersMu.Unlock()
}

// inUse reports whether any reader holds a body of e.
func (s *Store) inUse(e *Entry) bool {
	s.readersMu.Lock()
	defer s.readersMu.Unlock()
	return s.readers[e.ID] > 0 || (e.GzipID != 0 && s.readers[e.GzipID] > 0)
}
