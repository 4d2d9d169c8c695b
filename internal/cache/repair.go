package cache

import "context"

// RepairProgress is Repair's account of its work so far.
type RepairProgress struct {
	// Checked counts the entries checked so far.
	Checked int `json:"checked"`
	// Total is the number of entries to check.
	Total int `json:"total"`
	// Problems counts the problems found so far, file-level ones included.
	Problems int `json:"problems"`
	// Removed counts the entries removed so far.
	Removed int `json:"removed"`
	// Problem is the problem just found, nil when the step found none.
	Problem *Problem `json:"problem,omitempty"`
}

// Repair runs Verify's checks and removes every entry found bad, so that
// the next lookup misses and the proxy fetches it again; an entry replaced
// since it was checked stays. A key pending upload that has no entry is
// dropped from the pending uploads. File-level problems are reported, not
// repaired. progress is called after each step (each entry checked, each
// file-level problem). Repair stops when ctx ends or a removal fails, and
// returns the final account (with a nil Problem).
func (s *Store) Repair(ctx context.Context, progress func(RepairProgress)) (RepairProgress, error) {
	var sum RepairProgress
	err := s.verify(ctx, func(c checked) error {
		sum.Checked, sum.Total, sum.Problem = c.n, c.total, nil
		if c.problem.Reason != "" {
			p := c.problem
			if p.Key != "" {
				removed, err := s.repair(c)
				if err != nil {
					return err
				}
				p.Removed = removed
			}
			sum.Problem = &p
			sum.Problems++
			if p.Removed {
				sum.Removed++
			}
		}
		progress(sum)
		return nil
	})
	sum.Problem = nil
	return sum, err
}

// repair removes what c found bad: the key pending upload when it has no
// entry, else the entry. It reports whether it removed it.
func (s *Store) repair(c checked) (bool, error) {
	if c.dangling {
		return s.dropDangling(c.problem.Key)
	}
	return s.removeBad(c.problem.Key, c.entry)
}

// removeBad removes the entry for key if it still is bad, the entry found
// bad (nil when its metadata did not decode), and reports whether it did.
func (s *Store) removeBad(key string, bad *Entry) (bool, error) {
	n, err := s.deleteKeys([]string{key}, func(cur *Entry) bool { return bad == nil || cur.ID == bad.ID })
	return n == 1, err
}

// FileUsage is the size of the bbolt file and how much of it is free.
type FileUsage struct {
	// Bytes is the file's size.
	Bytes int64 `json:"bytes"`
	// Reusable is the bytes of free pages inside the file, which new
	// entries reuse before the file grows; only a compaction (CloseCompacted)
	// gives them back to the file system.
	Reusable int64 `json:"reusable_bytes"`
}

// FileUsage returns the file's size and free space as of the last write
// transaction.
func (s *Store) FileUsage() (FileUsage, error) {
	size, err := sizeOf(s.Path())
	if err != nil {
		return FileUsage{}, err
	}
	return FileUsage{Bytes: size, Reusable: int64(s.db.Stats().FreeAlloc)}, nil
}
