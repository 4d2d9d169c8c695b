package cache

import (
	"context"
	"slices"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// evictTarget is the fraction of MaxSize (and of MaxNegativeEntries) that
// eviction brings usage down to, so the cap is not crossed again by the
// next fill.
const evictTarget = 0.95

// Sweep removes expired negative entries and any above MaxNegativeEntries,
// persists access times, and enforces the size cap, evicting
// least-recently-used entries that no reader is using. It reports how many
// entries the size cap evicted.
//
// Entries that hold a body stay once expired: the proxy may still serve
// them (stale-if-error, offline mode) for a time the cache does not know;
// the size cap bounds them. Negative entries go as soon as they expire: an
// old 404 is worth less than the room a flood of them takes.
func (s *Store) Sweep() (int, error) {
	if err := s.dropExpiredNegatives(); err != nil {
		return 0, err
	}
	if err := s.capNegatives(); err != nil {
		return 0, err
	}
	if err := s.flushAccess(); err != nil {
		return 0, err
	}
	return s.enforceMaxSize()
}

// dropExpiredNegatives removes the negative entries that are no longer fresh.
func (s *Store) dropExpiredNegatives() error {
	now := s.now()
	var expired []*Entry
	s.mu.RLock()
	for k := range s.negatives {
		if e := s.items[k].entry.Load(); !e.Fresh(now) {
			expired = append(expired, e)
		}
	}
	s.mu.RUnlock()
	_, err := s.deleteUnchanged(expired)
	return err
}

// capNegatives removes the oldest negative entries (by StoredAt) once there
// are more than MaxNegativeEntries, down to evictTarget of it. A call made
// while another is at work returns at once.
func (s *Store) capNegatives() error {
	limit := s.opts.MaxNegativeEntries
	if limit < 0 || s.negativeCount() <= limit || !s.trimMu.TryLock() {
		return nil
	}
	defer s.trimMu.Unlock()
	s.mu.RLock()
	negatives := make([]*Entry, 0, len(s.negatives))
	for k := range s.negatives {
		negatives = append(negatives, s.items[k].entry.Load())
	}
	s.mu.RUnlock()
	excess := len(negatives) - int(float64(limit)*evictTarget)
	if excess <= 0 {
		return nil
	}
	slices.SortFunc(negatives, func(a, b *Entry) int { return a.StoredAt.Compare(b.StoredAt) })
	_, err := s.deleteUnchanged(negatives[:excess])
	return err
}

// negativeCount is the number of negative entries.
func (s *Store) negativeCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.negatives)
}

// enforceMaxSize evicts least-recently-used entries that no reader is using
// while usage is above MaxSize, and reports how many it evicted.
func (s *Store) enforceMaxSize() (int, error) {
	if s.opts.MaxSize < 0 || s.usedBytes.Load() <= s.opts.MaxSize {
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
		cands = append(cands, candidate{k, it.lastAccess.Load(), e.footprint()})
	}
	s.mu.RUnlock()
	sort.Slice(cands, func(i, j int) bool { return cands[i].last < cands[j].last })

	target := int64(float64(s.opts.MaxSize) * evictTarget)
	over := s.usedBytes.Load() - target
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
	n, err := s.deleteKeys(victims, nil)
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
	err := s.update(func(tx *bolt.Tx) error {
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
	Entries int64 `json:"entries"`
	// Bytes is what the entries count toward Options.MaxSize: bodies
	// (identity and gzip), keys and metadata, and EntryOverhead each.
	Bytes int64 `json:"bytes"`
	// Hits is the number of lookups answered with these entries.
	Hits int64 `json:"hits"`
	// Oldest is the earliest StoredAt.
	Oldest time.Time `json:"oldest"`
	// Newest is the latest StoredAt.
	Newest time.Time `json:"newest"`
}

// Stats summarises the cache per class.
type Stats struct {
	// Classes maps a cache class to its summary.
	Classes map[string]ClassStats `json:"classes"`
	// Bytes is the total that Options.MaxSize caps.
	Bytes int64 `json:"bytes"`
	// Evictions is the number of entries evicted by the size cap since Open.
	Evictions int64 `json:"evictions"`
	// Writes is the number of write transactions committed since Open.
	Writes int64 `json:"writes"`
}

// Stats returns a summary of the cache.
func (s *Store) Stats() Stats {
	st := Stats{Classes: make(map[string]ClassStats), Evictions: s.evictions.Load(), Writes: s.writes.Load()}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, it := range s.items {
		e := it.entry.Load()
		c := st.Classes[e.Class]
		c.Entries++
		c.Bytes += e.footprint()
		c.Hits += it.hits.Load()
		if c.Oldest.IsZero() || e.StoredAt.Before(c.Oldest) {
			c.Oldest = e.StoredAt
		}
		if e.StoredAt.After(c.Newest) {
			c.Newest = e.StoredAt
		}
		st.Classes[e.Class] = c
		st.Bytes += e.footprint()
	}
	return st
}
