package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/cache/localblob"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// SharedOptions configures the shared tier of a fleet: an object store
// that every replica reads before the upstream and writes verified
// immutable objects to (docs/fleet.md).
type SharedOptions struct {
	// Store is the store the replicas share. nil runs without a shared
	// tier, as a single replica.
	Store blobstore.Store
	// Mode is what Store's writes can do, as blobstore.Probe found it at
	// start: Conditional also coalesces fills fleet-wide with claims;
	// Unconditional (or zero) only shares immutable objects.
	Mode blobstore.Mode
	// Unprobed is set when the probe at start failed for a reason that
	// may pass (blobstore.ProbeRetryable): Mode is ignored, the tier starts
	// off (the replica serves alone, recording what it would upload as
	// pending) and the proxy probes Store again in the background until
	// the probe succeeds, then switches the tier on in the mode found
	// (sharedprobe.go).
	Unprobed bool
	// ProbeRetry is the first wait before probing an Unprobed store again,
	// doubled after each failure up to maxProbeRetry. Default
	// DefaultProbeRetry.
	ProbeRetry time.Duration
	// Replica names this replica in its claims. Default HOSTNAME-PID.
	Replica string
	// VersionsPoll is how often a replica reads the fleet's /versions
	// pointer (Conditional mode, once /versions was requested). Default
	// DefaultVersionsPoll.
	VersionsPoll time.Duration
	// PendingRetry is how often a replica with uploads pending tries the
	// store again when nothing else showed that it answers again
	// (sharedpending.go). Default DefaultPendingRetry.
	PendingRetry time.Duration
}

// sharedTier is the shared store as the filler uses it. A nil *sharedTier
// is no shared tier; one whose mode is still zero is off until the
// background probe switches it on (sharedprobe.go).
type sharedTier struct {
	// store is the metered store.
	store *meteredStore
	// local is the local tier as a blobstore.Store, which uploads read
	// (copyObject).
	local *localblob.Store
	// mode is the blobstore.Mode the tier runs in, zero while the store
	// is not probed yet: then it does nothing. It is read on every fill,
	// without a lock; everything else here is fixed at construction.
	mode atomic.Int32
	// replica names this replica in its claims.
	replica string
	// pollMin and pollMax bound the back-off of a replica waiting for
	// another's claim.
	pollMin, pollMax time.Duration
	// versions follows the fleet's /versions pointer, once the tier is on
	// in the Conditional mode (versionsShared).
	versions *versionsSync
	// pending uploads what the local tier holds and the store does not
	// have yet (sharedpending.go).
	pending *pendingUploads
	// probe probes the store in the background until it answers; nil
	// when the store was probed at start.
	probe *lateProbe
}

// newSharedTier builds the shared tier of opts, which uploads what local
// holds, nil when it has no store.
func newSharedTier(opts Options, local *localblob.Store) *sharedTier {
	so := opts.Shared
	if so.Store == nil {
		return nil
	}
	if so.Replica == "" {
		host, _ := os.Hostname()
		so.Replica = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	pending := newPendingUploads(so.PendingRetry)
	t := &sharedTier{
		store:    &meteredStore{s: so.Store, m: opts.Metrics.SharedStore, log: opts.Logger, answering: pending.wakeUp},
		local:    local,
		replica:  so.Replica,
		pollMin:  20 * time.Millisecond,
		pollMax:  500 * time.Millisecond,
		versions: newVersionsSync(so.VersionsPoll),
		pending:  pending,
	}
	if so.Unprobed {
		t.probe = newLateProbe(so.ProbeRetry)
		t.store.m.SetState(metrics.SharedProbing)
	} else {
		t.switchOn(cmp.Or(so.Mode, blobstore.Unconditional))
	}
	return t
}

// currentMode is the mode the tier runs in, zero while it is off.
func (t *sharedTier) currentMode() blobstore.Mode {
	return blobstore.Mode(t.mode.Load())
}

// conditional reports whether the tier is on with a store that honours
// conditional writes: claims and the /versions pointer work.
func (t *sharedTier) conditional() bool {
	return t.currentMode() == blobstore.Conditional
}

// switchOn turns the tier on in mode and shows it in
// gemproxy_shared_store_state.
func (t *sharedTier) switchOn(mode blobstore.Mode) {
	t.mode.Store(int32(mode))
	state := metrics.SharedUnconditional
	if mode == blobstore.Conditional {
		state = metrics.SharedConditional
	}
	t.store.m.SetState(state)
}

// sharedKey is the object key of a cached route's key in the shared
// store, ok only for the immutable classes the store holds (gems, quick
// specs) and keys it accepts, once the tier is on: "/gems/a-1.gem" is
// "gems/a-1.gem".
func (t *sharedTier) sharedKey(fr fillRequest) (key string, ok bool) {
	if t == nil || t.currentMode() == 0 {
		return "", false
	}
	return objectKey(fr.rt.Class, fr.key)
}

// objectKey is the object key in the shared store of the cache key of an
// entry of class c, ok only for the immutable classes the store holds and
// keys it accepts. It is the entry's key in the local tier's view too
// (localblob.ObjectKey).
func objectKey(c Class, cacheKey string) (key string, ok bool) {
	if c != ClassGem && c != ClassQuickSpec {
		return "", false
	}
	return localblob.ObjectKey(cacheKey)
}

// publishes reports whether a body of fr that the fill stores is written
// to the shared store (publish, or the worker of pending uploads once a
// tier still off is on): the store holds its class and the body did not
// come from there. Its key is then recorded as pending upload with the
// entry (cache.CommitOptions.Pending).
func (f *filler) publishes(fr fillRequest) bool {
	if f.shared == nil {
		return false
	}
	_, ok := objectKey(fr.rt.Class, fr.key)
	return ok && !fr.fromShared && fr.rt.Immutable
}

// fetchShared is fetch for an object the shared store may hold: read from
// the store, else (one replica of the fleet, when claims are on) from the
// upstream, and then written to the store for the others, in place of an
// object there that failed verification. A store that just failed is
// asked for no claim. cancel ends ctx once the fill is done with it;
// lookup starts (once) and yields the lookup of a gem's checksum in
// /info/NAME (checksumOnDemand).
func (f *filler) fetchShared(ctx context.Context, cancel context.CancelFunc, fr fillRequest, key string,
	lookup func() checksumFuture) (*cache.Entry, error) {
	want := f.sharedChecksum(fr, lookup)
	e, miss := f.readShared(ctx, fr, key, want)
	if e != nil {
		cancel()
		return e, nil
	}
	var c claim
	if !miss.unavailable {
		c = f.shared.claim(ctx, key, claimLifetime(f.policy(fr.rt.Class)))
	}
	if c.waited {
		e, again := f.readShared(ctx, fr, key, want)
		if e != nil {
			cancel()
			return e, nil
		}
		miss.corrupt = cmp.Or(again.corrupt, miss.corrupt)
	}
	// Published (and the claim released) once the body is stored, which
	// for a streamed gem is after this returns.
	return f.fetchUpstream(ctx, cancel, fr, lookup(), func(e *cache.Entry, err error) { f.publish(key, e, err, c, miss.corrupt) })
}

// sharedChecksum returns what readShared verifies an object of fr read
// from the shared store against, given the object's Info. For a gem: the
// checksum in this replica's /info/NAME when the local tier holds it
// (lookup, as for an upstream body, started at once so that it overlaps
// the store's Get); else the SHA-256 that the replica which verified the
// object recorded with it, so that a replica on an empty data directory
// asks the upstream for nothing (docs/fleet.md); else lookup's, which
// fetches /info/NAME. A quick spec has no checksum (nil).
func (f *filler) sharedChecksum(fr fillRequest, lookup func() checksumFuture) func(blobstore.Info) checksumFuture {
	if fr.rt.Class != ClassGem || f.holdsInfo(fr) {
		want := lookup()
		return func(blobstore.Info) checksumFuture { return want }
	}
	return func(info blobstore.Info) checksumFuture {
		if info.SHA256 == ([32]byte{}) {
			return lookup()
		}
		return knownChecksum(info.SHA256)
	}
}

// sharedMiss says why a read of the shared store gave no entry.
type sharedMiss struct {
	// corrupt is the version of an object whose bytes all arrived and
	// failed verification; upload replaces it with a verified copy.
	corrupt string
	// unavailable is set when the store failed (ErrUnavailable, or
	// another error than a miss), before or during the body.
	unavailable bool
}

// readShared fills fr from the object at key in the shared store, verified
// as an upstream body is (storeResponse), against the checksum that want
// gives for the object (sharedChecksum), while it streams into the local
// tier. It returns no entry when the store has no such object, fails, or
// holds bytes that do not verify (nothing of which is served or stored),
// and then says which in miss: the caller asks the upstream.
func (f *filler) readShared(ctx context.Context, fr fillRequest, key string, want func(blobstore.Info) checksumFuture) (e *cache.Entry, miss sharedMiss) {
	rc, info, err := f.shared.store.Get(ctx, key)
	if err != nil {
		return nil, sharedMiss{unavailable: !errors.Is(err, blobstore.ErrNotFound)}
	}
	defer rc.Close()
	fr.fromShared = true
	resp := &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Header: http.Header{}, Body: rc, ContentLength: info.Size}
	e, err = f.storeResponse(fr, resp, want(info))
	switch {
	case err == nil:
		return e, sharedMiss{}
	case isCorrupt(err):
		f.log.Warn("shared store object fails verification; asking the upstream, to replace it", "key", key, "error", err)
		return nil, sharedMiss{corrupt: info.Version}
	}
	f.log.Warn("shared store object refused; asking the upstream", "key", key, "error", err)
	return nil, sharedMiss{unavailable: errors.Is(err, blobstore.ErrUnavailable)}
}

// publish writes a verified, stored immutable entry e (the outcome of a
// fill from the upstream, err its error) to the shared store at key, in
// place of the object of version corrupt when that is set, in the
// background (Proxy.Wait waits for it), and then releases the claim c.
// Clients never wait for it; when the store fails, the key stays pending
// and the worker of pending uploads writes it later (uploadFresh).
func (f *filler) publish(key string, e *cache.Entry, err error, c claim, corrupt string) {
	upload := err == nil && e != nil && uploadable(e)
	if !upload && !c.held {
		return
	}
	f.background.Go(func() {
		ctx := context.Background()
		if upload {
			f.uploadFresh(ctx, key, e, corrupt)
		}
		c.release(ctx)
	})
}

// uploadable reports whether the shared store takes e: a stored,
// immutable 200.
func uploadable(e *cache.Entry) bool {
	return e.ID != 0 && e.Status == http.StatusOK && e.Immutable
}

// upload copies the object at key of the local tier, while it is of
// version (localblob.Version of the entry to upload), to key in the shared
// store (copyObject); ErrExists means another replica wrote it first. An
// object of version corrupt (one that failed verification here) is
// deleted first, if it is still there (dropCorrupt). On a store that
// ignores conditions, an object that is there is not written again
// (ErrExists). It returns nil or ErrExists when the store holds the
// object, errSourceGone when the local entry was evicted or replaced
// meanwhile, and the store's error otherwise.
func (t *sharedTier) upload(ctx context.Context, key, version, corrupt string) error {
	switch {
	case corrupt != "":
		if err := t.dropCorrupt(ctx, key, corrupt); err != nil {
			return err
		}
	case !t.conditional():
		if _, err := t.store.Stat(ctx, key); err == nil {
			return blobstore.ErrExists
		}
	}
	return copyObject(ctx, t.local, key, version, t.store, key)
}

// errSourceGone is copyObject's error when the source store no longer
// holds the object to copy in the version asked for.
var errSourceGone = errors.New("proxy: the object to copy is gone or was replaced")

// copyObject copies version of the object at src in from to dst in to,
// with PutIfAbsent (ErrExists when to has an object there), recording the
// SHA-256 that from gives for it: for the local tier, the SHA-256 of a
// body the fill verified, which a replica that reads the object and has
// no other checksum for it verifies it against (readShared). It returns
// errSourceGone when from has no object at src, or one of another
// version. from's readers must also read at offsets (io.ReaderAt, as
// PutIfAbsent may read its body again on a retry): localblob's do.
func copyObject(ctx context.Context, from blobstore.Store, src, version string, to blobstore.Store, dst string) error {
	rc, info, err := from.Get(ctx, src)
	if errors.Is(err, blobstore.ErrNotFound) {
		return fmt.Errorf("%w: %w", errSourceGone, err)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	if info.Version != version {
		return fmt.Errorf("%w: %s is of version %s, not %s", errSourceGone, src, info.Version, version)
	}
	body, ok := rc.(io.ReaderAt)
	if !ok {
		return fmt.Errorf("proxy: copying %s: the source's reader %T does not read at offsets", src, rc)
	}
	_, err = to.PutIfAbsent(ctx, dst, body, info.Size, blobstore.PutOptions{SHA256: info.SHA256})
	return err
}

// dropCorrupt deletes the object at key when it is still of version
// corrupt, which failed verification, so that upload can write the
// verified copy in its place. It returns nil when upload may write, and
// otherwise the store's error or ErrExists: another version is there (a
// verified copy that another replica wrote meanwhile). Delete is
// unconditional, so a copy written between the Stat and the Delete may be
// deleted too; the PutIfAbsent that follows puts the same verified bytes
// back (docs/fleet.md).
func (t *sharedTier) dropCorrupt(ctx context.Context, key, corrupt string) error {
	info, err := t.store.Stat(ctx, key)
	switch {
	case errors.Is(err, blobstore.ErrNotFound):
		return nil
	case err != nil:
		return err
	case info.Version != corrupt:
		return blobstore.ErrExists
	}
	if err := t.store.Delete(ctx, key); err != nil {
		return err
	}
	t.store.m.CorruptReplaced.Inc()
	t.store.log.Warn("shared store object failed verification; replacing it with the verified copy", "key", key)
	return nil
}
