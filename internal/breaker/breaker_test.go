package breaker

import (
	"errors"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/metrics"
)

// clock is a settable time source for the breaker.
type clock struct{ t time.Time }

// now returns the clock's time.
func (c *clock) now() time.Time { return c.t }

// TestBreakerLifecycle walks a breaker through opening, a refused call, a
// failed probe that doubles the back-off, and a probe that closes it.
func TestBreakerLifecycle(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	var states []int
	b := New(Options{Failures: 2, Backoff: time.Second, MaxBackoff: 3 * time.Second}, c.now,
		func(state int, _ string) { states = append(states, state) })

	fail := func() {
		t.Helper()
		probe, err := b.Allow(true)
		if err != nil {
			t.Fatalf("Allow: %v", err)
		}
		b.Done(probe, Failing)
	}
	fail()
	fail()
	if _, err := b.Allow(true); !errors.Is(err, ErrOpen) {
		t.Fatalf("after 2 failures Allow = %v, want ErrOpen", err)
	}

	c.t = c.t.Add(time.Second)
	if _, err := b.Allow(false); !errors.Is(err, ErrOpen) {
		t.Fatalf("a call that may not probe was let through: %v", err)
	}
	fail() // the probe fails: open for 2s
	c.t = c.t.Add(time.Second)
	if _, err := b.Allow(true); !errors.Is(err, ErrOpen) {
		t.Fatalf("back-off did not double: Allow = %v", err)
	}

	c.t = c.t.Add(time.Second)
	probe, err := b.Allow(true)
	if err != nil || !probe {
		t.Fatalf("Allow after back-off = %v, %v; want the probe", probe, err)
	}
	if _, err := b.Allow(true); !errors.Is(err, ErrOpen) {
		t.Fatalf("a second call went through during the probe: %v", err)
	}
	b.Done(probe, Healthy)
	if _, err := b.Allow(false); err != nil {
		t.Fatalf("closed breaker refused: %v", err)
	}
	want := []int{metrics.CircuitOpen, metrics.CircuitHalfOpen, metrics.CircuitOpen, metrics.CircuitHalfOpen, metrics.CircuitClosed}
	if len(states) != len(want) {
		t.Fatalf("states = %v, want %v", states, want)
	}
	for i := range want {
		if states[i] != want[i] {
			t.Fatalf("states = %v, want %v", states, want)
		}
	}
}

// TestBreakerUnknownFreesProbe: an outcome that says nothing about the
// dependency frees the probe without closing or reopening the circuit.
func TestBreakerUnknownFreesProbe(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	b := New(Options{Failures: 1, Backoff: time.Second}, c.now, nil)
	probe, _ := b.Allow(true)
	b.Done(probe, Failing)
	c.t = c.t.Add(time.Second)
	probe, err := b.Allow(true)
	if err != nil || !probe {
		t.Fatalf("Allow = %v, %v; want the probe", probe, err)
	}
	b.Done(probe, Unknown)
	if probe, err = b.Allow(true); err != nil || !probe {
		t.Fatalf("after an unknown outcome Allow = %v, %v; want a new probe", probe, err)
	}
}

// TestBreakerDisabled: negative Failures never opens.
func TestBreakerDisabled(t *testing.T) {
	b := New(Options{Failures: -1}, time.Now, nil)
	for range 10 {
		probe, err := b.Allow(true)
		if err != nil {
			t.Fatal(err)
		}
		b.Done(probe, Failing)
	}
}
