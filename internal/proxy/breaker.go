package proxy

import (
	"cmp"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gemproxy/gemproxy/internal/metrics"
)

// BreakerOptions configures the upstream circuit breaker. Zero values
// select the defaults given per field.
type BreakerOptions struct {
	// Failures is how many consecutive upstream failures (transport errors,
	// timeouts, 5xx) open the circuit; what a client causes (a broken
	// request body, a client that leaves or stops reading) never counts.
	// Default 5; negative disables the breaker.
	Failures int
	// Backoff is the first open period; each failed probe doubles it.
	// Default 5s.
	Backoff time.Duration
	// MaxBackoff caps the open period. Default 5m.
	MaxBackoff time.Duration
}

// withDefaults fills zero fields.
func (o BreakerOptions) withDefaults() BreakerOptions {
	o.Failures = cmp.Or(o.Failures, 5)
	o.Backoff = cmp.Or(o.Backoff, 5*time.Second)
	o.MaxBackoff = cmp.Or(o.MaxBackoff, 5*time.Minute)
	return o
}

// errCircuitOpen is returned instead of calling an upstream that keeps failing.
var errCircuitOpen = errors.New("upstream circuit open after repeated failures")

// breaker stops calling the upstream after consecutive failures, for a
// back-off period that doubles up to a cap, then lets one cache fill
// through as a probe.
type breaker struct {
	opts     BreakerOptions
	now      func() time.Time
	onChange func(state int, reason string)

	mu        sync.Mutex
	state     int // metrics.CircuitClosed, CircuitHalfOpen or CircuitOpen
	failures  int
	backoff   time.Duration
	openUntil time.Time
	probing   bool
}

// newBreaker builds a closed breaker; onChange is called on every state change.
func newBreaker(opts BreakerOptions, now func() time.Time, onChange func(state int, reason string)) *breaker {
	opts = opts.withDefaults()
	return &breaker{opts: opts, now: now, onChange: onChange, backoff: opts.Backoff}
}

// outcome is what one upstream call tells about the upstream's health.
type outcome int

const (
	// healthy: the upstream answered, below 500.
	healthy outcome = iota
	// failing: the upstream's own fault (connect or TLS error, reset or
	// stall while its answer was read, 5xx).
	failing
	// unknown: the call ended for a reason that says nothing about the
	// upstream (a client's broken body, departure or pace; no free slot).
	unknown
)

// allow reports whether a request may go upstream now; fill tells a cache
// fill from a client's pass-through or write. Only a fill may be the probe
// of a half-open circuit: a client's request cannot take the probe, nor be
// it. When allow returns nil, the caller must call done with probe and the
// outcome.
func (b *breaker) allow(fill bool) (probe bool, err error) {
	if b.opts.Failures < 0 {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.state == metrics.CircuitClosed:
		return false, nil
	case b.state == metrics.CircuitOpen && b.now().Before(b.openUntil):
		return false, fmt.Errorf("%w; next probe in %s", errCircuitOpen, b.openUntil.Sub(b.now()).Round(time.Second))
	case !fill:
		return false, fmt.Errorf("%w; waiting for a cache fill to probe the upstream", errCircuitOpen)
	case b.probing:
		return false, fmt.Errorf("%w; a probe is in flight", errCircuitOpen)
	}
	if b.state == metrics.CircuitOpen {
		b.set(metrics.CircuitHalfOpen, "back-off elapsed; probing")
	}
	b.probing = true
	return true, nil
}

// done records the outcome of an allowed request; probe is what allow
// returned for it. An unknown outcome changes nothing but frees the probe.
func (b *breaker) done(probe bool, o outcome) {
	if b.opts.Failures < 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch o {
	case healthy:
		b.failures = 0
		if b.state != metrics.CircuitClosed {
			b.backoff = b.opts.Backoff
			b.set(metrics.CircuitClosed, "probe succeeded")
		}
	case failing:
		b.failures++
		switch {
		case probe && b.state == metrics.CircuitHalfOpen:
			b.backoff = min(b.backoff*2, b.opts.MaxBackoff)
			b.openUntil = b.now().Add(b.backoff)
			b.set(metrics.CircuitOpen, "probe failed")
		case b.state == metrics.CircuitClosed && b.failures >= b.opts.Failures:
			b.openUntil = b.now().Add(b.backoff)
			b.set(metrics.CircuitOpen, fmt.Sprintf("%d consecutive upstream failures", b.failures))
		}
	}
}

// set changes state and reports it; b.mu is held.
func (b *breaker) set(state int, reason string) {
	b.state = state
	if b.onChange != nil {
		b.onChange(state, reason)
	}
}
