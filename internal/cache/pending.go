package cache

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Pending uploads. A fleet's replica writes each verified immutable entry
// it fetched from the upstream to the store the replicas share, in the
// background (docs/fleet.md). So that a crash, or a shared store that is
// down, does not lose that upload for good, the entry's key is recorded in
// the pending bucket by the transaction that stores the entry
// (CommitOptions.Pending), and removed by UploadDone once the shared store
// holds the object, or with the entry when it is deleted or evicted.

// pendingMark is the value of a key in the pending bucket: the key is what
// counts.
var pendingMark = []byte{1}

// markPending records key as pending upload in tx and reports whether it
// was not already (1) or was (0).
func markPending(tx *bolt.Tx, key string) (int64, error) {
	b := tx.Bucket(bucketPending)
	if b.Get([]byte(key)) != nil {
		return 0, nil
	}
	return 1, b.Put([]byte(key), pendingMark)
}

// unmarkPending removes key from the pending uploads in tx and reports
// whether it was there (1) or not (0).
func unmarkPending(tx *bolt.Tx, key string) (int64, error) {
	b := tx.Bucket(bucketPending)
	if b.Get([]byte(key)) == nil {
		return 0, nil
	}
	return 1, b.Delete([]byte(key))
}

// countPending is the number of keys pending upload in tx (0 in a file
// opened read-only that has no pending bucket).
func countPending(tx *bolt.Tx) int64 {
	b := tx.Bucket(bucketPending)
	if b == nil {
		return 0
	}
	return int64(b.Stats().KeyN)
}

// PendingUploads returns the keys pending upload to the shared store, in
// key order.
func (s *Store) PendingUploads() ([]string, error) {
	var keys []string
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("cache: pending uploads: %w", err)
	}
	return keys, nil
}

// PendingCount is the number of keys pending upload to the shared store.
func (s *Store) PendingCount() int64 { return s.pendingCount.Load() }

// UploadDone removes key from the pending uploads: the shared store holds
// its object.
func (s *Store) UploadDone(key string) error {
	var dropped int64
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		dropped, err = unmarkPending(tx, key)
		return err
	})
	if err != nil {
		return fmt.Errorf("cache: upload of %s done: %w", key, err)
	}
	s.pendingCount.Add(-dropped)
	return nil
}

// danglingPending lists the keys pending upload in tx that have no entry:
// nothing can upload them (Verify reports them, Repair drops them).
func danglingPending(tx *bolt.Tx) ([]string, error) {
	b := tx.Bucket(bucketPending)
	if b == nil {
		return nil, nil
	}
	entries := tx.Bucket(bucketEntries)
	var keys []string
	err := b.ForEach(func(k, _ []byte) error {
		if entries == nil || entries.Get(k) == nil {
			keys = append(keys, string(k))
		}
		return nil
	})
	return keys, err
}

// dropDangling removes key from the pending uploads if it still has no
// entry, and reports whether it did.
func (s *Store) dropDangling(key string) (bool, error) {
	var dropped int64
	err := s.update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketEntries).Get([]byte(key)) != nil {
			return nil
		}
		var err error
		dropped, err = unmarkPending(tx, key)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("cache: drop pending upload of %s: %w", key, err)
	}
	s.pendingCount.Add(-dropped)
	return dropped == 1, nil
}
