package cache

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/klauspost/compress/gzip"
	bolt "go.etcd.io/bbolt"
)

// stagingMemoryLimit is the largest body staged in memory; larger bodies
// spill to a temporary file in the data directory.
const stagingMemoryLimit = 1 << 20

// Staging collects a body before it is committed, hashing it as it is
// written. It is not safe for concurrent use. Discard it when not committed.
type Staging struct {
	s    *Store
	mem  bytes.Buffer
	file *os.File
	size int64
	md5  hash.Hash
	sha  hash.Hash
	// live, for a StageLive staging, is told of every write.
	live *Live
}

// Stage starts a new staged body.
func (s *Store) Stage() *Staging {
	return &Staging{s: s, md5: md5.New(), sha: sha256.New()}
}

// Write appends p to the staged body.
func (st *Staging) Write(p []byte) (int, error) {
	if st.file == nil && int64(st.mem.Len()+len(p)) > stagingMemoryLimit {
		f, err := os.CreateTemp(st.s.tmpDir, "fill-*")
		if err != nil {
			return 0, fmt.Errorf("cache: staging file: %w", err)
		}
		if _, err := f.Write(st.mem.Bytes()); err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			return 0, fmt.Errorf("cache: staging file: %w", err)
		}
		st.file = f
		st.mem = bytes.Buffer{}
	}
	var err error
	if st.file != nil {
		_, err = st.file.Write(p)
	} else {
		st.mem.Write(p)
	}
	if err != nil {
		return 0, fmt.Errorf("cache: staging write: %w", err)
	}
	st.md5.Write(p)
	st.sha.Write(p)
	st.size += int64(len(p))
	if st.live != nil {
		st.live.grew(st.size)
	}
	return len(p), nil
}

// Size is the number of bytes staged so far.
func (st *Staging) Size() int64 { return st.size }

// SHA256 is the SHA-256 of the bytes staged so far.
func (st *Staging) SHA256() (sum [32]byte) {
	copy(sum[:], st.sha.Sum(nil))
	return sum
}

// MD5 is the MD5 of the bytes staged so far.
func (st *Staging) MD5() (sum [16]byte) {
	copy(sum[:], st.md5.Sum(nil))
	return sum
}

// Discard drops the staged body.
func (st *Staging) Discard() {
	if st.file != nil {
		_ = st.file.Close()
		_ = os.Remove(st.file.Name())
		st.file = nil
	}
	st.mem = bytes.Buffer{}
}

// Reader returns the staged bytes from the start, to be read before the
// next Write, Commit or Discard.
func (st *Staging) Reader() (io.Reader, error) {
	if st.file == nil {
		return bytes.NewReader(st.mem.Bytes()), nil
	}
	if _, err := st.file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("cache: staging rewind: %w", err)
	}
	return st.file, nil
}

// CommitOptions says how a staged body is stored.
type CommitOptions struct {
	// Gzip stores a gzip-compressed form next to the identity body.
	Gzip bool
	// Appendable keeps hash states so Append can extend the body cheaply.
	Appendable bool
	// Pending records the key as pending upload to a fleet's shared store
	// (PendingUploads), in the transaction that stores the entry.
	Pending bool
	// IfAbsent commits only when the key holds no entry with a body (none,
	// or a negative one, which is replaced): otherwise Commit returns
	// ErrExists and writes nothing. Of concurrent commits of one key with
	// IfAbsent, exactly one stores its entry.
	IfAbsent bool
	// IfMatch, when not nil, commits only while the entry stored for its
	// key (the key committed) still holds IfMatch's body: the same ID
	// (body IDs are never reused) and size (an append keeps the ID).
	// Otherwise, or when there is no entry, Commit returns ErrConflict and
	// writes nothing.
	IfMatch *Entry
}

// check returns ErrExists or ErrConflict when the entry stored for key in
// tx fails the condition of o (IfAbsent, IfMatch), nil when o has none.
func (o CommitOptions) check(tx *bolt.Tx, key string) error {
	if o.IfAbsent {
		if cur := storedEntry(tx, key); cur != nil && !cur.negative() {
			return ErrExists
		}
	}
	if o.IfMatch != nil {
		return currentIs(tx, o.IfMatch)
	}
	return nil
}

// Commit stores the staged body as the entry for e.Key, replacing any
// previous one, in one transaction. The caller fills e's Class, Status,
// Header, FreshUntil, StoredAt and Immutable; Commit sets the ID, sizes and
// hashes. The staging is consumed (discarded) whatever the outcome.
func (s *Store) Commit(st *Staging, e Entry, opts CommitOptions) (*Entry, error) {
	defer st.Discard()
	if err := storable(&e); err != nil {
		return nil, err
	}
	e.Size = st.size
	e.MD5, e.SHA256 = st.MD5(), st.SHA256()
	e.Body, e.Gzip, e.HashState, e.GzipSize = nil, nil, nil, 0
	if opts.Appendable {
		state, err := marshalStates(st.md5, st.sha)
		if err != nil {
			return nil, err
		}
		e.HashState = state
	}
	var gz *Staging
	if opts.Gzip {
		r, err := st.Reader()
		if err != nil {
			return nil, err
		}
		if gz, err = s.compress(r); err != nil {
			return nil, err
		}
		defer gz.Discard()
		e.GzipSize = gz.size
	}
	r, err := st.Reader()
	if err != nil {
		return nil, err
	}
	stored, err := s.commit(&e, r, gz, opts)
	if err == nil && stored.negative() {
		// The entry is stored whatever this does; a failure is left to
		// the sweeper, which caps the negative entries too.
		_ = s.capNegatives()
	}
	return stored, err
}

// compress gzips r into a new staging. It uses klauspost/compress, about
// three times as fast as compress/gzip at the default level: every /versions
// append re-compresses the whole file (BenchmarkAppendVersions).
func (s *Store) compress(r io.Reader) (*Staging, error) {
	gz := s.Stage()
	w, _ := gzip.NewWriterLevel(gz, gzip.DefaultCompression)
	if _, err := io.Copy(w, r); err != nil {
		gz.Discard()
		return nil, fmt.Errorf("cache: compress: %w", err)
	}
	if err := w.Close(); err != nil {
		gz.Discard()
		return nil, fmt.Errorf("cache: compress: %w", err)
	}
	return gz, nil
}

// storable checks the fields of e that the caller sets and decodeEntry
// insists on, so that nothing is stored that cannot be read back at Open.
func storable(e *Entry) error {
	if e.Status < 100 || e.Status > 599 {
		return fmt.Errorf("cache: %s: status %d cannot be stored", e.Key, e.Status)
	}
	return nil
}

// commit writes e (sizes set) with identity body r and optional gzip body in
// one transaction, with its key marked pending upload when opts.Pending is
// set, and publishes it in the index. The transaction checks opts'
// condition before it writes anything; so does the one that allocates the
// bodies of a large entry, so that a loser writes no chunk ahead.
func (s *Store) commit(e *Entry, r io.Reader, gz *Staging, opts CommitOptions) (*Entry, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var gr io.Reader
	gzSize := int64(0)
	if gz != nil {
		var err error
		if gr, err = gz.Reader(); err != nil {
			return nil, err
		}
		gzSize = gz.size
	}
	// A large body is written ahead in transactions of its own, so a write
	// transaction (which bbolt builds in memory) never holds more than
	// commitBatch bytes; the entry that makes it visible comes last.
	body := pendingBody{r: r, left: e.Size}
	gzBody := pendingBody{r: gr, left: gzSize}
	large := e.Size+gzSize > commitBatch
	if large {
		if err := s.update(func(tx *bolt.Tx) error {
			if err := opts.check(tx, e.Key); err != nil {
				return err
			}
			return allocateBodies(tx.Bucket(bucketChunks), e, gz != nil)
		}); err != nil {
			return nil, fmt.Errorf("cache: commit %s: %w", e.Key, err)
		}
		if err := s.writeAhead(e.ID, &body); err != nil {
			return nil, s.dropPartial(e, err)
		}
		if err := s.writeAhead(e.GzipID, &gzBody); err != nil {
			return nil, s.dropPartial(e, err)
		}
	}
	var freeNow, freeLater []uint64
	var pended int64
	err := s.update(func(tx *bolt.Tx) error {
		if err := opts.check(tx, e.Key); err != nil {
			return err
		}
		chunks := tx.Bucket(bucketChunks)
		if !large {
			if err := allocateBodies(chunks, e, gz != nil); err != nil {
				return err
			}
		}
		if err := writeChunks(chunks, e.ID, body.next, body.r, body.left); err != nil {
			return err
		}
		if gz != nil {
			if err := writeChunks(chunks, e.GzipID, gzBody.next, gzBody.r, gzBody.left); err != nil {
				return err
			}
		}
		entries := tx.Bucket(bucketEntries)
		if prev := entries.Get([]byte(e.Key)); prev != nil {
			old, err := decodeEntry(e.Key, prev)
			if err != nil {
				old = s.Peek(e.Key) // an undecodable record: the index still names its bodies
			}
			if old != nil {
				freeNow, freeLater = s.releasable(old.ID, old.GzipID)
				if err := deleteBodies(tx, freeNow); err != nil {
					return err
				}
			}
		}
		if err := tx.Bucket(bucketAccess).Put([]byte(e.Key), accessValue(s.now().Unix(), 0)); err != nil {
			return err
		}
		if opts.Pending {
			var err error
			if pended, err = markPending(tx, e.Key); err != nil {
				return err
			}
		}
		return entries.Put([]byte(e.Key), encodeEntry(e))
	})
	if err != nil {
		s.settle(freeNow, freeLater, false)
		if large {
			return nil, s.dropPartial(e, err)
		}
		return nil, fmt.Errorf("cache: commit %s: %w", e.Key, err)
	}
	s.pendingCount.Add(pended)
	s.publish(e)
	s.settle(freeNow, freeLater, true)
	return e, nil
}

// commitBatch bounds the body bytes written in one transaction; a multiple
// of ChunkSize.
const commitBatch = 16 * ChunkSize

// pendingBody is a body being written: the chunk index and bytes left.
type pendingBody struct {
	r    io.Reader
	next uint32
	left int64
}

// allocateBodies gives e new body IDs (and a gzip one when gzipped).
func allocateBodies(chunks *bolt.Bucket, e *Entry, gzipped bool) error {
	var err error
	if e.ID, err = chunks.NextSequence(); err != nil {
		return err
	}
	e.GzipID = 0
	if gzipped {
		e.GzipID, err = chunks.NextSequence()
	}
	return err
}

// writeAhead writes all but the last batch of b as chunks of body id, one
// transaction per batch. The chunks stay invisible (no entry names id)
// until the final commit; a crash leaves orphans that Open collects.
func (s *Store) writeAhead(id uint64, b *pendingBody) error {
	for b.left > commitBatch {
		if err := s.update(func(tx *bolt.Tx) error {
			return writeChunks(tx.Bucket(bucketChunks), id, b.next, b.r, commitBatch)
		}); err != nil {
			return err
		}
		b.next += commitBatch / ChunkSize
		b.left -= commitBatch
	}
	return nil
}

// dropPartial deletes the chunks written ahead for e after a failed commit
// and returns the commit error.
func (s *Store) dropPartial(e *Entry, cause error) error {
	_ = s.update(func(tx *bolt.Tx) error { return deleteBodies(tx, []uint64{e.ID, e.GzipID}) })
	return fmt.Errorf("cache: commit %s: %w", e.Key, cause)
}

// publish makes e the current entry for its key in the index. The caller
// holds wmu and has just committed e.
func (s *Store) publish(e *Entry) {
	s.mu.Lock()
	it := s.items[e.Key]
	if it == nil {
		it = &item{}
		s.items[e.Key] = it
	}
	// Swap, not Load then Store: a memory body loaded meanwhile is
	// accounted for in what forget is given.
	if old := it.entry.Swap(e); old != nil {
		s.forget(old)
	}
	it.lastAccess.Store(s.now().Unix())
	s.remember(e)
	s.mu.Unlock()
}

// writeChunks stores size bytes of r as chunks of body id, starting at chunk
// index first.
func writeChunks(b *bolt.Bucket, id uint64, first uint32, r io.Reader, size int64) error {
	// No larger than the body: a 404 entry's few bytes must not cost a
	// whole chunk's allocation.
	buf := make([]byte, min(size, ChunkSize))
	for i, left := first, size; left > 0; i++ {
		n := int64(ChunkSize)
		if left < n {
			n = left
		}
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return fmt.Errorf("staged body shorter than recorded: %w", err)
		}
		// bbolt keeps a reference to the value until commit: copy.
		if err := b.Put(chunkKey(id, i), append([]byte(nil), buf[:n]...)); err != nil {
			return err
		}
		left -= n
	}
	return nil
}

// marshalStates serialises the MD5 and SHA-256 states (MD5 first).
func marshalStates(m, sh hash.Hash) ([]byte, error) {
	ms, err := m.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("cache: hash state: %w", err)
	}
	ss, err := sh.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("cache: hash state: %w", err)
	}
	out := append([]byte{byte(len(ms))}, ms...)
	return append(out, ss...), nil
}

// unmarshalStates restores the hashes saved by marshalStates.
func unmarshalStates(b []byte) (hash.Hash, hash.Hash, error) {
	if len(b) < 1 || int(b[0]) >= len(b) {
		return nil, nil, fmt.Errorf("%w: hash state", ErrCorruptEntry)
	}
	m, sh := md5.New(), sha256.New()
	if err := m.(encoding.BinaryUnmarshaler).UnmarshalBinary(b[1 : 1+int(b[0])]); err != nil {
		return nil, nil, fmt.Errorf("%w: md5 state: %v", ErrCorruptEntry, err)
	}
	if err := sh.(encoding.BinaryUnmarshaler).UnmarshalBinary(b[1+int(b[0]):]); err != nil {
		return nil, nil, fmt.Errorf("%w: sha256 state: %v", ErrCorruptEntry, err)
	}
	return m, sh, nil
}

// Appended describes the result of appending to an entry before it is
// committed, so the caller can verify it against the upstream's validators.
type Appended struct {
	// Size, MD5 and SHA256 describe the whole new body.
	Size   int64
	MD5    [16]byte
	SHA256 [32]byte
}

// ErrRejected is returned by Append when the check function refused the
// result; nothing was stored.
var ErrRejected = errors.New("cache: append rejected")

// Append extends the identity body of old (an Appendable entry that is still
// current for its key) with tail. check sees the sums of the whole new body
// and returns the entry to store (typically old with new headers and
// freshness) or an error to abort; nothing is stored then. The gzip form, if
// any, is rebuilt. The whole body is never re-hashed nor sent upstream again.
func (s *Store) Append(old *Entry, tail []byte, check func(Appended) (Entry, error)) (*Entry, error) {
	if len(old.HashState) == 0 {
		return nil, fmt.Errorf("cache: append %s: entry is not appendable", old.Key)
	}
	// Fail early (and before reading a body that may be gone) when old is
	// no longer current; the transaction below checks again.
	if cur := s.Peek(old.Key); cur == nil || !cur.sameBody(old) {
		return nil, fmt.Errorf("cache: append %s: %w", old.Key, ErrConflict)
	}
	m, sh, err := unmarshalStates(old.HashState)
	if err != nil {
		return nil, err
	}
	m.Write(tail)
	sh.Write(tail)
	var res Appended
	res.Size = old.Size + int64(len(tail))
	copy(res.MD5[:], m.Sum(nil))
	copy(res.SHA256[:], sh.Sum(nil))
	next, err := check(res)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRejected, err)
	}
	if err := storable(&next); err != nil {
		return nil, err
	}
	state, err := marshalStates(m, sh)
	if err != nil {
		return nil, err
	}
	next.Key, next.ID, next.Size, next.MD5, next.SHA256, next.HashState = old.Key, old.ID, res.Size, res.MD5, res.SHA256, state
	next.Body, next.Gzip, next.GzipID, next.GzipSize = nil, nil, 0, 0

	var gz *Staging
	if old.GzipID != 0 {
		body, err := s.Open(old, false)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("cache: append %s: %w", old.Key, ErrConflict)
		}
		if err != nil {
			return nil, err
		}
		gz, err = s.compress(io.MultiReader(body, bytes.NewReader(tail)))
		body.Close()
		if err != nil {
			return nil, err
		}
		defer gz.Discard()
		next.GzipSize = gz.size
	}

	s.wmu.Lock()
	defer s.wmu.Unlock()
	var freeNow, freeLater []uint64
	err = s.update(func(tx *bolt.Tx) error {
		if err := currentIs(tx, old); err != nil {
			return err
		}
		chunks := tx.Bucket(bucketChunks)
		// Rewrite the last partial chunk with the tail added, then new chunks.
		first := uint32(old.Size / ChunkSize)
		var head []byte
		if rem := old.Size % ChunkSize; rem != 0 {
			head = append([]byte(nil), chunks.Get(chunkKey(old.ID, first))...)
			if int64(len(head)) != rem {
				return fmt.Errorf("%w: last chunk has %d bytes, want %d", ErrCorruptEntry, len(head), rem)
			}
		}
		r := io.MultiReader(bytes.NewReader(head), bytes.NewReader(tail))
		if err := writeChunks(chunks, old.ID, first, r, int64(len(head)+len(tail))); err != nil {
			return err
		}
		if gz != nil {
			if next.GzipID, err = chunks.NextSequence(); err != nil {
				return err
			}
			gr, err := gz.Reader()
			if err != nil {
				return err
			}
			if err := writeChunks(chunks, next.GzipID, 0, gr, gz.size); err != nil {
				return err
			}
			freeNow, freeLater = s.releasable(old.GzipID)
			if err := deleteBodies(tx, freeNow); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketEntries).Put([]byte(old.Key), encodeEntry(&next))
	})
	if err != nil {
		s.settle(freeNow, freeLater, false)
		return nil, fmt.Errorf("cache: append %s: %w", old.Key, err)
	}
	s.publish(&next)
	s.settle(freeNow, freeLater, true)
	return &next, nil
}

// currentIs returns ErrConflict unless the entry stored for old.Key in tx
// still holds old's body as old knew it: nothing replaced it or appended to
// it since old was read.
func currentIs(tx *bolt.Tx, old *Entry) error {
	if cur := storedEntry(tx, old.Key); cur == nil || !cur.sameBody(old) {
		return ErrConflict
	}
	return nil
}

// storedEntry decodes the entry stored for key in tx; nil when there is
// none or its record does not decode.
func storedEntry(tx *bolt.Tx, key string) *Entry {
	v := tx.Bucket(bucketEntries).Get([]byte(key))
	if v == nil {
		return nil
	}
	e, err := decodeEntry(key, v)
	if err != nil {
		return nil
	}
	return e
}

// Renew stores new freshness and headers for the unchanged body of old (a
// 304 from upstream). It returns the entry now current.
func (s *Store) Renew(old *Entry, next Entry) (*Entry, error) {
	next.Key, next.ID, next.GzipID, next.Size, next.GzipSize = old.Key, old.ID, old.GzipID, old.Size, old.GzipSize
	next.MD5, next.SHA256, next.HashState, next.Body, next.Gzip = old.MD5, old.SHA256, old.HashState, old.Body, old.Gzip
	if err := storable(&next); err != nil {
		return nil, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	err := s.update(func(tx *bolt.Tx) error {
		if err := currentIs(tx, old); err != nil {
			return err
		}
		return tx.Bucket(bucketEntries).Put([]byte(old.Key), encodeEntry(&next))
	})
	if err != nil {
		return nil, fmt.Errorf("cache: renew %s: %w", old.Key, err)
	}
	// publish, not a bare Store: the memory body next carries (or drops)
	// must be accounted for.
	s.publish(&next)
	return &next, nil
}

// Bytes returns the whole staged body, reading it back from the staging
// file when it spilled.
func (st *Staging) Bytes() ([]byte, error) {
	if st.file == nil {
		return st.mem.Bytes(), nil
	}
	r, err := st.Reader()
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("cache: read staging file: %w", err)
	}
	return b, nil
}
