package status

import (
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The metric families the page reads, as internal/metrics names them.
const (
	familyLookups        = "gemproxy_cache_lookups_total"
	familyResponseBytes  = "gemproxy_http_response_bytes_total"
	familyRequests       = "gemproxy_http_requests_total"
	familyUpstream       = "gemproxy_upstream_requests_total"
	familyUpstreamTime   = "gemproxy_upstream_request_duration_seconds"
	familyCircuit        = "gemproxy_upstream_circuit_state"
	familyCacheEntries   = "gemproxy_cache_entries"
	familyCacheSize      = "gemproxy_cache_size_bytes"
	familyClientRequests = "gemproxy_client_requests_total"
	familyBuildInfo      = "gemproxy_build_info"
)

// client is the label set of one gemproxy_client_requests_total series.
type client struct {
	// kind, version and ci are the client, client_version and ci labels.
	kind, version, ci string
}

// histogram is a cumulative histogram: per upper bound, the observations
// at or below it.
type histogram struct {
	// bounds are the bucket upper bounds, ascending.
	bounds []float64
	// counts are the cumulative counts, by bound.
	counts []float64
	// count and sum are the number and total of observations.
	count, sum float64
}

// totals is one reading of the counters the page shows, summed over the
// labels it does not show. Gauges (circuit, cache usage) are current
// values; everything else only grows, so two readings subtract.
type totals struct {
	// at is when the reading was taken.
	at time.Time
	// lookups are cache lookups by result.
	lookups map[string]float64
	// responseBytes are body bytes sent, by source (cache, upstream).
	responseBytes map[string]float64
	// requests are requests served by endpoint, then by status class.
	requests map[string]map[string]float64
	// upstream are upstream requests by status class or "error".
	upstream map[string]float64
	// upstreamTime is the upstream latency over every endpoint.
	upstreamTime histogram
	// circuit is the breaker state (0 closed, 1 half-open, 2 open).
	circuit float64
	// cacheEntries and cacheBytes are the cache usage by class.
	cacheEntries, cacheBytes map[string]float64
	// clients are requests by client label set.
	clients map[client]float64
	// version is gemproxy's version from gemproxy_build_info.
	version string
}

// read gathers g once and sums what the page shows.
func read(g prometheus.Gatherer, at time.Time) (totals, error) {
	t := totals{
		at:            at,
		lookups:       map[string]float64{},
		responseBytes: map[string]float64{},
		requests:      map[string]map[string]float64{},
		upstream:      map[string]float64{},
		cacheEntries:  map[string]float64{},
		cacheBytes:    map[string]float64{},
		clients:       map[client]float64{},
	}
	mfs, err := g.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			t.add(mf.GetName(), m)
		}
	}
	return t, err
}

// add sums one series of family into t.
func (t *totals) add(family string, m *dto.Metric) {
	v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
	switch family {
	case familyLookups:
		t.lookups[label(m, "result")] += v
	case familyResponseBytes:
		t.responseBytes[label(m, "source")] += v
	case familyRequests:
		ep := label(m, "endpoint")
		if t.requests[ep] == nil {
			t.requests[ep] = map[string]float64{}
		}
		t.requests[ep][label(m, "code")] += v
	case familyUpstream:
		t.upstream[label(m, "code")] += v
	case familyUpstreamTime:
		t.upstreamTime.add(m.GetHistogram())
	case familyCircuit:
		t.circuit = v
	case familyCacheEntries:
		t.cacheEntries[label(m, "class")] = v
	case familyCacheSize:
		t.cacheBytes[label(m, "class")] = v
	case familyClientRequests:
		t.clients[client{label(m, "client"), label(m, "client_version"), label(m, "ci")}] += v
	case familyBuildInfo:
		t.version = label(m, "version")
	}
}

// label returns the value of m's label name, or "".
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// add sums a histogram series into h (every series of a family has the
// same buckets).
func (h *histogram) add(s *dto.Histogram) {
	if h.bounds == nil {
		for _, b := range s.GetBucket() {
			h.bounds = append(h.bounds, b.GetUpperBound())
		}
		h.counts = make([]float64, len(h.bounds))
	}
	for i, b := range s.GetBucket() {
		if i < len(h.counts) {
			h.counts[i] += float64(b.GetCumulativeCount())
		}
	}
	h.count += float64(s.GetSampleCount())
	h.sum += s.GetSampleSum()
}

// since returns what t counted after base: counters subtract, gauges and
// the version stay as t has them. A counter that went backwards (base
// from another process) counts from zero.
func (t totals) since(base totals) totals {
	d := t
	d.lookups = subtract(t.lookups, base.lookups)
	d.responseBytes = subtract(t.responseBytes, base.responseBytes)
	d.upstream = subtract(t.upstream, base.upstream)
	d.clients = subtract(t.clients, base.clients)
	d.requests = make(map[string]map[string]float64, len(t.requests))
	for ep, codes := range t.requests {
		d.requests[ep] = subtract(codes, base.requests[ep])
	}
	d.upstreamTime = t.upstreamTime.since(base.upstreamTime)
	return d
}

// subtract returns now minus base, key by key, never below zero.
func subtract[K comparable](now, base map[K]float64) map[K]float64 {
	out := make(map[K]float64, len(now))
	for k, v := range now {
		out[k] = math.Max(v-base[k], 0)
	}
	return out
}

// since returns the observations h made after base.
func (h histogram) since(base histogram) histogram {
	if !slices.Equal(h.bounds, base.bounds) {
		return h
	}
	d := histogram{bounds: h.bounds, count: h.count - base.count, sum: h.sum - base.sum}
	d.counts = make([]float64, len(h.counts))
	for i := range h.counts {
		d.counts[i] = h.counts[i] - base.counts[i]
	}
	return d
}

// quantile estimates the q-quantile (0 < q < 1) by linear interpolation
// within its bucket, as PromQL's histogram_quantile does; NaN without
// observations. An estimate above the last finite bound is that bound.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	rank := q * h.count
	lower, below := 0.0, 0.0
	for i, bound := range h.bounds {
		if h.counts[i] >= rank {
			inBucket := h.counts[i] - below
			if inBucket == 0 {
				return bound
			}
			return lower + (bound-lower)*(rank-below)/inBucket
		}
		lower, below = bound, h.counts[i]
	}
	return lower
}

// mean is the average observation, NaN without observations.
func (h histogram) mean() float64 {
	if h.count == 0 {
		return math.NaN()
	}
	return h.sum / h.count
}
