package proxy

import (
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
	// timeouts, 5xx) open the circuit. Default 5; negative disables the breaker.
	Failures int
	// Backoff is the first open period; each failed probe doubles it.
	// Default 5s.
	Backoff time.Duration
	// MaxBackoff caps the open period. Default 5m.
	MaxBackoff time.Duration
}

// withDefaults fills zero fields.
func (o BreakerOptions) withDefaults() BreakerOptions {
	if o.Failures == 0 {
		o.Failures = 5
	}
	if o.Backoff == 0 {
		o.Backoff = 5 * time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	return o
}

// errCircuitOpen is returned instead of calling an upstream that keeps failing.
var errCircuitOpen = errors.New("upstream circuit open after repeated failures")

// breaker stops calling the upstream after consecutive failures, for a
// back-off period that doubles up to a cap, then lets one probe through.
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

// allow reports whether a request may go upstream now. When it returns
// nil, the caller must call done with the outcome.
func (b *breaker) allow() error {
	if b.opts.Failures < 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case metrics.CircuitOpen:
		if b.now().Before(b.openUntil) {
			return fmt.Errorf("%w; next probe in %s", errCircuitOpen, b.openUntil.Sub(b.now()).Round(time.Second))
		}
		b.set(metrics.CircuitHalfOpen, "back-off elapsed; probing")
		b.probing = true
		return nil
	case metrics.CircuitHalfOpen:
		if b.probing {
			return fmt.Errorf("%w; a probe is in flight", errCircuitOpen)
		}
		b.probing = true
	}
	return nil
}

// done records the outcome of an allowed request.
func (b *breaker) done(ok bool) {
	if b.opts.Failures < 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok {
		b.failures = 0
		b.probing = false
		if b.state != metrics.CircuitClosed {
			b.backoff = b.opts.Backoff
			b.set(metrics.CircuitClosed, "probe succeeded")
		}
		return
	}
	b.failures++
	switch {
	case b.state == metrics.CircuitHalfOpen:
		b.probing = false
		b.backoff = min(b.backoff*2, b.opts.MaxBackoff)
		b.openUntil = b.now().Add(b.backoff)
		b.set(metrics.CircuitOpen, "probe failed")
	case b.state == metrics.CircuitClosed && b.failures >= b.opts.Failures:
		b.openUntil = b.now().Add(b.backoff)
		b.set(metrics.CircuitOpen, fmt.Sprintf("%d consecutive upstream failures", b.failures))
	}
}

// set changes state and reports it; b.mu is held.
func (b *breaker) set(state int, reason string) {
	b.state = state
	if b.onChange != nil {
		b.onChange(state, reason)
	}
}
