package main

import (
	"path/filepath"
	"regexp"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/gemproxy/gemproxy/internal/cache"
)

// commitPending stores body as a gem entry at key, recorded as pending
// upload to the shared store.
func commitPending(t *testing.T, store *cache.Store, key string, body []byte) {
	t.Helper()
	st := store.Stage()
	if _, err := st.Write(body); err != nil {
		t.Fatal(err)
	}
	e := cache.Entry{Key: key, Class: "gem", Status: 200, Immutable: true, StoredAt: time.Now()}
	if _, err := store.Commit(st, e, cache.CommitOptions{Pending: true}); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyPendingUploads: cache verify accepts keys pending upload to
// the shared store whose entry is there, and reports and drops one whose
// entry is gone (its record left by a build that did not know of it).
func TestVerifyPendingUploads(t *testing.T) {
	dataDir := t.TempDir()
	store, err := cache.Open(dataDir, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	commitPending(t, store, "/gems/kept-1.0.0.gem", []byte("kept gem"))
	commitPending(t, store, "/gems/gone-1.0.0.gem", []byte("gone gem"))
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(filepath.Join(dataDir, cache.FileName), 0o640, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("entries")).Delete([]byte("/gems/gone-1.0.0.gem"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	r := runBinary(t, nil, "cache", "verify", "--data-dir", dataDir)
	want := regexp.MustCompile(`^/gems/gone-1\.0\.0\.gem: pending upload to the shared store, but no entry \(removed\)\n` +
		`checked 1 entry: 1 problem, 1 removed\ncache\.db: \d+ bytes before compaction, \d+ after\n$`)
	if r.code != exitFailure || !want.MatchString(r.stdout) {
		t.Errorf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runBinary(t, nil, "cache", "verify", "--data-dir", dataDir); r.code != 0 || r.stdout != "checked 1 entry: 0 problems\n" {
		t.Errorf("second verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
