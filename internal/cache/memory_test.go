package cache

import (
	"bytes"
	"testing"
	"time"
)

// TestMemoryBudgetEvictsLeastRecentlyUsed: a body that does not fit in the
// memory budget makes room by dropping the least recently looked-up memory
// bodies (down to an eighth below the budget), not by being left out for
// good; the dropped bodies are still served, from the file.
func TestMemoryBudgetEvictsLeastRecentlyUsed(t *testing.T) {
	s := newTestStore(t, Options{MemoryBudget: 10_000})
	clock := newTestClock()
	s.now = clock.Now
	bodies := map[string][]byte{}
	for i, key := range []string{"/info/a", "/info/b", "/info/c", "/info/d"} {
		bodies[key] = testBody(3000, uint64(i+1))
		putKey(t, s, key, bodies[key], CommitOptions{})
	}
	inMemory := func(key string) bool {
		e := s.Lookup(key)
		if e.Body != nil && !bytes.Equal(e.Body, bodies[key]) {
			t.Fatalf("%s: memory body differs from the stored one", key)
		}
		return e.Body != nil
	}
	for _, key := range []string{"/info/a", "/info/b", "/info/c"} {
		clock.Advance(time.Second)
		if !inMemory(key) {
			t.Fatalf("%s not held in memory with the budget not yet full", key)
		}
	}
	clock.Advance(time.Second)
	inMemory("/info/a") // a is now more recent than b and c

	clock.Advance(time.Second)
	if !inMemory("/info/d") {
		t.Fatal("/info/d left out of memory: the budget never made room for it")
	}
	for key, want := range map[string]bool{"/info/a": true, "/info/b": false, "/info/c": false} {
		if got := s.Peek(key).Body != nil; got != want {
			t.Errorf("%s held in memory = %v, want %v (least recently used dropped first)", key, got, want)
		}
		if got := readBodyOf(t, s, s.Peek(key), false); !bytes.Equal(got, bodies[key]) {
			t.Errorf("%s: body read from the file differs", key)
		}
	}
	if n := s.memoryBytes.Load(); n != 6000 {
		t.Errorf("memoryBytes = %d, want 6000 (a and d)", n)
	}
}
