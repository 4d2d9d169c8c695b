package cache

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// wantPending fails unless the keys pending upload are want, in the file
// and in PendingCount.
func wantPending(t *testing.T, s *Store, want ...string) {
	t.Helper()
	got, err := s.PendingUploads()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) || s.PendingCount() != int64(len(want)) {
		t.Fatalf("pending uploads %q (count %d), want %q", got, s.PendingCount(), want)
	}
}

// TestPendingRecordedWithCommit: a commit with Pending records its key (once,
// however often it is committed), one without does not, the record
// survives a reopen, and UploadDone removes it.
func TestPendingRecordedWithCommit(t *testing.T) {
	s := newTestStore(t, Options{})
	putKey(t, s, "/gems/a-1.gem", testBody(3000, 1), CommitOptions{Pending: true})
	putKey(t, s, "/gems/a-1.gem", testBody(3000, 1), CommitOptions{Pending: true})
	putKey(t, s, "/gems/b-1.gem", testBody(3000, 2), CommitOptions{})
	putKey(t, s, "/gems/c-1.gem", testBody(commitBatch+ChunkSize, 3), CommitOptions{Pending: true}) // written ahead in batches
	wantPending(t, s, "/gems/a-1.gem", "/gems/c-1.gem")
	s = reopen(t, s, Options{})
	wantPending(t, s, "/gems/a-1.gem", "/gems/c-1.gem")
	if err := s.UploadDone("/gems/a-1.gem"); err != nil {
		t.Fatal(err)
	}
	if err := s.UploadDone("/gems/b-1.gem"); err != nil { // never pending: a no-op
		t.Fatal(err)
	}
	wantPending(t, s, "/gems/c-1.gem")
}

// TestPendingRolledBackWithCommit: the record is written by the commit's
// own transaction, so a commit whose transaction fails (here the entry's
// Put, its last step, on a key that is a nested bucket) leaves no record.
func TestPendingRolledBackWithCommit(t *testing.T) {
	s := newTestStore(t, Options{})
	const key = "/gems/a-1.gem"
	if err := s.db.Update(func(tx *bolt.Tx) error {
		_, err := tx.Bucket(bucketEntries).CreateBucket([]byte(key))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(stage(t, s, testBody(3000, 1)), testEntry(key, s.now()), CommitOptions{Pending: true}); err == nil {
		t.Fatal("the commit onto a nested bucket succeeded")
	}
	wantPending(t, s)
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).DeleteBucket([]byte(key)) }); err != nil {
		t.Fatal(err)
	}
}

// TestPendingRemovedWithEntry: deleting, purging, invalidating (an
// immutable entry) and evicting an entry remove its record in the same
// transaction.
func TestPendingRemovedWithEntry(t *testing.T) {
	s := newTestStore(t, Options{MaxSize: 40_000, MemoryBodyLimit: -1})
	clock := newTestClock()
	s.now = clock.Now
	pending := func(key string) {
		e := testEntry(key, s.now())
		e.Immutable = true
		put(t, s, e, testBody(10_000, uint64(len(key))), CommitOptions{Pending: true})
	}
	for _, key := range []string{"/gems/deleted-1.gem", "/gems/purged-1.gem", "/gems/invalidated-1.gem"} {
		pending(key)
	}
	if err := s.Delete("/gems/deleted-1.gem"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purge("/gems/purged"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Invalidate("/gems/invalidated-1.gem"); err != nil {
		t.Fatal(err)
	}
	wantPending(t, s)

	pending("/gems/old-1.gem")
	for i := range 4 {
		clock.Advance(time.Second)
		putKey(t, s, fmt.Sprintf("/gems/new-%d.gem", i), testBody(10_000, uint64(i)), CommitOptions{})
	}
	if n, err := s.Sweep(); err != nil || n == 0 || s.Peek("/gems/old-1.gem") != nil {
		t.Fatalf("Sweep evicted %d (%v); the oldest entry is still there: %v", n, err, s.Peek("/gems/old-1.gem") != nil)
	}
	wantPending(t, s)
}

// TestRepairDropsDanglingPending: a key pending upload without an entry (a
// file that an older build changed) is reported by Verify and dropped by
// Repair; a pending key with its entry is sound.
func TestRepairDropsDanglingPending(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir, Options{})
	putKey(t, s, "/gems/kept-1.gem", testBody(3000, 1), CommitOptions{Pending: true})
	s.Close()
	withFile(t, dir, func(tx *bolt.Tx) error { return tx.Bucket(bucketPending).Put([]byte("/gems/gone-1.gem"), pendingMark) })
	s = openTestStore(t, dir, Options{})
	problems, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || problems[0] != (Problem{Key: "/gems/gone-1.gem", Reason: danglingReason}) {
		t.Fatalf("Verify = %+v, want the dangling key only", problems)
	}
	sum, err := s.Repair(context.Background(), func(RepairProgress) {})
	if err != nil {
		t.Fatal(err)
	}
	if want := (RepairProgress{Checked: 1, Total: 1, Problems: 1, Removed: 1}); sum != want {
		t.Errorf("Repair = %+v, want %+v", sum, want)
	}
	wantPending(t, s, "/gems/kept-1.gem")
}
