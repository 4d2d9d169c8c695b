package cache

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Reader streams one stored body. Each Read copies out of bbolt inside its
// own short read transaction, so a slow client never holds one open. While
// the Reader is open the body is not deleted, even if its entry is replaced,
// purged or evicted. Close it when done.
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
		n, err := r.spill.f.ReadAt(p, r.off)
		r.off += int64(n)
		return n, err
	}
	n := 0
	err := r.s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketChunks)
		for n < len(p) {
			index := uint32(r.off / ChunkSize)
			v := b.Get(chunkKey(r.id, index))
			within := r.off % ChunkSize
			// A chunk may have grown by an append since this body's length
			// was recorded: never read past this body's own end.
			limit := int64(len(v))
			if chunkEnd := r.size - int64(index)*ChunkSize; chunkEnd < limit {
				limit = chunkEnd
			}
			if v == nil || within >= limit {
				return fmt.Errorf("cache: body %d: chunk %d missing or short", r.id, index)
			}
			c := copy(p[n:], v[within:within+int64(min(int64(len(p)-n), limit-within))])
			if r.size >= releaseBodyMin {
				releasePages(v[within : within+int64(c)])
			}
			n += c
			r.off += int64(c)
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, nil
}

// writeBufferSize is the slice of a chunk WriteTo copies per transaction:
// a whole chunk, so one transaction per chunk.
const writeBufferSize = ChunkSize

// writeBuffers recycles the buffers of WriteTo.
var writeBuffers = sync.Pool{New: func() any { b := make([]byte, writeBufferSize); return &b }}

// WriteTo writes the rest of the body to w a chunk at a time: each chunk is
// copied out of bbolt inside its own short read transaction and written
// after it ended, so a slow client never holds a transaction open. io.Copy
// (and so fasthttp's body streaming) uses it instead of many 4 KiB Reads.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	if r.mem != nil {
		n, err := io.Copy(w, io.LimitReader(r.mem, r.end-r.off))
		r.off += n
		return n, err
	}
	bp := writeBuffers.Get().(*[]byte)
	defer writeBuffers.Put(bp)
	buf := *bp
	var total int64
	for r.off < r.end {
		// Never across a chunk boundary: one chunk lookup per transaction.
		want := min(writeBufferSize, ChunkSize-r.off%ChunkSize, r.end-r.off)
		n, err := r.Read(buf[:want])
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Close releases the body.
func (r *Reader) Close() error {
	if r.mem == nil && r.s != nil {
		r.s.release(r.id)
		r.s = nil
	}
	return nil
}

// releaseBodyMin is the smallest body whose pages are released from the
// file mapping as they are streamed (see releasePages): large, rarely hot
// gems. Smaller bodies stay mapped, so hot ones are read without faults.
const releaseBodyMin = 8 << 20
