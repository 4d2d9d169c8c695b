package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
	"time"
)

// entryCases are encodable entries used by the round-trip test and as fuzz seeds.
func entryCases() map[string]*Entry {
	stored := time.Unix(0, 1_748_779_200_123_456_789)
	return map[string]*Entry{
		"all fields": {
			Key: "/info/rails", ID: 42, GzipID: 43, Class: "info", Status: 200,
			Header: []Field{
				{Name: "Content-Type", Value: "text/plain; charset=utf-8"},
				{Name: "Etag", Value: `"0123456789abcdef"`},
				{Name: "X-Empty", Value: ""},
				{Name: "Content-Type", Value: "duplicate names keep their order"},
			},
			Size: 1 << 40, GzipSize: 12345,
			MD5:       [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
			SHA256:    [32]byte{31: 0xff, 0: 0xee},
			HashState: bytes.Repeat([]byte{0, 0x80, 0xff}, 100),
			StoredAt:  stored, FreshUntil: stored.Add(90 * time.Second),
		},
		"immutable gem": {
			Key: "/gems/rack-3.1.8.gem", ID: 1, Class: "gem", Status: 200,
			Header: []Field{{Name: "Content-Type", Value: "application/octet-stream"}},
			Size:   70_000, StoredAt: stored, Immutable: true,
		},
		"negative empty body": {
			Key: "/api/v1/dependencies?gems=nope", ID: 7, Class: "negative", Status: 404,
			StoredAt: stored, FreshUntil: stored.Add(time.Minute),
		},
		"times before 1970": {
			Key: "/x", ID: 1<<64 - 1, Status: 599, StoredAt: time.Unix(0, -1), FreshUntil: time.Unix(-100, 5),
		},
		"invalidated": {
			Key: "/versions", ID: 9, GzipID: 10, GzipSize: 1, Status: 100, StoredAt: stored,
			FreshUntil: time.Unix(0, 1), HashState: []byte{1, 2},
		},
		"many headers": {
			Key: "/many", ID: 3, Status: 200, StoredAt: stored, Header: manyHeaders(100),
		},
	}
}

// manyHeaders returns n distinct header fields.
func manyHeaders(n int) []Field {
	h := make([]Field, n)
	for i := range h {
		h[i] = Field{Name: "X-H", Value: string(rune('a' + i%26))}
	}
	return h
}

func TestEntryRoundTrip(t *testing.T) {
	for name, e := range entryCases() {
		t.Run(name, func(t *testing.T) {
			b := encodeEntry(e)
			got, err := decodeEntry(e.Key, b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(got, e) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, e)
			}
			if again := encodeEntry(got); !bytes.Equal(again, b) {
				t.Fatalf("re-encoding differs:\n%x\n%x", again, b)
			}
		})
	}
}

func TestEntryRoundTripIgnoresMemoryBodies(t *testing.T) {
	e := *entryCases()["all fields"]
	e.Body, e.Gzip = []byte("body"), []byte("gzip")
	got, err := decodeEntry(e.Key, encodeEntry(&e))
	if err != nil {
		t.Fatal(err)
	}
	if got.Body != nil || got.Gzip != nil {
		t.Fatalf("memory bodies were encoded: %q %q", got.Body, got.Gzip)
	}
}

func TestDecodeEntryRejects(t *testing.T) {
	good := encodeEntry(entryCases()["all fields"])
	// offset of the flags byte: version, id, gzip id, status.
	const flagsAt = 1 + 8 + 8 + 2
	mutate := func(f func(b []byte) []byte) []byte {
		return f(append([]byte(nil), good...))
	}
	cases := map[string][]byte{
		"empty":                nil,
		"unknown version":      mutate(func(b []byte) []byte { b[0] = 2; return b }),
		"truncated":            good[:len(good)-1],
		"trailing byte":        append(append([]byte(nil), good...), 0),
		"status 0":             encodeEntry(&Entry{ID: 1}),
		"status 600":           encodeEntry(&Entry{ID: 1, Status: 600}),
		"id 0":                 encodeEntry(&Entry{Status: 200}),
		"gzip size without id": encodeEntry(&Entry{ID: 1, Status: 200, GzipSize: 5}),
		"gzip id without size": encodeEntry(&Entry{ID: 1, Status: 200, GzipID: 5}),
		"negative size":        encodeEntry(&Entry{ID: 1, Status: 200, Size: -1}),
		"unknown flag":         mutate(func(b []byte) []byte { b[flagsAt] |= 0x80; return b }),
		// The class length 3 written as a two-byte varint.
		"non-minimal varint": func() []byte {
			b := encodeEntry(&Entry{ID: 1, Status: 200, Class: "gem"})
			out := append([]byte(nil), b[:flagsAt+1]...)
			out = append(out, 0x83, 0x00)
			return append(out, b[flagsAt+2:]...)
		}(),
		"huge header count": func() []byte {
			b := encodeEntry(&Entry{ID: 1, Status: 200})
			return binary.AppendUvarint(b[:len(b)-1], 1<<40)
		}(),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			e, err := decodeEntry("/k", b)
			if !errors.Is(err, ErrCorruptEntry) {
				t.Fatalf("decode = %+v, %v; want ErrCorruptEntry", e, err)
			}
		})
	}
}

func FuzzDecodeEntry(f *testing.F) {
	for _, e := range entryCases() {
		b := encodeEntry(e)
		f.Add(e.Key, b)
		f.Add(e.Key, b[:len(b)/2])
	}
	f.Add("", []byte{})
	f.Add("/k", []byte{entryVersion})
	f.Add("/k", bytes.Repeat([]byte{0xff}, 200))
	f.Fuzz(func(t *testing.T, key string, b []byte) {
		e, err := decodeEntry(key, b)
		if err != nil {
			if !errors.Is(err, ErrCorruptEntry) {
				t.Fatalf("error %v is not ErrCorruptEntry", err)
			}
			return
		}
		if e.Key != key {
			t.Fatalf("key %q, want %q", e.Key, key)
		}
		again := encodeEntry(e)
		if !bytes.Equal(again, b) {
			t.Fatalf("decoded entry re-encodes differently:\n in %x\nout %x", b, again)
		}
		e2, err := decodeEntry(key, again)
		if err != nil || !reflect.DeepEqual(e, e2) {
			t.Fatalf("second decode: %+v, %v; want %+v", e2, err, e)
		}
	})
}

func FuzzChunkKey(f *testing.F) {
	f.Add(uint64(1), uint32(0), uint64(1), uint32(1))
	f.Add(uint64(255), uint32(1<<24), uint64(256), uint32(0))
	f.Add(uint64(1<<64-1), uint32(1<<32-1), uint64(0), uint32(0))
	f.Fuzz(func(t *testing.T, id1 uint64, i1 uint32, id2 uint64, i2 uint32) {
		k1, k2 := chunkKey(id1, i1), chunkKey(id2, i2)
		if len(k1) != chunkKeyLen || idOf(k1) != id1 || binary.BigEndian.Uint32(k1[8:]) != i1 {
			t.Fatalf("chunkKey(%d, %d) = %x does not decode back", id1, i1, k1)
		}
		if !bytes.HasPrefix(k1, chunkPrefix(id1)) {
			t.Fatalf("chunkKey(%d, %d) = %x lacks prefix %x", id1, i1, k1, chunkPrefix(id1))
		}
		if bytes.HasPrefix(k2, chunkPrefix(id1)) != (id1 == id2) {
			t.Fatalf("prefix of body %d matches chunk of body %d", id1, id2)
		}
		// bbolt keeps keys in byte order: it must be (id, index) order so a
		// cursor walks one body's chunks in sequence.
		want := 0
		switch {
		case id1 < id2 || id1 == id2 && i1 < i2:
			want = -1
		case id1 > id2 || id1 == id2 && i1 > i2:
			want = 1
		}
		if got := bytes.Compare(k1, k2); got != want {
			t.Fatalf("Compare(%x, %x) = %d, want %d", k1, k2, got, want)
		}
		last, hits := int64(id1), int64(id2)
		if l, h := parseAccess(accessValue(last, hits)); l != last || h != hits {
			t.Fatalf("access value round trip: %d %d, want %d %d", l, h, last, hits)
		}
	})
}
