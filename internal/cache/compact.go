package cache

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// compactTxSize bounds the data one transaction of a compaction copies, so
// memory stays bounded whatever the file's size.
const compactTxSize = 64 << 20

// CloseCompacted closes the store after giving the file's free pages back
// to the file system: bolt.Compact copies the live data into a new file
// next to it, which an atomic rename then puts in its place. The lock is
// held throughout, so no other process opens either file meanwhile. If
// anything fails the old file stays as it was and the store is closed all
// the same. It reports the file's size before and after; after equals
// before when the compaction failed.
func (s *Store) CloseCompacted() (before, after int64, err error) {
	if s.opts.ReadOnly {
		return 0, 0, errors.Join(errors.New("cache: compact: opened read-only"), s.Close())
	}
	path := s.Path()
	err = s.flushAccess()
	if err == nil {
		before, err = sizeOf(path)
	}
	after = before
	if err == nil {
		err = compactInto(s.db, path)
	}
	if err == nil {
		after, err = sizeOf(path)
	}
	if err != nil {
		err = fmt.Errorf("cache: compact %s: %w", path, err)
	}
	return before, after, errors.Join(err, s.Close())
}

// compactInto writes a compacted copy of src to a file beside path, then
// renames it to path and syncs the directory. On failure the copy is
// removed and path is untouched.
func compactInto(src *bolt.DB, path string) error {
	tmp := path + ".compact"
	_ = os.Remove(tmp) // left by an interrupted compaction
	dst, err := bolt.Open(tmp, 0o640, &bolt.Options{FreelistType: bolt.FreelistMapType})
	if err != nil {
		return err
	}
	err = bolt.Compact(dst, src, compactTxSize)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// sizeOf is the size of the file at path.
func sizeOf(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// openAttempts bounds how often openCurrent tries again when the file is
// replaced while it waits for the lock.
const openAttempts = 3

// openCurrent opens the bbolt file at path and makes sure the file it
// locked is still the one at path: a compaction renames a new file over
// path while an Open waiting for the lock may hold the old one, whose
// writes would be lost.
func openCurrent(path string, opts *bolt.Options) (*bolt.DB, error) {
	for range openAttempts {
		before, statErr := os.Stat(path)
		db, err := bolt.Open(path, 0o640, opts)
		if err != nil {
			return nil, err
		}
		now, err := os.Stat(path)
		if statErr != nil || err == nil && os.SameFile(before, now) {
			return db, nil // created here, or still the file at path
		}
		_ = db.Close()
	}
	return nil, fmt.Errorf("%s was replaced %d times while opening it", path, openAttempts)
}
