package cache

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// maxWriteRecorder is an io.Writer that keeps the bytes written and the
// largest slice it was handed.
type maxWriteRecorder struct {
	bytes.Buffer
	largest int
}

// Write records p.
func (w *maxWriteRecorder) Write(p []byte) (int, error) {
	w.largest = max(w.largest, len(p))
	return w.Buffer.Write(p)
}

func TestWriteToHandsSmallSlices(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(2*ChunkSize+777, 11)
	e := putKey(t, s, "/gems/big.gem", body, CommitOptions{})
	r, err := s.Open(e, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var w maxWriteRecorder
	if n, err := r.WriteTo(&w); err != nil || n != int64(len(body)) || !bytes.Equal(w.Bytes(), body) {
		t.Fatalf("WriteTo = %d, %v; body equal: %v", n, err, bytes.Equal(w.Bytes(), body))
	}
	// Each stream holds at most one small buffer while its client reads,
	// not a whole chunk: 500 streams of a large gem then fit in a few MB.
	if w.largest > streamBufferSize {
		t.Fatalf("WriteTo wrote a %d-byte slice; want at most %d", w.largest, streamBufferSize)
	}
}

// BenchmarkWriteTo50MB streams a 50 MB body out of the cache file, as a
// download of a large gem does: B/op is what one download allocates.
func BenchmarkWriteTo50MB(b *testing.B) {
	s := newTestStore(b, Options{})
	const size = 50 << 20
	e := putKey(b, s, "/gems/large.gem", testBody(size, 5), CommitOptions{})
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		r, err := s.Open(e, false)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := r.WriteTo(io.Discard); err != nil || n != size {
			b.Fatalf("WriteTo = %d, %v", n, err)
		}
		r.Close()
	}
}

func TestLargeBodyReadFromFileAcrossCommits(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(releaseBodyMin+2*ChunkSize+4321, 13)
	e := putKey(t, s, "/gems/large.gem", body, CommitOptions{})
	for _, span := range [][2]int64{{0, e.Size}, {ChunkSize - 3, ChunkSize + 3}, {e.Size - 1, e.Size}, {12345, 3*ChunkSize + 17}} {
		r, err := s.Open(e, false)
		if err != nil {
			t.Fatal(err)
		}
		r.Limit(span[0], span[1])
		var out bytes.Buffer
		if n, err := r.WriteTo(&out); err != nil || !bytes.Equal(out.Bytes(), body[span[0]:span[1]]) {
			t.Fatalf("[%d,%d): wrote %d bytes, %v; equal: %v", span[0], span[1], n, err, bytes.Equal(out.Bytes(), body[span[0]:span[1]]))
		}
		r.Close()
	}
	// Commits between the reads of one chunk: the chunk is looked up again
	// in each new transaction, and the bytes stay right.
	r, err := s.Open(e, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []byte
	for i := 0; len(got) < len(body); i++ {
		got = append(got, readN(t, r, min(100_000, len(body)-len(got)))...)
		putKey(t, s, fmt.Sprintf("/gems/other-%d.gem", i), testBody(3*ChunkSize, uint64(i)), CommitOptions{})
		if i%3 == 0 {
			if err := s.Delete(fmt.Sprintf("/gems/other-%d.gem", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !bytes.Equal(got, body) {
		t.Fatal("a large body read across commits differs from what was stored")
	}
}

func TestLargeBodyChunkMovedByAppend(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(releaseBodyMin+ChunkSize/2, 17)
	e := putKey(t, s, "/info/large", body, CommitOptions{Appendable: true})
	r, err := s.Open(e, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := readN(t, r, len(body)-1000) // into the last chunk, which is located
	// The append rewrites the last chunk elsewhere in the file; the commits
	// after it reuse the pages it left.
	if _, err := s.Append(e, testBody(5000, 18), keepMeta(e)); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		putKey(t, s, fmt.Sprintf("/gems/other-%d.gem", i), testBody(ChunkSize, uint64(i)), CommitOptions{})
	}
	got = append(got, readN(t, r, 1000)...)
	if !bytes.Equal(got, body) {
		t.Fatal("the rest of a chunk moved by an append was read from where it was")
	}
}
