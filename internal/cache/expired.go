package cache

import "time"

// Expired is the FreshUntil of an entry invalidated before its TTL ran out:
// older than any stale-while-revalidate window, so it is always revalidated.
var Expired = time.Unix(0, 1)
