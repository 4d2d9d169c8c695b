package cache

import (
	"compress/gzip"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

// Problem is one inconsistency found by Verify or Repair.
type Problem struct {
	// Key is the entry's key ("" for file-level problems).
	Key string `json:"key"`
	// Reason says what is wrong.
	Reason string `json:"reason"`
	// Removed reports that Repair removed the entry (or the key pending
	// upload that has no entry).
	Removed bool `json:"removed,omitempty"`
}

// Verify re-reads every entry and checks that its metadata decodes, its
// chunks are all present with the recorded length, the identity body hashes
// to the recorded MD5 and SHA-256, and the gzip form decompresses to the
// identity body's length. It also runs bbolt's own consistency check, and
// reports the keys pending upload that have no entry (danglingReason).
func (s *Store) Verify() ([]Problem, error) {
	var problems []Problem
	err := s.verify(context.Background(), func(c checked) error {
		if c.problem.Reason != "" {
			problems = append(problems, c.problem)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return problems, nil
}

// checked is what verify found about one entry, or one file-level problem.
type checked struct {
	// n and total count the entries checked so far and to check (n is 0
	// for file-level problems).
	n, total int
	// problem is what is wrong; its Reason is "" for a sound entry.
	problem Problem
	// entry is the entry as checked: nil for file-level problems and
	// undecodable metadata.
	entry *Entry
	// dangling is set for a key pending upload that has no entry.
	dangling bool
}

// danglingReason is the Reason of a key pending upload to the shared
// store that has no entry: there is nothing to upload.
const danglingReason = "pending upload to the shared store, but no entry"

// verify runs Verify's checks, calling report with each file-level problem
// and then once per entry, until ctx ends or report fails.
func (s *Store) verify(ctx context.Context, report func(checked) error) error {
	keys, fileProblems, dangling, err := s.checkFile()
	if err != nil {
		return fmt.Errorf("cache: verify: %w", err)
	}
	for _, p := range fileProblems {
		if err := report(checked{total: len(keys), problem: p}); err != nil {
			return err
		}
	}
	for _, key := range dangling {
		if err := report(checked{total: len(keys), problem: Problem{Key: key, Reason: danglingReason}, dangling: true}); err != nil {
			return err
		}
	}
	for i, key := range keys {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cache: verify: %w", err)
		}
		e, reason := s.verifyEntry(key)
		if err := report(checked{n: i + 1, total: len(keys), problem: Problem{Key: key, Reason: reason}, entry: e}); err != nil {
			return err
		}
	}
	return nil
}

// checkFile runs bbolt's consistency check and lists the entries' keys and
// the keys pending upload that have no entry.
func (s *Store) checkFile() (keys []string, problems []Problem, dangling []string, err error) {
	check := s.db.View
	if !s.opts.ReadOnly {
		// bbolt's check reads the shared freelist, which concurrent writers
		// change: run it inside a write transaction (rolled back) so no
		// writer runs meanwhile.
		check = func(fn func(*bolt.Tx) error) error {
			err := s.db.Update(func(tx *bolt.Tx) error {
				if err := fn(tx); err != nil {
					return err
				}
				return errRollback
			})
			if errors.Is(err, errRollback) {
				return nil
			}
			return err
		}
	}
	err = check(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			problems = append(problems, Problem{Reason: "bbolt: " + err.Error()})
		}
		b := tx.Bucket(bucketEntries)
		if b == nil {
			return nil
		}
		var err error
		if dangling, err = danglingPending(tx); err != nil {
			return err
		}
		return b.ForEach(func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		})
	})
	return keys, problems, dangling, err
}

// errRollback discards the write transaction Verify runs its check in.
var errRollback = errors.New("cache: verify rollback")

// verifyEntry checks one entry and returns it as read (nil if its metadata
// does not decode or it is gone) and what is wrong with it, or "".
func (s *Store) verifyEntry(key string) (*Entry, string) {
	var e *Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEntries).Get([]byte(key))
		if v == nil {
			return nil
		}
		var err error
		e, err = decodeEntry(key, v)
		return err
	})
	if err != nil {
		return nil, err.Error()
	}
	if e == nil {
		return nil, "" // deleted meanwhile
	}
	return e, s.verifyBodies(e)
}

// verifyBodies checks e's identity body against its recorded length and
// hashes, and its gzip form against the identity length, and returns what
// is wrong, or "".
func (s *Store) verifyBodies(e *Entry) string {
	r, reason := s.openToVerify(e, false)
	if r == nil {
		return reason
	}
	defer r.Close()
	m, sh := md5.New(), sha256.New()
	n, err := io.Copy(io.MultiWriter(m, sh), r)
	if err != nil {
		return fmt.Sprintf("body unreadable after %d bytes: %v", n, err)
	}
	if n != e.Size {
		return fmt.Sprintf("body has %d bytes, metadata says %d", n, e.Size)
	}
	if string(m.Sum(nil)) != string(e.MD5[:]) {
		return "body does not match its recorded MD5"
	}
	if string(sh.Sum(nil)) != string(e.SHA256[:]) {
		return "body does not match its recorded SHA-256"
	}
	if e.GzipID == 0 {
		return ""
	}
	gr, reason := s.openToVerify(e, true)
	if gr == nil {
		return reason
	}
	defer gr.Close()
	zr, err := gzip.NewReader(gr)
	if err != nil {
		return "gzip body unreadable: " + err.Error()
	}
	un, err := io.Copy(io.Discard, zr)
	if err != nil || un != e.Size {
		return fmt.Sprintf("gzip body decompresses to %d bytes (%v), want %d", un, err, e.Size)
	}
	return ""
}

// replaced reports whether the stored entry for e.Key is no longer e (Open
// refuses the bodies of an entry replaced or deleted since it was read).
func (s *Store) replaced(e *Entry) bool {
	// A write that retired the body may still be committing: wait for it.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	changed := true
	_ = s.db.View(func(tx *bolt.Tx) error {
		cur := storedEntry(tx, e.Key)
		changed = cur == nil || cur.ID != e.ID || cur.GzipID != e.GzipID
		return nil
	})
	return changed
}

// openToVerify opens the identity or gzip body of e for verifyEntry. It
// returns nil and the reason when the body cannot be opened, and nil with
// no reason when e was replaced meanwhile: there is nothing to report then.
// A commit writes its entry to the file before it publishes it in the
// index, which Open consults: an entry read in between is not openable
// yet, so Open is tried again once the writes in progress are done.
func (s *Store) openToVerify(e *Entry, gz bool) (*Reader, string) {
	r, err := s.Open(e, gz)
	if errors.Is(err, ErrNotFound) {
		if s.replaced(e) {
			return nil, ""
		}
		r, err = s.Open(e, gz)
	}
	if err != nil {
		return nil, err.Error()
	}
	return r, ""
}
