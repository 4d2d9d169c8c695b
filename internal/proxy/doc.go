// Package proxy is gemproxy's HTTP side: the Fiber app, the route table,
// the read-through path over the cache, and the pass-through of
// authenticated and write calls to the upstream.
//
// A read crosses five seams, each in its own files:
//
//   - Dispatch: handler.go (Proxy.handle) parses the request target
//     (input.go) and matches it against the one route table (routes.go),
//     which says how the route is answered, its cache class and its key.
//     Writes, credentialed and negotiated requests leave here for forward.
//   - Freshness: policy.go holds the per-class Policy table and decide, the
//     pure function that says what a request does with what the cache
//     holds: serve it, serve it stale and refresh, revalidate, or fill.
//   - Fill: fill.go (filler) applies that decision. It coalesces misses
//     per key through cache.Store.Fill, runs refreshes of expired entries
//     in the background, and fetches or revalidates upstream (upstream.go,
//     behind the circuit breaker of package breaker); compactfill.go brings
//     /versions and /info/NAME up to date by appending the upstream's tail.
//     With a shared store (sharedtier.go, claims.go, sharedmeter.go), a gem or gemspec
//     miss reads the fleet's bucket before the upstream, one replica of the
//     fleet fetches it, and the verified object is written back once.
//     A large gem streams to its clients while it downloads (livebody.go),
//     its last byte held until the body is verified (it goes out while the
//     body is stored).
//   - Verification: gemverify.go checks every 2xx body before a byte of it
//     is served (before its last byte, for a streamed gem): a gem's SHA-256 against the checksum /info/NAME lists
//     (read through the cache by infoForChecksum; for a gem read from the
//     shared store, the SHA-256 recorded with the object when the local
//     tier holds no /info/NAME: sharedChecksum), the digests of
//     compact-index files, the zlib and gzip streams, JSON.
//   - Store: store.go turns the verified answer into a cache entry: stored
//     (with the headers headers.go computes), negative (404), or transient
//     (errors, uncacheable answers, unverified gems).
//
// serve.go then writes the entry out (conditional requests, ranges, gzip),
// and forward.go passes writes through to the upstream unchanged and
// invalidates what they change. Beside the read path: admin.go answers the
// token-guarded /-/ API, usage.go feeds the client metrics and the status
// page, fetch.go is Proxy.Fetch for prefetch.
package proxy
