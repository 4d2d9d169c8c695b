package blobstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
)

// Mode is what a store's writes can do, as Probe found it.
type Mode int

const (
	// Conditional: the store honours PutIfAbsent and PutIfMatch, so
	// replicas can coordinate through it (claims, the /versions pointer).
	Conditional Mode = iota + 1
	// Unconditional: the store ignores the conditions and every write
	// replaces the object. Verified immutable objects may still be written
	// (a replacement carries the same bytes); nothing may coordinate
	// through it.
	Unconditional
)

// String names the mode for logs.
func (m Mode) String() string {
	switch m {
	case Conditional:
		return "conditional"
	case Unconditional:
		return "unconditional"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ProbePrefix is the key prefix of the objects Probe writes and deletes.
const ProbePrefix = "gemproxy-probe/"

// Probe checks, on a fresh object under ProbePrefix (a random name that
// no other prober picks) that it deletes
// afterwards, whether s refuses a second PutIfAbsent and a PutIfMatch that
// names a stale version. It returns Unconditional when either write went
// through, and an error when the store could not be probed (unreachable,
// access denied): the caller then knows nothing of its mode.
func Probe(ctx context.Context, s Store) (mode Mode, err error) {
	key := ProbePrefix + rand.Text()
	first, err := s.PutIfAbsent(ctx, key, bytes.NewReader([]byte("1")), 1, PutOptions{})
	if err != nil {
		return 0, fmt.Errorf("blobstore: probe: first write: %w", err)
	}
	defer func() {
		if derr := s.Delete(context.WithoutCancel(ctx), key); derr != nil && err == nil {
			mode, err = 0, fmt.Errorf("blobstore: probe: deleting %s: %w", key, derr)
		}
	}()
	if conditional, err := refused(s.PutIfAbsent(ctx, key, bytes.NewReader([]byte("2")), 1, PutOptions{})); err != nil || !conditional {
		return modeOf(conditional, err, "second write with If-None-Match")
	}
	second, err := s.PutIfMatch(ctx, key, []byte("3"), first.Version)
	if err != nil {
		return 0, fmt.Errorf("blobstore: probe: swap with the current version: %w", err)
	}
	if second.Version == first.Version {
		return 0, fmt.Errorf("blobstore: probe: version %q did not change with the content", first.Version)
	}
	conditional, err := refused(s.PutIfMatch(ctx, key, []byte("4"), first.Version))
	return modeOf(conditional, err, "swap with a stale version")
}

// ProbeRetryable reports whether err, an error of Probe, may go away if
// the probe is tried again later: the store was unavailable
// (ErrUnavailable: down, a 5xx, a reset, a stall, its breaker open) or
// the probe ran out of time. Any other error is permanent until the
// configuration changes (a denied access, a missing bucket).
func ProbeRetryable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// refused reads the outcome of a write that a conditional store refuses:
// true for ErrExists or ErrConflict, false when it went through.
func refused(_ Info, err error) (bool, error) {
	if errors.Is(err, ErrExists) || errors.Is(err, ErrConflict) {
		return true, nil
	}
	return false, err
}

// modeOf turns the outcome of the probe's last write, what into a Mode.
func modeOf(conditional bool, err error, what string) (Mode, error) {
	switch {
	case err != nil:
		return 0, fmt.Errorf("blobstore: probe: %s: %w", what, err)
	case conditional:
		return Conditional, nil
	}
	return Unconditional, nil
}
