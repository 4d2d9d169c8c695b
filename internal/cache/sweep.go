package cache

import (
	"context"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// evictTarget is the fraction of MaxSize that eviction brings usage down to,
// so the cap is not crossed again by the next fill.
const evictTarget = 0.95

// Sweep enforces the size cap, evicting least-recently-used entries that no
// reader is using, and persists access times. It reports how many entries
// were evicted.
func (s *Store) Sweep() (int, error) {
	if err := s.flushAccess(); err != nil {
		return 0, err
	}
	if s.opts.MaxSize < 0 || s.bodyBytes.Load() <= s.opts.MaxSize {
		return 0, nil
	}
	type candidate struct {
		key  string
		last int64
		size int64
	}
	s.mu.RLock()
	cands := make([]candidate, 0, len(s.items))
	for k, it := range s.items {
		e := it.entry.Load()
		cands = append(cands, candidate{k, it.lastAccess.Load(), e.Size + e.GzipSize})
	}
	s.mu.RUnlock()
	sort.Slice(cands, func(i, j int) bool { return cands[i].last < cands[j].last })

	target := int64(float64(s.opts.MaxSize) * evictTarget)
	over := s.bodyBytes.Load() - target
	var victims []string
	for _, c := range cands {
		if over <= 0 {
			break
		}
		if e := s.Peek(c.key); e == nil || s.inUse(e) {
			continue // being served: never evicted under a reader
		}
		victims = append(victims, c.key)
		over -= c.size
	}
	n, err := s.deleteKeys(victims)
	s.evictions.Add(int64(n))
	return n, err
}

// RunSweeper calls Sweep every interval until ctx ends. Errors are passed to
// report (which may be nil).
func (s *Store) RunSweeper(ctx context.Context, interval time.Duration, report func(evicted int, err error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.Sweep()
			if report != nil {
				report(n, err)
			}
		}
	}
}

// flushAccess writes the access times and hit counts that changed since the
// last flush.
func (s *Store) flushAccess() error {
	type rec struct {
		key        string
		it         *item
		last, hits int64
	}
	var dirty []rec
	s.mu.RLock()
	for k, it := range s.items {
		if h := it.hits.Load(); h != it.flushed.Load() {
			dirty = append(dirty, rec{k, it, it.lastAccess.Load(), h})
		}
	}
	s.mu.RUnlock()
	if len(dirty) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		entries, access := tx.Bucket(bucketEntries), tx.Bucket(bucketAccess)
		for _, d := range dirty {
			if entries.Get([]byte(d.key)) == nil {
				continue
			}
			if err := access.Put([]byte(d.key), accessValue(d.last, d.hits)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		for _, d := range dirty {
			d.it.flushed.Store(d.hits)
		}
	}
	return err
}

// ClassStats summarises the entries of one cache class.
type ClassStats struct {
	// Entries is the number of entries.
	Entries int64
	// Bytes is the stored body bytes (identity and gzip).
	Bytes int64
	// Hits is the number of lookups answered with these entries.
	Hits int64
	// Oldest and Newest are the earliest and latest StoredAt.
	Oldest, Newest time.Time
}

// Stats summarises the cache per class.
type Stats struct {
	// Classes maps a cache class to its summary.
	Classes map[string]ClassStats
	// Bytes is the total stored body bytes.
	Bytes int64
	// Evictions is the number of entries evicted by the size cap since Open.
	Evictions int64
}

// Stats returns a summary of the cache.
func (s *Store) Stats() Stats {
	st := Stats{Classes: make(map[string]ClassStats), Evictions: s.evictions.Load()}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, it := range s.items {
		e := it.entry.Load()
		c := st.Classes[e.Class]
		c.Entries++
		c.Bytes += e.Size + e.GzipSize
		c.Hits += it.hits.Load()
		if c.Oldest.IsZero() || e.StoredAt.Before(c.Oldest) {
			c.Oldest = e.StoredAt
		}
		if e.StoredAt.After(c.Newest) {
			c.Newest = e.StoredAt
		}
		st.Classes[e.Class] = c
		st.Bytes += e.Size + e.GzipSize
	}
	return st
}
