package cache

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestTransient: a staged body becomes a transient entry that is read like
// a stored one but never stored; a spilled body is read from its staging
// file (not memory), which is removed once nothing refers to the entry.
func TestTransient(t *testing.T) {
	for _, tc := range []struct {
		size  int
		spill bool
	}{{0, false}, {100, false}, {stagingMemoryLimit, false}, {stagingMemoryLimit + 100, true}, {3*stagingMemoryLimit + 5, true}} {
		t.Run(fmt.Sprint(tc.size), func(t *testing.T) {
			s := newTestStore(t, Options{})
			body := testBody(tc.size, 3)
			e := s.Transient(stage(t, s, body), testEntry("/k", s.now()))
			if e.ID != 0 || e.Size != int64(tc.size) || e.SHA256 != sha256.Sum256(body) || s.Peek("/k") != nil {
				t.Fatalf("transient entry: ID %d, size %d, stored %v", e.ID, e.Size, s.Peek("/k") != nil)
			}
			if (e.Body == nil && tc.size > 0) != tc.spill || (len(tmpFiles(t, s)) == 1) != tc.spill {
				t.Fatalf("body in memory %v, staging files %v; want spilled %v", e.Body != nil, tmpFiles(t, s), tc.spill)
			}
			if got := readBodyOf(t, s, e, false); !bytes.Equal(got, body) {
				t.Fatalf("read back %d bytes, want %d", len(got), len(body))
			}
			if tc.size > 10 {
				r, err := s.Open(e, false)
				if err != nil {
					t.Fatal(err)
				}
				r.Limit(5, int64(tc.size-5))
				var part bytes.Buffer
				if _, err := r.WriteTo(&part); err != nil || !bytes.Equal(part.Bytes(), body[5:tc.size-5]) {
					t.Fatalf("range read: %d bytes, %v", part.Len(), err)
				}
				r.Close()
			}
			e = nil
			waitNoStagingFiles(t, s)
		})
	}
}

// waitNoStagingFiles collects garbage until s's staging directory is empty,
// failing after a few seconds.
func waitNoStagingFiles(t *testing.T, s *Store) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(tmpFiles(t, s)) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("staging files left: %v", tmpFiles(t, s))
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
}
