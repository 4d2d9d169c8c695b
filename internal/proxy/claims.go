package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
)

// maxClaimLifetime bounds how long a claim holds the other replicas back.
const maxClaimLifetime = time.Minute

// claimPrefix prefixes the key of the claim of an object key.
const claimPrefix = "claims/"

// claimLifetime is how long a claim on an object of a class with policy
// pol lives: twice the class's first-byte timeout, at most a minute.
func claimLifetime(pol Policy) time.Duration {
	if pol.FirstByteTimeout <= 0 {
		return maxClaimLifetime
	}
	return min(2*pol.FirstByteTimeout, maxClaimLifetime)
}

// claimBody is the content of a claim object.
type claimBody struct {
	// Replica names the claimant, for people reading the bucket.
	Replica string `json:"replica"`
	// LifetimeMillis is how long the claim lives, counted by each waiter
	// on its own clock from when it first saw the claim, so that clock
	// skew between replicas does not matter.
	LifetimeMillis int64 `json:"lifetime_ms"`
	// Taken distinguishes a claim taken over from the expired one it
	// replaced, so that its version changes.
	Taken int64 `json:"taken"`
}

// claim is the outcome of asking for the fleet-wide right to fill one
// object from the upstream.
type claim struct {
	// t is the tier the claim lives in; key is the claim's key.
	t   *sharedTier
	key string
	// held is set when this replica holds the claim: it fetches upstream
	// and releases the claim after writing the object.
	held bool
	// waited is set when another replica held it and this one waited
	// until the object appeared (or the claim went or expired).
	waited bool
}

// claim asks for the right to fill the object at key from the upstream,
// for lifetime. It returns at once holding the claim when no other replica
// holds one; otherwise it waits, polling with back-off, until the object
// appears, the claim goes or expires (an expired claim is taken over; one
// that another waiter took over first is waited for in turn), or ctx
// ends. Without claims (an unconditional store) or when the store
// fails, it returns a claim neither held nor waited on: the replica fills
// on its own.
func (t *sharedTier) claim(ctx context.Context, key string, lifetime time.Duration) claim {
	c := claim{t: t, key: claimPrefix + key}
	if !t.conditional() {
		return c
	}
	body := claimBody{Replica: t.replica, LifetimeMillis: lifetime.Milliseconds()}
	b := mustJSON(body)
	_, err := t.store.PutIfAbsent(ctx, c.key, bytes.NewReader(b), int64(len(b)), blobstore.PutOptions{})
	switch {
	case err == nil:
		c.held = true
		return c
	case !errors.Is(err, blobstore.ErrExists):
		return c
	}
	t.store.m.CoalescedWaits.Inc()
	c.waited = true
	for {
		expired, version := t.waitForObject(ctx, key, c.key, lifetime)
		if !expired {
			return c
		}
		body.Taken = time.Now().UnixNano()
		_, err := t.store.PutIfMatch(ctx, c.key, mustJSON(body), version)
		if !errors.Is(err, blobstore.ErrConflict) {
			c.held = err == nil
			return c
		}
	}
}

// waitForObject polls until the object at key exists, the claim at
// claimKey is gone, or the claim (as first seen here) has lived its
// lifetime, which the claim states (lifetime when it cannot be read).
// expired reports the last case, with the version of the expired claim.
func (t *sharedTier) waitForObject(ctx context.Context, key, claimKey string, lifetime time.Duration) (expired bool, version string) {
	first, ok := t.readClaim(ctx, claimKey)
	if !ok {
		return false, ""
	}
	if first.body.LifetimeMillis > 0 {
		lifetime = min(time.Duration(first.body.LifetimeMillis)*time.Millisecond, maxClaimLifetime)
	}
	deadline := time.Now().Add(lifetime)
	delay := t.pollMin
	for {
		timer := time.NewTimer(min(delay, time.Until(deadline)))
		select {
		case <-ctx.Done():
			timer.Stop()
			return false, ""
		case <-timer.C:
		}
		delay = min(2*delay, t.pollMax)
		info, err := t.store.Stat(ctx, claimKey)
		switch {
		case errors.Is(err, blobstore.ErrNotFound):
			return false, "" // the object was written (read it) or the claimant gave up
		case err != nil:
			return false, ""
		case info.Version != first.version:
			// Taken over by another waiter: its lifetime starts now.
			first.version, deadline = info.Version, time.Now().Add(lifetime)
		}
		if _, err := t.store.Stat(ctx, key); err == nil {
			return false, ""
		}
		if !time.Now().Before(deadline) {
			return true, first.version
		}
	}
}

// seenClaim is a claim as a waiter read it.
type seenClaim struct {
	body    claimBody
	version string
}

// readClaim reads the claim at key; ok is false when it is gone or the
// store failed. A body that does not parse counts as a claim of unknown
// lifetime.
func (t *sharedTier) readClaim(ctx context.Context, key string) (seenClaim, bool) {
	rc, info, err := t.store.Get(ctx, key)
	if err != nil {
		return seenClaim{}, false
	}
	defer rc.Close()
	var body claimBody
	_ = json.NewDecoder(rc).Decode(&body)
	return seenClaim{body: body, version: info.Version}, true
}

// release deletes a held claim, so that replicas waiting on it stop
// waiting (and read the object, when it was written).
func (c claim) release(ctx context.Context) {
	if c.held {
		_ = c.t.store.Delete(ctx, c.key)
	}
}

// mustJSON encodes a claim body, which cannot fail.
func mustJSON(b claimBody) []byte {
	out, _ := json.Marshal(b)
	return out
}
