package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// This file holds the label values of gemproxy's metrics: the small enums
// that only code produces, each with its name table, and the HTTP status
// classes.

// Result is the value of the result label of gemproxy_cache_lookups_total.
// The zero Result means "no lookup happened" and is never recorded.
type Result uint8

// The outcomes of a cache lookup.
const (
	// ResultHit means a fresh entry was served from the cache.
	ResultHit Result = iota + 1
	// ResultMiss means there was no entry and this request filled it.
	ResultMiss
	// ResultStale means a stale entry was served because the upstream
	// failed or missed the revalidation deadline (stale-if-error), or
	// within a stale-while-revalidate window.
	ResultStale
	// ResultRevalidated means a stale entry was confirmed or updated by a
	// conditional or ranged upstream request (304 or verified append).
	ResultRevalidated
	// ResultCoalesced means the request waited on another request's fill
	// of the same key.
	ResultCoalesced
	// ResultBypass means the request was not eligible for the cache
	// (credentials, write method, private route).
	ResultBypass
	// numResults bounds the Result values.
	numResults
)

// resultNames are the label values of the Results, by value.
var resultNames = [numResults]string{"", "hit", "miss", "stale", "revalidated", "coalesced", "bypass"}

// String returns the label value.
func (r Result) String() string { return resultNames[r] }

// Source is the value of the source label of
// gemproxy_http_response_bytes_total: where served body bytes came from.
// The zero Source means "no body bytes" and is never recorded.
type Source uint8

// The sources of response bytes.
const (
	// SourceCache counts bytes served from the local cache.
	SourceCache Source = iota + 1
	// SourceUpstream counts bytes streamed from upstream to the client
	// (misses, pass-through).
	SourceUpstream
	// numSources bounds the Source values.
	numSources
)

// sourceNames are the label values of the Sources, by value.
var sourceNames = [numSources]string{"", "cache", "upstream"}

// String returns the label value.
func (s Source) String() string { return sourceNames[s] }

// RefreshPath is the value of the path label of the compact-index refresh
// metrics: how a stale /versions or /info entry was brought up to date.
type RefreshPath uint8

// The ways a compact-index file is refreshed.
const (
	// RefreshAppend is a verified Range append (206).
	RefreshAppend RefreshPath = iota
	// RefreshFull is a full download (200, or after a failed append).
	RefreshFull
	// RefreshNotModified is a 304: only freshness changed.
	RefreshNotModified
	// numRefreshPaths bounds the RefreshPath values.
	numRefreshPaths
)

// refreshPathNames are the label values of the RefreshPaths, by value.
var refreshPathNames = [numRefreshPaths]string{"append", "full", "not_modified"}

// String returns the label value.
func (p RefreshPath) String() string { return refreshPathNames[p] }

// ChecksumReason is the value of the reason label of
// gemproxy_cache_checksum_failures_total.
type ChecksumReason uint8

// The reasons a .gem could not be verified before it was stored.
const (
	// ChecksumMismatch means the body's SHA-256 differs from the published
	// checksum.
	ChecksumMismatch ChecksumReason = iota
	// ChecksumUnknown means no published checksum could be found.
	ChecksumUnknown
	// numChecksumReasons bounds the ChecksumReason values.
	numChecksumReasons
)

// checksumReasonNames are the label values of the ChecksumReasons.
var checksumReasonNames = [numChecksumReasons]string{"mismatch", "unknown"}

// String returns the label value.
func (r ChecksumReason) String() string { return checksumReasonNames[r] }

// counters resolves one child of vec per name (its only label), in
// order: the series of a small enum, created at zero. An empty name (an
// enum's "none") gets no series.
func counters(vec *prometheus.CounterVec, names []string) []prometheus.Counter {
	out := make([]prometheus.Counter, len(names))
	for i, n := range names {
		if n != "" {
			out[i] = vec.WithLabelValues(n)
		}
	}
	return out
}

// The values of gemproxy_upstream_circuit_state, for SetCircuitState.
const (
	// CircuitClosed means upstream requests flow normally.
	CircuitClosed = 0
	// CircuitHalfOpen means trial requests are probing a failed upstream.
	CircuitHalfOpen = 1
	// CircuitOpen means upstream requests are short-circuited.
	CircuitOpen = 2
)

// numStatusClasses is the number of HTTP status classes, 1xx to 5xx.
const numStatusClasses = 5

// statusClassNames are the code label values of served responses, by
// statusClassIndex; upstream requests add UpstreamErrorLabel after them.
var statusClassNames = [numStatusClasses]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// finalStatusClasses are the classes a final response can have, the ones
// pre-created by default: the HTTP client and server handle 1xx
// themselves.
func finalStatusClasses() []string { return slices.Clone(statusClassNames[1:]) }

// StatusClass returns the status class label value of an HTTP status code:
// "1xx" to "5xx" for 100 to 599, and UpstreamErrorLabel for anything else
// (pass 0 for a transport error). The result is a constant string, so the
// call does not allocate.
func StatusClass(code int) string {
	if i := statusClassIndex(code); i < numStatusClasses {
		return statusClassNames[i]
	}
	return UpstreamErrorLabel
}

// statusClassIndex is StatusClass as an index into statusClassNames, or
// numStatusClasses (the "error" slot) for codes outside 100..599.
func statusClassIndex(code int) int {
	if code < 100 || code > 599 {
		return numStatusClasses
	}
	return code/100 - 1
}
