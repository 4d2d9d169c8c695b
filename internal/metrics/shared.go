package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// SharedOp is the value of the op label of the shared-store metrics: the
// blobstore.Store method called.
type SharedOp uint8

// The operations on the shared store.
const (
	// SharedGet reads an object (a gem, a quick spec, a claim).
	SharedGet SharedOp = iota
	// SharedStat describes an object without reading it.
	SharedStat
	// SharedPut writes an object with PutIfAbsent or PutIfMatch.
	SharedPut
	// SharedDelete removes an object (a claim).
	SharedDelete
	// numSharedOps bounds the SharedOp values.
	numSharedOps
)

// sharedOpNames are the label values of the SharedOps, by value.
var sharedOpNames = [numSharedOps]string{"get", "stat", "put", "delete"}

// String returns the label value.
func (o SharedOp) String() string { return sharedOpNames[o] }

// SharedResult is the value of the result label of
// gemproxy_shared_store_requests_total.
type SharedResult uint8

// The outcomes of a shared-store call.
const (
	// SharedOK means the call did what it was asked.
	SharedOK SharedResult = iota
	// SharedNotFound means there was no object at the key.
	SharedNotFound
	// SharedExists means a PutIfAbsent found an object (another replica
	// wrote it first).
	SharedExists
	// SharedConflict means a PutIfMatch found another version.
	SharedConflict
	// SharedError means the store failed (unavailable, denied, timed out,
	// breaker open); gemproxy went on without it.
	SharedError
	// numSharedResults bounds the SharedResult values.
	numSharedResults
)

// sharedResultNames are the label values of the SharedResults, by value.
var sharedResultNames = [numSharedResults]string{"ok", "not_found", "exists", "conflict", "error"}

// String returns the label value.
func (r SharedResult) String() string { return sharedResultNames[r] }

// SharedStore holds the metrics of the shared tier of a fleet (an S3
// bucket that replicas share, docs/fleet.md), every series pre-created.
type SharedStore struct {
	// Requests counts calls by op and result.
	Requests *prometheus.CounterVec
	// Bytes counts object bytes read (get) and written (put).
	Bytes *prometheus.CounterVec
	// Duration observes each call's latency by op (a Get until its
	// headers).
	Duration *prometheus.HistogramVec
	// CoalescedWaits counts fills that waited for another replica's claim
	// instead of asking the upstream.
	CoalescedWaits prometheus.Counter
	// CorruptReplaced counts objects that failed verification when read
	// and were deleted, to be replaced by this replica's verified copy.
	CorruptReplaced prometheus.Counter
	// VersionsGeneration is the generation of the fleet's /versions that
	// this replica holds: the last one it published or adopted, 0 before
	// the first.
	VersionsGeneration prometheus.Gauge
	// Versions counts the /versions generations published, adopted and
	// refused, by event.
	Versions *prometheus.CounterVec
	// PendingUploads is the number of verified objects stored locally that
	// this replica has still to write to the shared store (the store was
	// down, or the replica stopped, before their upload).
	PendingUploads prometheus.Gauge
	// State is 1 for the state the shared tier is in and 0 for the others
	// (SharedState).
	State *prometheus.GaugeVec

	// requests, bytes and duration are the resolved children, by op
	// (and result).
	requests [numSharedOps][numSharedResults]prometheus.Counter
	bytes    [numSharedOps]prometheus.Counter
	duration [numSharedOps]prometheus.Observer
	// versions are the resolved children of Versions, by event.
	versions [numVersionsEvents]prometheus.Counter
	// states are the resolved children of State, by state.
	states [numSharedStates]prometheus.Gauge
}

// newSharedStore registers the shared-store metrics with f.
func newSharedStore(f promauto.Factory) *SharedStore {
	s := &SharedStore{
		Requests: f.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "shared_store", Name: "requests_total",
			Help: "Calls to the shared store, by operation (get, stat, put, delete) and result (ok, not_found, exists, conflict, error)."},
			[]string{"op", "result"}),
		Bytes: f.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "shared_store", Name: "bytes_total",
			Help: "Object bytes read from (get) and written to (put) the shared store."}, []string{"op"}),
		Duration: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "shared_store", Name: "request_duration_seconds",
			Help: "Time a shared-store call took, by operation (a get until its headers).", Buckets: durationBuckets()}, []string{"op"}),
		CoalescedWaits: f.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: "shared_store", Name: "coalesced_waits_total",
			Help: "Fills that found another replica's claim and waited for its object instead of asking the upstream."}),
		CorruptReplaced: f.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: "shared_store", Name: "corrupt_replaced_total",
			Help: "Objects of the shared store that failed verification when read and were deleted, to be replaced by a verified copy."}),
		VersionsGeneration: f.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "shared_store", Name: "versions_generation",
			Help: "Generation of the fleet's /versions this replica holds (last published or adopted), 0 before the first."}),
		Versions: f.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "shared_store", Name: "versions_total",
			Help: "/versions generations this replica published, adopted, or refused (size or SHA-256 not the pointer's)."}, []string{"event"}),
		PendingUploads: f.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "shared_store", Name: "pending_uploads",
			Help: "Verified objects stored locally that this replica has still to write to the shared store."}),
		State: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: "shared_store", Name: "state",
			Help: "1 for the state of this replica's shared tier: off (none, or refused), probing (unreachable at start, probed again in the background), conditional or unconditional (on, in that mode); 0 for the others."},
			[]string{"state"}),
	}
	for st := range numSharedStates {
		s.states[st] = s.State.WithLabelValues(st.String())
	}
	s.SetState(SharedOff)
	for ev := range numVersionsEvents {
		s.versions[ev] = s.Versions.WithLabelValues(ev.String())
	}
	for op := range numSharedOps {
		for r := range numSharedResults {
			s.requests[op][r] = s.Requests.WithLabelValues(op.String(), r.String())
		}
		s.duration[op] = s.Duration.WithLabelValues(op.String())
	}
	s.bytes[SharedGet] = s.Bytes.WithLabelValues(SharedGet.String())
	s.bytes[SharedPut] = s.Bytes.WithLabelValues(SharedPut.String())
	return s
}

// Observe records one call of op that ended with r after d.
func (s *SharedStore) Observe(op SharedOp, r SharedResult, d time.Duration) {
	s.requests[op][r].Inc()
	s.duration[op].Observe(d.Seconds())
}

// AddBytes counts n object bytes moved by op (SharedGet or SharedPut).
func (s *SharedStore) AddBytes(op SharedOp, n int64) {
	if c := s.bytes[op]; c != nil {
		c.Add(float64(n))
	}
}

// VersionsEvent is the value of the event label of
// gemproxy_shared_store_versions_total.
type VersionsEvent uint8

// What can happen to a /versions generation.
const (
	// VersionsPublished: this replica wrote a generation and moved the
	// pointer to it.
	VersionsPublished VersionsEvent = iota
	// VersionsAdopted: this replica replaced its /versions with the
	// generation the pointer names.
	VersionsAdopted
	// VersionsRefused: the generation the pointer names did not have the
	// pointer's size or SHA-256; it was dropped.
	VersionsRefused
	// numVersionsEvents bounds the VersionsEvent values.
	numVersionsEvents
)

// versionsEventNames are the label values of the VersionsEvents, by value.
var versionsEventNames = [numVersionsEvents]string{"published", "adopted", "refused"}

// String returns the label value.
func (e VersionsEvent) String() string { return versionsEventNames[e] }

// ObserveVersions counts ev and, unless the generation was refused, sets
// the generation held to gen.
func (s *SharedStore) ObserveVersions(ev VersionsEvent, gen int64) {
	s.versions[ev].Inc()
	if ev != VersionsRefused {
		s.VersionsGeneration.Set(float64(gen))
	}
}

// SharedState is the value of the state label of
// gemproxy_shared_store_state.
type SharedState uint8

// The states of a replica's shared tier.
const (
	// SharedOff: no shared store, or one that refused the probe.
	SharedOff SharedState = iota
	// SharedProbing: the store could not be probed at start; the replica
	// serves alone and probes it again in the background.
	SharedProbing
	// SharedConditional: on, the store honours conditional writes.
	SharedConditional
	// SharedUnconditional: on, the store ignores conditional writes.
	SharedUnconditional
	// numSharedStates bounds the SharedState values.
	numSharedStates
)

// sharedStateNames are the label values of the SharedStates, by value.
var sharedStateNames = [numSharedStates]string{"off", "probing", "conditional", "unconditional"}

// String returns the label value.
func (st SharedState) String() string { return sharedStateNames[st] }

// SetState sets gemproxy_shared_store_state to st.
func (s *SharedStore) SetState(st SharedState) {
	for other, g := range s.states {
		v := 0.0
		if SharedState(other) == st {
			v = 1
		}
		g.Set(v)
	}
}
