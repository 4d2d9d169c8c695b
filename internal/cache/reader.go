package cache

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"unsafe"

	bolt "go.etcd.io/bbolt"
)

// Reader streams one stored body. Each Read copies out of bbolt inside its
// own short read transaction, so a slow client never holds one open. While
// the Reader is open the body is not deleted, even if its entry is replaced,
// purged or evicted. The Reader of a Live body (Store.StageLive) waits
// for the bytes it reads to be staged. Close it when done.
type Reader struct {
	s    *Store
	id   uint64
	size int64
	off  int64
	end  int64
	// mem serves bodies already held in memory.
	mem *bytes.Reader
	// spill serves the body of a transient entry from its staging file
	// (and keeps that file open while the Reader is in use).
	spill *spillFile
	// at caches where the chunk being read of a large body lies in the
	// cache file.
	at chunkAt
}

// Open returns a Reader of e's identity body, or of its gzip form when gzip
// is true and the entry has one.
func (s *Store) Open(e *Entry, gzip bool) (*Reader, error) {
	id, size, mem := e.ID, e.Size, e.Body
	if gzip {
		if e.GzipID == 0 {
			return nil, fmt.Errorf("cache: %s has no gzip body", e.Key)
		}
		id, size, mem = e.GzipID, e.GzipSize, e.Gzip
	}
	if e.spill != nil {
		return &Reader{size: size, end: size, spill: e.spill}, nil
	}
	r := &Reader{s: s, id: id, size: size, end: size}
	if mem != nil || size == 0 {
		r.mem = bytes.NewReader(mem)
		return r, nil
	}
	if !s.acquire(e.Key, id) {
		return nil, fmt.Errorf("%w: %s: body %d was replaced or removed", ErrNotFound, e.Key, id)
	}
	return r, nil
}

// Staged reports whether the body is read from a staging file (a Live
// body or a transient entry's spilled one), not from the cache file or
// memory.
func (r *Reader) Staged() bool { return r.spill != nil }

// InMemory reports whether the body is read from memory, not from a file.
func (r *Reader) InMemory() bool { return r.mem != nil }

// Size is the length of the whole body.
func (r *Reader) Size() int64 { return r.size }

// Limit restricts the Reader to bytes [start, end) of the body; the range is
// clipped to the body.
func (r *Reader) Limit(start, end int64) {
	end = min(max(end, 0), r.size)
	start = min(max(start, 0), end)
	r.off, r.end = start, end
	if r.mem != nil {
		_, _ = r.mem.Seek(start, io.SeekStart)
	}
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	if want := r.end - r.off; int64(len(p)) > want {
		p = p[:want]
	}
	if r.mem != nil {
		n, err := r.mem.Read(p)
		r.off += int64(n)
		return n, err
	}
	if r.spill != nil {
		if r.spill.live != nil {
			avail, err := r.spill.live.readable(r.off, r.end, nil)
			if err != nil {
				return 0, err
			}
			p = p[:min(int64(len(p)), avail)]
		}
		n, err := r.spill.f.ReadAt(p, r.off)
		r.off += int64(n)
		return n, err
	}
	n := 0
	err := r.s.db.View(func(tx *bolt.Tx) error {
		for n < len(p) {
			c, err := r.copyChunk(tx, p[n:])
			n += c
			r.off += int64(c)
			if err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// copyChunk copies into p what it can of the body from r.off to the end of
// that offset's chunk, in tx. A large body is read from the cache file with
// pread, not through bbolt's mapping of it: streaming a 50 MB gem to many
// clients then adds none of its pages to gemproxy's resident memory.
// Smaller bodies are copied out of the mapping, where hot ones stay.
func (r *Reader) copyChunk(tx *bolt.Tx, p []byte) (int, error) {
	index, within := r.chunkPos()
	if r.size >= releaseBodyMin {
		at, inFile, err := r.locate(tx, index, within)
		if err != nil {
			return 0, err
		}
		if inFile {
			return r.s.file.ReadAt(p[:min(int64(len(p)), at.limit-within)], at.offset+within)
		}
	}
	v, err := r.chunk(tx, index, within)
	if err != nil {
		return 0, err
	}
	return copy(p, v[within:]), nil
}

// chunkPos returns the chunk that holds the body's byte at r.off, and
// where that byte lies within it.
func (r *Reader) chunkPos() (index uint32, within int64) {
	return uint32(r.off / ChunkSize), r.off % ChunkSize
}

// chunk returns the part of chunk index that belongs to r's body, checking
// that it reaches past within.
func (r *Reader) chunk(tx *bolt.Tx, index uint32, within int64) ([]byte, error) {
	v := tx.Bucket(bucketChunks).Get(chunkKey(r.id, index))
	// A chunk may have grown by an append since this body's length was
	// recorded: never read past this body's own end.
	limit := min(int64(len(v)), r.size-int64(index)*ChunkSize)
	if v == nil || within >= limit {
		return nil, fmt.Errorf("cache: body %d: chunk %d missing or short", r.id, index)
	}
	return v[:limit], nil
}

// chunkAt is where one chunk of a body lies in the cache file, as seen by
// the read transactions of one bbolt transaction ID: only a commit moves a
// value.
type chunkAt struct {
	known  bool
	txid   int
	index  uint32
	offset int64 // of the chunk's first byte in the file
	limit  int64 // bytes of the chunk that belong to the body
}

// locate returns where chunk index lies in the cache file, looking it up
// only when it is not the chunk located last or a commit came in between.
// A lookup maps the chunk's first pages (bbolt reads the key there): they
// are released at once. inFile is false when bbolt handed out a copy of
// the value instead of a slice of its mapping of the file (an inline
// bucket's values): it is read from the mapping then.
func (r *Reader) locate(tx *bolt.Tx, index uint32, within int64) (at chunkAt, inFile bool, err error) {
	if r.at.known && r.at.txid == tx.ID() && r.at.index == index {
		return r.at, true, nil
	}
	v, err := r.chunk(tx, index, within)
	if err != nil {
		return chunkAt{}, false, err
	}
	// The mapping of the whole file starts at Info().Data.
	offset := int64(uintptr(unsafe.Pointer(unsafe.SliceData(v))) - tx.DB().Info().Data)
	if offset < 0 || offset+int64(len(v)) > tx.Size() {
		return chunkAt{}, false, nil
	}
	releasePages(tx, v)
	r.at = chunkAt{known: true, txid: tx.ID(), index: index, offset: offset, limit: int64(len(v))}
	return r.at, true, nil
}

// streamBufferSize is the most WriteTo copies out of the cache file per
// read transaction and holds while its client takes the bytes: what one
// stream of a large body costs in memory (500 streams: 16 MiB).
const streamBufferSize = 32 << 10

// streamBuffers recycles the buffers of WriteTo.
var streamBuffers = sync.Pool{New: func() any { b := make([]byte, streamBufferSize); return &b }}

// WriteTo writes the rest of the body to w a slice at a time: each slice is
// copied out of bbolt inside its own short read transaction and written
// after it ended, so a slow client never holds a transaction open. io.Copy
// (and so fasthttp's body streaming) uses it instead of many 4 KiB Reads.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	if r.mem != nil {
		n, err := io.Copy(w, io.LimitReader(r.mem, r.end-r.off))
		r.off += n
		return n, err
	}
	var total int64
	for r.off < r.end {
		n, err := r.writeSlice(w)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// writeSlice copies the next slice of the body, never across a chunk
// boundary (one chunk lookup per transaction), into a pooled buffer and
// writes it to w. The buffer goes back to the pool before the next slice,
// so streams share buffers instead of each keeping one for its whole
// download; the reader of a Live body waits for its next bytes before it
// takes one.
func (r *Reader) writeSlice(w io.Writer) (int64, error) {
	if r.spill != nil && r.spill.live != nil {
		// Wait for the bytes of a growing body without holding a buffer.
		if _, err := r.spill.live.readable(r.off, r.end, nil); err != nil {
			return 0, err
		}
	}
	bp := streamBuffers.Get().(*[]byte)
	defer streamBuffers.Put(bp)
	buf := (*bp)[:min(streamBufferSize, ChunkSize-r.off%ChunkSize, r.end-r.off)]
	n, err := r.Read(buf)
	if n > 0 {
		if m, werr := w.Write(buf[:n]); werr != nil {
			return int64(m), werr
		}
	}
	return int64(n), err
}

// Close releases the body.
func (r *Reader) Close() error {
	if r.mem == nil && r.s != nil {
		r.s.release(r.id)
		r.s = nil
	}
	return nil
}

// releaseBodyMin is the smallest body read from the cache file with pread
// rather than through the file mapping (see copyChunk): large, rarely hot
// gems. Smaller bodies stay mapped, so hot ones are read without faults.
const releaseBodyMin = 8 << 20
