// Package breaker is a circuit breaker for a remote dependency (the
// upstream registry, the shared object store): after consecutive failures
// it stops calling the dependency for a back-off period that doubles up to
// a cap, then lets one call through as a probe.
package breaker

import (
	"cmp"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gemproxy/gemproxy/internal/metrics"
)

// Options configures a circuit breaker. Zero values select the defaults
// given per field.
type Options struct {
	// Failures is how many consecutive failures of the dependency
	// (transport errors, timeouts, 5xx) open the circuit; what a client
	// causes (a broken request body, a client that leaves or stops reading)
	// never counts. Default 5; negative disables the breaker.
	Failures int
	// Backoff is the first open period; each failed probe doubles it.
	// Default 5s.
	Backoff time.Duration
	// MaxBackoff caps the open period. Default 5m.
	MaxBackoff time.Duration
}

// DefaultOptions returns the values zero fields select.
func DefaultOptions() Options {
	return Options{Failures: 5, Backoff: 5 * time.Second, MaxBackoff: 5 * time.Minute}
}

// withDefaults fills zero fields.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	o.Failures = cmp.Or(o.Failures, d.Failures)
	o.Backoff = cmp.Or(o.Backoff, d.Backoff)
	o.MaxBackoff = cmp.Or(o.MaxBackoff, d.MaxBackoff)
	return o
}

// ErrOpen is returned by Allow instead of calling a dependency that keeps
// failing; the error Allow returns wraps it with when the next probe is due.
var ErrOpen = errors.New("circuit open after repeated failures")

// Breaker stops calling a dependency after consecutive failures, for a
// back-off period that doubles up to a cap, then lets one call through as
// a probe. It is safe for concurrent use.
type Breaker struct {
	opts     Options
	now      func() time.Time
	onChange func(state int, reason string)

	mu        sync.Mutex
	state     int // metrics.CircuitClosed, CircuitHalfOpen or CircuitOpen
	failures  int
	backoff   time.Duration
	openUntil time.Time
	probing   bool
}

// New builds a closed breaker; now is its clock, and onChange, when not
// nil, is called on every state change with the new state
// (metrics.CircuitClosed, CircuitHalfOpen or CircuitOpen) and why.
func New(opts Options, now func() time.Time, onChange func(state int, reason string)) *Breaker {
	opts = opts.withDefaults()
	return &Breaker{opts: opts, now: now, onChange: onChange, backoff: opts.Backoff}
}

// Outcome is what one call tells about the dependency's health.
type Outcome int

const (
	// Healthy: the dependency answered, below 500.
	Healthy Outcome = iota
	// Failing: the dependency's own fault (connect or TLS error, reset or
	// stall while its answer was read, 5xx).
	Failing
	// Unknown: the call ended for a reason that says nothing about the
	// dependency (a client's broken body, departure or pace; no free slot).
	Unknown
)

// Allow reports whether a call may go to the dependency now; mayProbe
// tells whether this call may be the probe of a half-open circuit (the
// proxy lets only cache fills probe the upstream, never a client's own
// request). When Allow returns nil, the caller must call Done with probe
// and the outcome. Its error wraps ErrOpen.
func (b *Breaker) Allow(mayProbe bool) (probe bool, err error) {
	if b.opts.Failures < 0 {
		return false, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.state == metrics.CircuitClosed:
		return false, nil
	case b.state == metrics.CircuitOpen && b.now().Before(b.openUntil):
		return false, fmt.Errorf("%w; next probe in %s", ErrOpen, b.openUntil.Sub(b.now()).Round(time.Second))
	case !mayProbe:
		return false, fmt.Errorf("%w; waiting for a cache fill to probe", ErrOpen)
	case b.probing:
		return false, fmt.Errorf("%w; a probe is in flight", ErrOpen)
	}
	if b.state == metrics.CircuitOpen {
		b.set(metrics.CircuitHalfOpen, "back-off elapsed; probing")
	}
	b.probing = true
	return true, nil
}

// Done records the outcome of an allowed call; probe is what Allow
// returned for it. An unknown outcome changes nothing but frees the probe.
func (b *Breaker) Done(probe bool, o Outcome) {
	if b.opts.Failures < 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch o {
	case Healthy:
		b.failures = 0
		if b.state != metrics.CircuitClosed {
			b.backoff = b.opts.Backoff
			b.set(metrics.CircuitClosed, "probe succeeded")
		}
	case Failing:
		b.failures++
		switch {
		case probe && b.state == metrics.CircuitHalfOpen:
			b.backoff = min(b.backoff*2, b.opts.MaxBackoff)
			b.openUntil = b.now().Add(b.backoff)
			b.set(metrics.CircuitOpen, "probe failed")
		case b.state == metrics.CircuitClosed && b.failures >= b.opts.Failures:
			b.openUntil = b.now().Add(b.backoff)
			b.set(metrics.CircuitOpen, fmt.Sprintf("%d consecutive failures", b.failures))
		}
	}
}

// set changes state and reports it; b.mu is held.
func (b *Breaker) set(state int, reason string) {
	b.state = state
	if b.onChange != nil {
		b.onChange(state, reason)
	}
}
