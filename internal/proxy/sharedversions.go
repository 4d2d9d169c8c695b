package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// The fleet's /versions in the shared store (docs/fleet.md): write-once
// generation objects and a pointer to the current one, swapped with
// PutIfMatch, that only moves forward.
const (
	// versionsPointerKey is the key of the pointer.
	versionsPointerKey = "versions/current"
	// versionsGenPrefix prefixes the keys of the generation objects.
	versionsGenPrefix = "versions/gen/"
	// versionsKey is the cache key (and path) of /versions.
	versionsKey = "/versions"
)

// DefaultVersionsPoll is how often a replica reads the /versions pointer
// when SharedOptions.VersionsPoll is zero.
const DefaultVersionsPoll = 5 * time.Second

// versionsSyncTimeout bounds a publication or a poll's adoption, which no
// client waits for, in case the store's own deadlines do not.
const versionsSyncTimeout = time.Minute

// versionsPointer is the content of the pointer: the generation the fleet
// serves, where its body is, and what the body must be.
type versionsPointer struct {
	// Generation counts the bodies published, from 1.
	Generation int64 `json:"generation"`
	// Key is the generation object's key.
	Key string `json:"key"`
	// Size is the body's length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the body's SHA-256, in hex.
	SHA256 string `json:"sha256"`
}

// seenPointer is the pointer as a replica read it: found is false when
// there is none yet, and version is its store version, for PutIfMatch.
type seenPointer struct {
	ptr     versionsPointer
	version string
	found   bool
}

// versionsSync is a replica's share of the fleet's /versions: the
// generation its local copy holds, and the loop that reads the pointer.
type versionsSync struct {
	// poll is how often the pointer is read.
	poll time.Duration

	mu sync.Mutex
	// generation is the generation this replica last published or
	// adopted; it never decreases.
	generation int64
	// stop ends the poll loop and done is closed once it has returned;
	// stop is nil while no loop runs.
	stop context.CancelFunc
	done chan struct{}
}

// newVersionsSync is the /versions state of a shared tier in mode, nil
// unless the store honours conditional writes (without them, each replica
// keeps its own /versions).
func newVersionsSync(mode blobstore.Mode, poll time.Duration) *versionsSync {
	if mode != blobstore.Conditional {
		return nil
	}
	if poll <= 0 {
		poll = DefaultVersionsPoll
	}
	return &versionsSync{poll: poll}
}

// versionsShared is the /versions state of the shared tier, nil when
// there is no pointer to follow.
func (t *sharedTier) versionsShared() *versionsSync {
	if t == nil {
		return nil
	}
	return t.versions
}

// held reports whether generation gen is not newer than the one this
// replica holds.
func (v *versionsSync) held(gen int64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return gen <= v.generation
}

// record notes that the local copy now is generation gen, when it is
// newer than the one held, and reports whether it was.
func (v *versionsSync) record(gen int64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if gen <= v.generation {
		return false
	}
	v.generation = gen
	return true
}

// readPointer reads the pointer; an error is the store's (ErrNotFound is
// a pointer not found, not an error).
func (t *sharedTier) readPointer(ctx context.Context) (seenPointer, error) {
	rc, info, err := t.store.Get(ctx, versionsPointerKey)
	if errors.Is(err, blobstore.ErrNotFound) {
		return seenPointer{}, nil
	}
	if err != nil {
		return seenPointer{}, err
	}
	defer rc.Close()
	var ptr versionsPointer
	if err := json.NewDecoder(rc).Decode(&ptr); err != nil {
		return seenPointer{}, fmt.Errorf("proxy: read %s: %w", versionsPointerKey, err)
	}
	return seenPointer{ptr: ptr, version: info.Version, found: true}, nil
}

// generationKey is the object key of generation gen of a body whose
// SHA-256 is sha.
func generationKey(gen int64, sha [32]byte) string {
	return fmt.Sprintf("%s%d-%s", versionsGenPrefix, gen, hex.EncodeToString(sha[:]))
}

// valid reports whether the pointer names a generation object of its own
// generation and SHA-256, of a size worth adopting.
func (p versionsPointer) valid() bool {
	sha, err := hex.DecodeString(p.SHA256)
	return err == nil && len(sha) == 32 && p.Size > 0 && p.Generation > 0 &&
		p.Key == generationKey(p.Generation, [32]byte(sha))
}

// versionsLoaded is told the outcome of a fill of /versions from the
// upstream (old is what the cache held before, e and err the outcome): a
// new body is published to the fleet in the background, after the clients
// were answered. Proxy.Wait waits for it.
func (f *filler) versionsLoaded(old, e *cache.Entry, err error) {
	v := f.shared.versionsShared()
	if v == nil || err != nil || e == nil || e.ID == 0 || e.Status != http.StatusOK ||
		old != nil && old.Size == e.Size && old.SHA256 == e.SHA256 {
		return
	}
	f.background.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), versionsSyncTimeout)
		defer cancel()
		f.publishVersions(ctx, v, e)
	})
}

// publishVersions makes the stored /versions e the fleet's next
// generation when it is newer (longer) than the pointer's: it writes the
// generation object from the local copy, then swaps the pointer on the
// version read. When another replica moved the pointer first, or the
// pointer's body is not older than e, the pointer is re-read and adopted
// if it is newer than the local copy. Store failures are counted and
// logged by the metered store, and cost only this publication.
func (f *filler) publishVersions(ctx context.Context, v *versionsSync, e *cache.Entry) {
	t := f.shared
	cur, err := t.readPointer(ctx)
	if err != nil {
		return
	}
	if cur.found && e.Size <= cur.ptr.Size {
		f.adoptVersions(ctx)
		return
	}
	next := versionsPointer{Generation: cur.ptr.Generation + 1, Key: generationKey(cur.ptr.Generation+1, e.SHA256),
		Size: e.Size, SHA256: hex.EncodeToString(e.SHA256[:])}
	if err := t.putEntry(ctx, f.store, next.Key, e); err != nil && !errors.Is(err, blobstore.ErrExists) {
		return
	}
	body, _ := json.Marshal(next)
	if cur.found {
		_, err = t.store.PutIfMatch(ctx, versionsPointerKey, body, cur.version)
	} else {
		_, err = t.store.PutIfAbsent(ctx, versionsPointerKey, bytes.NewReader(body), int64(len(body)))
	}
	switch {
	case err == nil:
		if v.record(next.Generation) {
			t.store.m.ObserveVersions(metrics.VersionsPublished, next.Generation)
		}
		f.log.Info("published /versions to the fleet", "generation", next.Generation, "size", next.Size)
	case errors.Is(err, blobstore.ErrConflict), errors.Is(err, blobstore.ErrExists):
		f.adoptVersions(ctx) // another replica swapped first, or a retry after our swap landed
	}
}

// maxAdoptTries bounds the fill flights of /versions an adoption waits
// out (see adoptPointer) before giving up until the next poll.
const maxAdoptTries = 3

// adoptVersions reads the pointer and adopts the generation it names when
// it is newer than the local /versions: a generation greater than the
// one held, and a longer body. It returns the adopted entry, nil when
// nothing was adopted.
func (f *filler) adoptVersions(ctx context.Context) *cache.Entry {
	cur, err := f.shared.readPointer(ctx)
	if err != nil || !cur.found || !cur.ptr.valid() {
		return nil
	}
	for range maxAdoptTries {
		if e, decided := f.adoptPointer(ctx, cur.ptr); decided {
			return e
		}
	}
	return nil
}

// adoptPointer adopts the generation ptr names if it is newer than the
// local /versions, inside the fill flight of /versions so that no refresh
// from the upstream stores a body meanwhile that this one would replace.
// It returns the adopted entry (nil when nothing was adopted); decided is
// false when another flight (a refresh, one that a publication of this
// replica is finishing) answered instead: the caller tries again. A
// pointer to the body the replica already holds only records its
// generation.
func (f *filler) adoptPointer(ctx context.Context, ptr versionsPointer) (adopted *cache.Entry, decided bool) {
	v := f.shared.versions
	if v.held(ptr.Generation) {
		return nil, true
	}
	local := f.store.Peek(versionsKey)
	switch {
	case local == nil || local.Status != http.StatusOK:
		return nil, true // never fetched here: the first request fills it
	case local.Size == ptr.Size && hex.EncodeToString(local.SHA256[:]) == ptr.SHA256:
		if v.record(ptr.Generation) {
			f.shared.store.m.VersionsGeneration.Set(float64(ptr.Generation))
		}
		return nil, true
	case ptr.Size <= local.Size:
		return nil, true // an older body, or a rebuilt one: never go back
	}
	fr := fillRequest{rt: f.versionsRoute, key: versionsKey}
	e, _, err := f.store.Fill(ctx, versionsKey, func(e *cache.Entry) bool { return e.SHA256 != local.SHA256 },
		func(ctx context.Context) (*cache.Entry, error) {
			decided = true
			e, ok := f.adoptGeneration(ctx, fr, ptr)
			if !ok {
				return local, nil
			}
			adopted = e
			return e, nil
		})
	if err != nil {
		return nil, true
	}
	if adopted != nil {
		return e, true
	}
	return nil, decided
}

// adoptGeneration stores the generation ptr names as the local /versions,
// through the path of an upstream body (staged, checked against the
// pointer's size and SHA-256, committed with the ETag and Repr-Digest of
// its bytes, the /info it contradicts invalidated). ok is false when the
// object could not be read or did not check; it is dropped then.
func (f *filler) adoptGeneration(ctx context.Context, fr fillRequest, ptr versionsPointer) (e *cache.Entry, ok bool) {
	rc, info, err := f.shared.store.Get(ctx, ptr.Key)
	if err != nil {
		return nil, false
	}
	defer rc.Close()
	if info.Size != ptr.Size {
		f.refuseGeneration(ptr, fmt.Errorf("object of %d bytes, the pointer says %d", info.Size, ptr.Size))
		return nil, false
	}
	sha, _ := hex.DecodeString(ptr.SHA256)
	resp := &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Body: rc, ContentLength: ptr.Size,
		Header: http.Header{"Repr-Digest": {"sha-256=:" + base64.StdEncoding.EncodeToString(sha) + ":"}}}
	e, err = f.storeResponse(fr, resp, nil)
	if err != nil {
		f.refuseGeneration(ptr, err)
		return nil, false
	}
	if f.shared.versions.record(ptr.Generation) {
		f.shared.store.m.ObserveVersions(metrics.VersionsAdopted, ptr.Generation)
	}
	f.log.Info("adopted the fleet's /versions", "generation", ptr.Generation, "size", ptr.Size)
	return e, true
}

// refuseGeneration counts and logs a generation object that was not
// adopted because of why.
func (f *filler) refuseGeneration(ptr versionsPointer, why error) {
	f.shared.store.m.ObserveVersions(metrics.VersionsRefused, ptr.Generation)
	f.log.Warn("fleet /versions generation refused", "generation", ptr.Generation, "key", ptr.Key, "reason", why)
}

// followVersions starts reading the pointer every poll interval, once
// /versions has been requested (again after Proxy.Wait stopped it).
func (f *filler) followVersions() {
	v := f.shared.versionsShared()
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stop != nil {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	v.stop, v.done = stop, make(chan struct{})
	go f.pollVersions(ctx, v.poll, v.done)
}

// pollVersions adopts the pointer's generation every interval until ctx
// ends, then closes done. An adoption under way when ctx ends completes.
func (f *filler) pollVersions(ctx context.Context, interval time.Duration, done chan struct{}) {
	defer close(done)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			f.adoptOnce(context.WithoutCancel(ctx))
		}
	}
}

// adoptOnce is one poll's adoption, bounded by versionsSyncTimeout.
func (f *filler) adoptOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, versionsSyncTimeout)
	defer cancel()
	f.adoptVersions(ctx)
}

// stopFollowingVersions stops the poll loop, if one runs, and waits until
// it has returned.
func (f *filler) stopFollowingVersions() {
	v := f.shared.versionsShared()
	if v == nil {
		return
	}
	v.mu.Lock()
	stop, done := v.stop, v.done
	v.stop, v.done = nil, nil
	v.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}
