package cache

import (
	"bytes"
	"context"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestRepairRemovesBadEntries corrupts one chunk of a stored body: Repair
// reports it with its progress, removes that entry and only it, so that a
// lookup misses, and leaves a store Verify finds sound.
func TestRepairRemovesBadEntries(t *testing.T) {
	s := newTestStore(t, Options{MemoryBodyLimit: -1})
	bad := putKey(t, s, "/gems/bad-1.gem", testBody(2*ChunkSize+500, 1), CommitOptions{Gzip: true})
	good := testBody(3000, 2)
	putKey(t, s, "/gems/good-1.gem", good, CommitOptions{})
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketChunks)
		v := append([]byte(nil), b.Get(chunkKey(bad.ID, 1))...)
		v[100] ^= 1
		return b.Put(chunkKey(bad.ID, 1), v)
	}); err != nil {
		t.Fatal(err)
	}

	var steps []RepairProgress
	sum, err := s.Repair(context.Background(), func(p RepairProgress) { steps = append(steps, p) })
	if err != nil {
		t.Fatal(err)
	}
	if want := (RepairProgress{Checked: 2, Total: 2, Problems: 1, Removed: 1}); sum != want {
		t.Errorf("Repair = %+v, want %+v", sum, want)
	}
	var reported []Problem
	for i, p := range steps {
		if p.Checked != i+1 || p.Total != 2 {
			t.Errorf("step %d: %+v", i, p)
		}
		if p.Problem != nil {
			reported = append(reported, *p.Problem)
		}
	}
	if len(reported) != 1 || reported[0].Key != bad.Key || !reported[0].Removed || !strings.Contains(reported[0].Reason, "MD5") {
		t.Fatalf("problems reported: %+v", reported)
	}
	if s.Lookup(bad.Key) != nil {
		t.Error("the bad entry is still served")
	}
	if e := s.Lookup("/gems/good-1.gem"); e == nil || !bytes.Equal(readBodyOf(t, s, e, false), good) {
		t.Errorf("the sound entry is gone or changed: %+v", e)
	}
}

// TestRepairKeepsReplacedEntry: an entry replaced after it was found bad
// is the new one, which stays.
func TestRepairKeepsReplacedEntry(t *testing.T) {
	s := newTestStore(t, Options{})
	old := putKey(t, s, "/info/a", []byte("old"), CommitOptions{})
	putKey(t, s, "/info/a", []byte("new"), CommitOptions{})
	if removed, err := s.removeBad("/info/a", old); err != nil || removed {
		t.Fatalf("removeBad of the replaced entry = %v, %v; want false", removed, err)
	}
	if s.Peek("/info/a") == nil {
		t.Fatal("the new entry was removed")
	}
}
