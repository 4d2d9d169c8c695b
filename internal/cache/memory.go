package cache

import (
	"cmp"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Bodies of small entries, and of the MemoryClasses, are held in memory
// once looked up, so that a hit on them touches no bbolt transaction. Their
// total stays within MemoryBudget: a body that does not fit makes room by
// dropping the least recently looked-up bodies from memory (they stay in
// the file and are served from there until looked up again).

// keepsInMemory reports whether e's bodies are held in memory once looked
// up: small ones, and those of the memory classes whatever their size.
func (s *Store) keepsInMemory(e *Entry) bool {
	return e.Size <= s.opts.MemoryBodyLimit || slices.Contains(s.opts.MemoryClasses, e.Class)
}

// roomInMemory reports whether need more bytes of memory bodies fit in
// MemoryBudget, first dropping the least recently used memory bodies when
// they do not: down to an eighth below the budget, so that one pass makes
// room for many loads. One caller drops at a time; the others find no room
// meanwhile and read from the file.
func (s *Store) roomInMemory(need int64) bool {
	budget := s.opts.MemoryBudget
	switch {
	case need > budget:
		return false
	case s.memoryBytes.Load()+need <= budget:
		return true
	case !s.memoryMu.TryLock():
		return false
	}
	defer s.memoryMu.Unlock()
	s.dropMemoryBodies(budget - budget/8 - need)
	return s.memoryBytes.Load()+need <= budget
}

// dropMemoryBodies drops memory bodies, least recently looked up first,
// until at most target bytes are held.
func (s *Store) dropMemoryBodies(target int64) {
	// Under s.mu, like loadMemoryBody, so that publish and deleteKeys see
	// either the entry with its memory body or the one without.
	s.mu.RLock()
	defer s.mu.RUnlock()
	var held []*item
	for _, it := range s.items {
		if it.entry.Load().Body != nil {
			held = append(held, it)
		}
	}
	slices.SortFunc(held, func(a, b *item) int { return cmp.Compare(a.lastAccess.Load(), b.lastAccess.Load()) })
	for _, it := range held {
		if s.memoryBytes.Load() <= target {
			return
		}
		cur := it.entry.Load()
		if cur.Body == nil {
			continue
		}
		c := *cur
		c.Body, c.Gzip = nil, nil
		if it.entry.CompareAndSwap(cur, &c) {
			s.memoryBytes.Add(-(cur.Size + cur.GzipSize))
		}
	}
}

// loadMemoryBody reads e's bodies into a copy of e held by it. On any error
// the entry without memory body is returned; readers then use Open.
func (s *Store) loadMemoryBody(it *item, e *Entry) *Entry {
	c := *e
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if c.Body, err = readBody(tx, e.ID, e.Size); err != nil {
			return err
		}
		if e.GzipID != 0 {
			c.Gzip, err = readBody(tx, e.GzipID, e.GzipSize)
		}
		return err
	})
	if err != nil {
		return e
	}
	if c.Body == nil {
		c.Body = []byte{}
	}
	// Under s.mu, so that publish and deleteKeys (which hold it to swap
	// entries and adjust memoryBytes) see either the copy or not at all.
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.items[e.Key] == it && it.entry.CompareAndSwap(e, &c) {
		s.memoryBytes.Add(c.Size + c.GzipSize)
		return &c
	}
	return it.entry.Load()
}
