package proxy

import (
	"strconv"
	"testing"
	"time"
)

// TestCatchUpLimiterBounds: forced refreshes for clients ahead are allowed
// once per key and interval, and at most maxCatchUpsPerInterval in all, so
// that unknown ETags sent for every /info name cannot turn into as many
// upstream requests; the next interval allows them again.
func TestCatchUpLimiterBounds(t *testing.T) {
	var l catchUpLimiter
	now := time.Unix(1_700_000_000, 0)
	allowed := 0
	for i := range 10 * maxCatchUpsPerInterval {
		if l.allow("/info/gem"+strconv.Itoa(i), now) {
			allowed++
		}
	}
	if allowed != maxCatchUpsPerInterval {
		t.Errorf("%d distinct keys allowed in one interval, want %d", allowed, maxCatchUpsPerInterval)
	}
	if len(l.last) > maxCatchUpsPerInterval {
		t.Errorf("limiter remembers %d keys, want at most %d", len(l.last), maxCatchUpsPerInterval)
	}
	later := now.Add(catchUpInterval)
	if !l.allow("/info/gem0", later) {
		t.Error("a key refreshed an interval ago is refused")
	}
	if l.allow("/info/gem0", later.Add(catchUpInterval/2)) {
		t.Error("a key is allowed twice in one interval")
	}
}
