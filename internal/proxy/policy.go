package proxy

import (
	"time"

	"github.com/gemproxy/gemproxy/internal/cache"
)

// Policy is everything that differs between cache classes: how long an
// entry is fresh, how it is refreshed, how long a stale copy may stand in
// for the upstream, and how long the upstream may take. Every field is
// explicit: zero means zero (no freshness, no stale serving, off), never
// "the default". DefaultPolicies holds one row per class; the
// configuration file, Options and the README's table all derive from it.
type Policy struct {
	// TTL is how long a stored answer of a mutable class is served without
	// asking the upstream; 0 revalidates on every request. Immutable
	// classes (gems, gemspecs) ignore it: their bodies never expire.
	TTL time.Duration
	// NegativeTTL is how long an upstream 404 is remembered; 0 disables
	// negative caching for the class.
	NegativeTTL time.Duration
	// MaxStale bounds how long after expiry an entry may still be served
	// when the upstream fails or misses RevalidateTimeout
	// (stale-if-error); 0 never serves stale, Unlimited always does.
	MaxStale time.Duration
	// StaleWhileRevalidate is the window after expiry in which a stale
	// entry is served at once while one background refresh runs; 0 (the
	// default for every class) revalidates synchronously instead, so that a
	// release is visible at most one TTL after the upstream shows it.
	StaleWhileRevalidate time.Duration
	// RevalidateTimeout is how long a request for an expired entry waits
	// for the upstream's answer before the stale copy (within MaxStale) is
	// served instead; the refresh goes on in the background. It is counted
	// from the start of the (coalesced) refresh, so requests that join a
	// slow refresh wait only what is left of it.
	RevalidateTimeout time.Duration
	// FirstByteTimeout bounds the wait for the upstream's response headers.
	FirstByteTimeout time.Duration
	// IdleTimeout bounds the wait between two reads of the upstream's body.
	IdleTimeout time.Duration
	// MaxResponseSize bounds the upstream body a fill accepts, counted
	// after any Content-Encoding is decoded; a larger one is a 502 and
	// nothing is stored.
	MaxResponseSize int64
}

// timeouts returns the upstream timeouts of the policy.
func (pol Policy) timeouts() Timeouts {
	return Timeouts{FirstByte: pol.FirstByteTimeout, Idle: pol.IdleTimeout}
}

// Unlimited is a staleness bound that never runs out.
const Unlimited = time.Duration(1<<63 - 1)

// indexPolicy is the row shared by the index classes and the API: a minute
// of freshness (docs/protocol.md §3.7, the origin's own max-age), synchronous revalidation with a
// 2 s deadline, stale copies served without limit when the upstream fails,
// and bodies up to 64 MiB (rubygems.org's /versions is about 20 MB).
var indexPolicy = Policy{
	TTL:               60 * time.Second,
	NegativeTTL:       60 * time.Second,
	MaxStale:          Unlimited,
	RevalidateTimeout: 2 * time.Second,
	FirstByteTimeout:  30 * time.Second,
	IdleTimeout:       30 * time.Second,
	MaxResponseSize:   64 << 20,
}

// DefaultPolicies returns the default row of every class (a fresh map the
// caller may change).
func DefaultPolicies() map[Class]Policy {
	api := indexPolicy
	api.MaxStale = 24 * time.Hour // API JSON changes meaning; a day at most
	api.MaxResponseSize = 8 << 20
	gem := indexPolicy
	gem.TTL = 0                        // immutable
	gem.IdleTimeout = 60 * time.Second // large bodies through slow mirrors
	gem.MaxResponseSize = 500 << 20    // the origin's own push limit
	spec := indexPolicy
	spec.TTL = 0 // immutable
	return map[Class]Policy{
		ClassVersions:  indexPolicy,
		ClassInfo:      indexPolicy,
		ClassNames:     indexPolicy,
		ClassFullIndex: indexPolicy,
		ClassQuickSpec: spec,
		ClassGem:       gem,
		ClassAPI:       api,
	}
}

// action is what a request does with what the cache holds for it.
type action uint8

// The actions decide chooses between.
const (
	// serveFresh serves the entry as it is.
	serveFresh action = iota
	// serveOffline serves whatever is cached, or a miss, without the upstream.
	serveOffline
	// serveStaleRefresh serves the stale entry at once and refreshes it in
	// the background (stale-while-revalidate).
	serveStaleRefresh
	// revalidate refreshes the stale entry, waiting up to the policy's
	// RevalidateTimeout before the stale copy stands in.
	revalidate
	// fetch fills a miss from the upstream and waits for it.
	fetch
)

// decide is the freshness decision: what a request does with e (nil when
// the cache holds nothing for it) at now under pol. It is pure, so that
// every case is table-tested.
func decide(e *cache.Entry, now time.Time, pol Policy, offline bool) action {
	switch {
	case e != nil && e.Fresh(now):
		return serveFresh
	case offline:
		return serveOffline
	case e == nil:
		return fetch
	case e.Status == 200 && now.Sub(e.FreshUntil) < pol.StaleWhileRevalidate:
		return serveStaleRefresh
	}
	return revalidate
}

// servableStale reports whether the expired entry e may stand in for an
// upstream that failed or is late, at now under pol.
func servableStale(e *cache.Entry, now time.Time, pol Policy) bool {
	return e != nil && now.Sub(e.FreshUntil) <= pol.MaxStale
}

// TunePolicy applies change to class c's policy in o, starting from the
// policy o already holds for c, else from its default row.
func (o *Options) TunePolicy(c Class, change func(*Policy)) {
	if o.Policies == nil {
		o.Policies = make(map[Class]Policy)
	}
	pol, ok := o.Policies[c]
	if !ok {
		pol = DefaultPolicies()[c]
	}
	change(&pol)
	o.Policies[c] = pol
}
