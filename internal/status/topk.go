package status

import (
	"cmp"
	"slices"
	"strings"
	"sync"
)

// topK counts the most frequent names in bounded memory with the
// Space-Saving algorithm (Metwally, Agrawal and El Abbadi, 2005): it keeps
// at most capacity counters; a name not yet counted when all are taken
// replaces the smallest counter and inherits its count, remembered as the
// possible overcount. Every name seen more than total/capacity times is
// kept, and no count is ever low. Safe for concurrent use.
type topK struct {
	// capacity bounds the names counted.
	capacity int

	mu sync.Mutex
	// counts holds the counted names.
	counts map[string]*counter
}

// counter is one name's count.
type counter struct {
	// count is the requests counted, overcount included.
	count uint64
	// overcount is the count the name inherited when it replaced another:
	// its true count is between count-overcount and count.
	overcount uint64
}

// newTopK returns an empty topK that counts at most capacity names.
func newTopK(capacity int) *topK {
	return &topK{capacity: capacity, counts: make(map[string]*counter, capacity)}
}

// add counts one occurrence of name, which may be a view of a reused
// buffer: it is copied only when it becomes a new counter.
func (k *topK) add(name string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.counts[name]; ok {
		c.count++
		return
	}
	if len(k.counts) < k.capacity {
		k.counts[strings.Clone(name)] = &counter{count: 1}
		return
	}
	smallest, c := k.smallest()
	delete(k.counts, smallest)
	k.counts[strings.Clone(name)] = &counter{count: c.count + 1, overcount: c.count}
}

// smallest returns the name with the lowest count; k.mu is held.
func (k *topK) smallest() (string, *counter) {
	var name string
	var low *counter
	for n, c := range k.counts {
		if low == nil || c.count < low.count {
			name, low = n, c
		}
	}
	return name, low
}

// ranked is one name of the top list.
type ranked struct {
	// Name is the gem name.
	Name string
	// Count is the requests counted; the true number is at most Overcount
	// less.
	Count, Overcount uint64
}

// top returns the n names with the highest counts, highest first (ties by
// name).
func (k *topK) top(n int) []ranked {
	k.mu.Lock()
	out := make([]ranked, 0, len(k.counts))
	for name, c := range k.counts {
		out = append(out, ranked{Name: name, Count: c.count, Overcount: c.overcount})
	}
	k.mu.Unlock()
	slices.SortFunc(out, func(a, b ranked) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Name, b.Name))
	})
	return out[:min(n, len(out))]
}
