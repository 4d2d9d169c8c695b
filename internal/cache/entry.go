package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Field is one response header stored with an entry and replayed on every hit.
type Field struct {
	// Name is the canonical header name.
	Name string
	// Value is the header value, exactly as it will be sent.
	Value string
}

// Entry is the metadata of one cached response. The body lives in chunks and
// is read with Store.Open; small bodies are also kept in memory (Body).
type Entry struct {
	// Key is the canonical upstream path and query the entry answers.
	Key string
	// ID names the chunks of the identity body; a replaced body gets a new ID.
	ID uint64
	// GzipID names the chunks of the gzip body, 0 when there is none.
	GzipID uint64
	// Class is the cache class of the route that stored it (bounded set).
	Class string
	// Status is the upstream status code stored (200, or 404 for negative entries).
	Status int
	// Header holds the response headers replayed on a hit, in order.
	Header []Field
	// Size is the length of the identity body in bytes.
	Size int64
	// GzipSize is the length of the stored gzip variant, 0 when there is none.
	GzipSize int64
	// MD5 is the MD5 of the identity body.
	MD5 [16]byte
	// SHA256 is the SHA-256 of the identity body.
	SHA256 [32]byte
	// HashState holds the marshalled MD5 and SHA-256 states after the whole
	// body, so an append hashes only the new bytes. Empty when not appendable.
	HashState []byte
	// StoredAt is when the body was stored (it drives the Age header).
	StoredAt time.Time
	// FreshUntil is when the entry stops being fresh; zero for immutable entries.
	FreshUntil time.Time
	// Immutable entries never expire; only eviction or purge removes them.
	Immutable bool

	// Body is the identity body when the entry is small enough to be kept in
	// memory; nil otherwise (read it with Store.Open).
	Body []byte
	// Gzip is the gzip body when kept in memory alongside Body.
	Gzip []byte
	// spill holds the body of a transient entry too large for memory
	// (see Store.Transient); nil for stored entries.
	spill *spillFile
}

// Fresh reports whether the entry may be served without asking upstream at now.
func (e *Entry) Fresh(now time.Time) bool {
	if e.Immutable {
		return true
	}
	return now.Before(e.FreshUntil)
}

// negative reports whether e remembers a failure (a 404) rather than a
// body: the sweeper removes such an entry once it expired, and at most
// Options.MaxNegativeEntries of them are kept.
func (e *Entry) negative() bool {
	return e.Status != statusOK
}

// sameBody reports whether e holds o's identity body as o knew it: the
// same body ID (replaced bodies get new ones) and the same size (an append
// keeps the ID and grows the body).
func (e *Entry) sameBody(o *Entry) bool {
	return e.ID == o.ID && e.Size == o.Size
}

// statusOK is the status of an entry that holds a body.
const statusOK = 200

// EntryOverhead is the estimate, in bytes, of what an entry costs in the
// cache file besides its bodies, key and metadata strings: the fixed fields
// of its metadata record, its access record, bbolt's per-value headers and
// page slack. With it, a 404 entry's footprint (648 bytes) matches the file
// space 10,000 of them were measured to take (639 bytes each); the
// in-memory index costs about 500 bytes more each on the heap.
const EntryOverhead = 512

// footprint is what e counts toward Options.MaxSize: its bodies, its key
// (stored twice: metadata and access records), its class, headers and hash
// state, and EntryOverhead.
func (e *Entry) footprint() int64 {
	n := e.Size + e.GzipSize + int64(2*len(e.Key)+len(e.Class)+len(e.HashState)) + EntryOverhead
	for _, f := range e.Header {
		n += int64(len(f.Name) + len(f.Value))
	}
	return n
}

// HeaderValue returns the stored value of header name, or "".
func (e *Entry) HeaderValue(name string) string {
	for _, f := range e.Header {
		if f.Name == name {
			return f.Value
		}
	}
	return ""
}

// entryVersion is the first byte of every encoded entry.
const entryVersion byte = 1

// Flags stored in one byte of the encoding.
const (
	flagImmutable byte = 1 << iota
)

// ErrCorruptEntry is returned when stored metadata cannot be decoded.
var ErrCorruptEntry = errors.New("cache: corrupt entry metadata")

// encodeEntry serialises e's metadata (not Body) for the entries bucket.
func encodeEntry(e *Entry) []byte {
	b := make([]byte, 0, 128+len(e.HashState)+len(e.Class))
	b = append(b, entryVersion)
	b = binary.BigEndian.AppendUint64(b, e.ID)
	b = binary.BigEndian.AppendUint64(b, e.GzipID)
	b = binary.BigEndian.AppendUint16(b, uint16(e.Status))
	var flags byte
	if e.Immutable {
		flags |= flagImmutable
	}
	b = append(b, flags)
	b = appendString(b, e.Class)
	b = binary.BigEndian.AppendUint64(b, uint64(e.Size))
	b = binary.BigEndian.AppendUint64(b, uint64(e.GzipSize))
	b = append(b, e.MD5[:]...)
	b = append(b, e.SHA256[:]...)
	b = appendString(b, string(e.HashState))
	b = binary.BigEndian.AppendUint64(b, uint64(e.StoredAt.UnixNano()))
	fresh := int64(0)
	if !e.FreshUntil.IsZero() {
		fresh = e.FreshUntil.UnixNano()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(fresh))
	b = binary.AppendUvarint(b, uint64(len(e.Header)))
	for _, f := range e.Header {
		b = appendString(b, f.Name)
		b = appendString(b, f.Value)
	}
	return b
}

// appendString appends a uvarint length and the bytes of s.
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads the encoding written by encodeEntry, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

// fail records a decoding error once.
func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or invalid %s", ErrCorruptEntry, what)
	}
	d.b = nil
}

// take returns the next n bytes.
func (d *decoder) take(n int, what string) []byte {
	if d.err != nil || n < 0 || len(d.b) < n {
		d.fail(what)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// u64 reads a big-endian uint64.
func (d *decoder) u64(what string) uint64 {
	v := d.take(8, what)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// uvarint reads a uvarint in its shortest form, the only one encodeEntry
// writes, so that a decoded entry re-encodes to the same bytes.
func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	n, k := binary.Uvarint(d.b)
	// A longer form ends with a zero byte (no bits left for it to carry).
	if k <= 0 || k > 1 && d.b[k-1] == 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[k:]
	return n
}

// str reads a uvarint-length-prefixed string.
func (d *decoder) str(what string) string {
	n := d.uvarint(what)
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail(what)
		return ""
	}
	return string(d.take(int(n), what))
}

// decodeEntry parses metadata written by encodeEntry for key.
func decodeEntry(key string, b []byte) (*Entry, error) {
	d := &decoder{b: b}
	if v := d.take(1, "version"); v == nil || v[0] != entryVersion {
		return nil, fmt.Errorf("%w: unknown encoding version", ErrCorruptEntry)
	}
	e := &Entry{Key: key}
	e.ID = d.u64("id")
	e.GzipID = d.u64("gzip id")
	if st := d.take(2, "status"); st != nil {
		e.Status = int(binary.BigEndian.Uint16(st))
	}
	if fl := d.take(1, "flags"); fl != nil {
		if fl[0]&^flagImmutable != 0 {
			d.fail("flags") // unknown bits would be lost on re-encoding
		}
		e.Immutable = fl[0]&flagImmutable != 0
	}
	e.Class = d.str("class")
	e.Size = int64(d.u64("size"))
	e.GzipSize = int64(d.u64("gzip size"))
	copy(e.MD5[:], d.take(16, "md5"))
	copy(e.SHA256[:], d.take(32, "sha256"))
	if st := d.str("hash state"); st != "" {
		e.HashState = []byte(st)
	}
	e.StoredAt = time.Unix(0, int64(d.u64("stored at")))
	if fresh := int64(d.u64("fresh until")); fresh != 0 {
		e.FreshUntil = time.Unix(0, fresh)
	}
	// Every field takes at least two bytes: a corrupt count cannot make
	// decode allocate more than the value's size.
	n := d.uvarint("header count")
	if n > uint64(len(d.b))/2 {
		d.fail("header count")
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		e.Header = append(e.Header, Field{Name: d.str("header name"), Value: d.str("header value")})
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorruptEntry, len(d.b))
	}
	if e.Size < 0 || e.GzipSize < 0 || e.Status < 100 || e.Status > 599 || e.ID == 0 ||
		(e.GzipID == 0) != (e.GzipSize == 0) {
		return nil, fmt.Errorf("%w: out-of-range field", ErrCorruptEntry)
	}
	return e, nil
}
