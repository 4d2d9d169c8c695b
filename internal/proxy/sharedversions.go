package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/cache/localblob"
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

// versionsDeleteGrace is how long after the pointer moved past generation
// N (to N+1) the generation N replaced is deleted. A replica that read the
// pointer while it named that one did so before N was published, and its
// adoption (bounded by versionsSyncTimeout, a catch-up's by less) is over
// by then.
const versionsDeleteGrace = versionsSyncTimeout

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
	// CreatedAt is the body's created_at stamp (its first line,
	// "created_at: TIME", which an upstream rebuild renews), empty when
	// it has none.
	CreatedAt string `json:"created_at,omitempty"`
	// Replaced is the key of the generation this one replaced: once the
	// pointer moves past this one, it is deleted (after
	// versionsDeleteGrace). Empty for the first generation, and for one
	// that replaced an unreadable pointer.
	Replaced string `json:"replaced,omitempty"`
}

// age is the age of the body p names.
func (p versionsPointer) age() versionsAge {
	return versionsAge{createdAt: p.CreatedAt, size: p.Size}
}

// seenPointer is the pointer as a replica read it: found is false when
// there is none yet, and version is its store version, for PutIfMatch.
// unreadable is set when the pointer is there but is not JSON, or names
// no valid generation (a bug, a hand edit): ptr is zero then, and the
// next publication replaces it.
type seenPointer struct {
	ptr        versionsPointer
	version    string
	found      bool
	unreadable bool
}

// versionsAge orders the /versions bodies of one upstream: a rebuild
// starts a new created_at stamp (and may be shorter), and between
// rebuilds the file only grows.
type versionsAge struct {
	// createdAt is the body's created_at stamp, empty when unknown.
	createdAt string
	// size is the body's length in bytes.
	size int64
}

// newerThan reports whether a body of age a is newer than one of age b: a
// later created_at, or the same one and a longer body. An older
// created_at is never newer, whatever its length. When either stamp is
// missing or not an RFC 3339 time (a pointer written before pointers had
// one), the longer body is the newer.
func (a versionsAge) newerThan(b versionsAge) bool {
	ta, errA := time.Parse(time.RFC3339, a.createdAt)
	tb, errB := time.Parse(time.RFC3339, b.createdAt)
	if errA != nil || errB != nil || ta.Equal(tb) {
		return a.size > b.size
	}
	return ta.After(tb)
}

// createdAtPrefix starts the first line of a /versions body.
const createdAtPrefix = "created_at: "

// maxCreatedAtLine bounds the bytes read for a created_at line.
const maxCreatedAtLine = 64

// versionsAge is the age of the stored /versions e: its size, and the
// stamp of its first line (empty when that is not a created_at line or
// the body cannot be read).
func (f *filler) versionsAge(e *cache.Entry) versionsAge {
	age := versionsAge{size: e.Size}
	r, err := f.store.Open(e, false)
	if err != nil {
		return age
	}
	defer r.Close()
	r.Limit(0, maxCreatedAtLine)
	head, _ := io.ReadAll(r)
	line, _, _ := bytes.Cut(head, []byte("\n"))
	if stamp, ok := bytes.CutPrefix(line, []byte(createdAtPrefix)); ok {
		age.createdAt = string(bytes.TrimSuffix(stamp, []byte("\r")))
	}
	return age
}

// versionsSync is a replica's share of the fleet's /versions: the
// generation its local copy holds, and the loop that reads the pointer.
type versionsSync struct {
	// poll is how often the pointer is read, and the doomed generations
	// due are deleted.
	poll time.Duration

	mu sync.Mutex
	// generation is the generation this replica last published or
	// adopted; it never decreases.
	generation int64
	// stop ends the poll loop and done is closed once it has returned;
	// stop is nil while no loop runs.
	stop context.CancelFunc
	done chan struct{}
	// doomed are the generation objects to delete once due; those left
	// when the process ends stay in the store.
	doomed []doomedGeneration
}

// newVersionsSync is the /versions state of a shared tier, reading the
// pointer every poll (DefaultVersionsPoll when zero). It is used only once
// the tier is on in the Conditional mode (versionsShared): without
// conditional writes, each replica keeps its own /versions.
func newVersionsSync(poll time.Duration) *versionsSync {
	if poll <= 0 {
		poll = DefaultVersionsPoll
	}
	return &versionsSync{poll: poll}
}

// versionsShared is the /versions state of the shared tier, nil when
// there is no pointer to follow: no tier, one still off, or a store that
// does not honour conditional writes.
func (t *sharedTier) versionsShared() *versionsSync {
	if t == nil || !t.conditional() {
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

// current returns the generation this replica holds.
func (v *versionsSync) current() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.generation
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

// maxPointerSize bounds the bytes of the pointer read: a longer one is
// unreadable.
const maxPointerSize = 4 << 10

// readPointer reads the pointer; an error is the store's (ErrNotFound is
// a pointer not found, not an error, and so is an unreadable pointer).
func (t *sharedTier) readPointer(ctx context.Context) (seenPointer, error) {
	rc, info, err := t.store.Get(ctx, versionsPointerKey)
	if errors.Is(err, blobstore.ErrNotFound) {
		return seenPointer{}, nil
	}
	if err != nil {
		return seenPointer{}, err
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, maxPointerSize))
	if err != nil {
		return seenPointer{}, err
	}
	var ptr versionsPointer
	if json.Unmarshal(body, &ptr) != nil || !ptr.valid() {
		return seenPointer{version: info.Version, found: true, unreadable: true}, nil
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
// generation when it is newer than the pointer's (versionsAge.newerThan),
// or when the pointer is unreadable: it writes the generation object from
// the local copy, then swaps the pointer on the version read. When
// another replica moved the pointer first, the generation object is
// deleted unless the pointer names it after all, and the pointer is
// adopted if it is newer than the local copy; so it is when the pointer's
// body is not older than e. Store failures are counted and logged by the
// metered store, and cost only this publication.
func (f *filler) publishVersions(ctx context.Context, v *versionsSync, e *cache.Entry) {
	t := f.shared
	cur, err := t.readPointer(ctx)
	if err != nil {
		return
	}
	age := f.versionsAge(e)
	if cur.found && !cur.unreadable && !age.newerThan(cur.ptr.age()) {
		f.adoptVersions(ctx)
		return
	}
	next := nextPointer(cur, v.current(), e, age)
	src, _ := localblob.ObjectKey(e.Key) // "versions", always a valid key
	if err := copyObject(ctx, t.local, src, localblob.Version(e), t.store, next.Key); err != nil && !errors.Is(err, blobstore.ErrExists) {
		return
	}
	switch err := t.swapPointer(ctx, cur, next); {
	case err == nil:
		f.published(v, cur, next)
	case errors.Is(err, blobstore.ErrConflict), errors.Is(err, blobstore.ErrExists):
		// Another replica swapped first, or a retry after our swap landed.
		t.dropLostGeneration(ctx, next.Key)
		f.adoptVersions(ctx)
	}
}

// nextPointer is the pointer that makes e, of age age, the generation
// after cur's. An unreadable cur has no generation to follow: the new one
// follows held, the generation this replica holds, and replaces none.
func nextPointer(cur seenPointer, held int64, e *cache.Entry, age versionsAge) versionsPointer {
	gen, replaced := cur.ptr.Generation+1, cur.ptr.Key
	if cur.unreadable {
		gen, replaced = held+1, ""
	}
	return versionsPointer{Generation: gen, Key: generationKey(gen, e.SHA256), Size: e.Size,
		SHA256: hex.EncodeToString(e.SHA256[:]), CreatedAt: age.createdAt, Replaced: replaced}
}

// swapPointer writes next in place of the pointer cur: PutIfMatch on the
// version read, PutIfAbsent when there was none.
func (t *sharedTier) swapPointer(ctx context.Context, cur seenPointer, next versionsPointer) error {
	body, _ := json.Marshal(next)
	var err error
	if cur.found {
		_, err = t.store.PutIfMatch(ctx, versionsPointerKey, body, cur.version)
	} else {
		_, err = t.store.PutIfAbsent(ctx, versionsPointerKey, bytes.NewReader(body), int64(len(body)), blobstore.PutOptions{})
	}
	return err
}

// published records that this replica moved the pointer from cur to next:
// the generation held, metrics and log, an unreadable pointer replaced,
// and the generation that cur replaced doomed (deleteDueGenerations).
func (f *filler) published(v *versionsSync, cur seenPointer, next versionsPointer) {
	if v.record(next.Generation) {
		f.shared.store.m.ObserveVersions(metrics.VersionsPublished, next.Generation)
	}
	if cur.unreadable {
		f.shared.store.m.CorruptReplaced.Inc()
		f.log.Warn("fleet /versions pointer unreadable; replaced it with this replica's generation",
			"key", versionsPointerKey, "generation", next.Generation)
	}
	if cur.ptr.Replaced != "" {
		v.doom(cur.ptr.Replaced, f.now().Add(versionsDeleteGrace))
	}
	f.log.Info("published /versions to the fleet", "generation", next.Generation, "size", next.Size)
}

// dropLostGeneration deletes the generation object key of a swap that
// lost, unless the pointer, read again, names it as its generation or the
// one it replaced (a swap that landed before its retry was refused): no
// later swap can name it, as each one names a generation after the
// pointer's. A store failure leaves it in the bucket.
func (t *sharedTier) dropLostGeneration(ctx context.Context, key string) {
	cur, err := t.readPointer(ctx)
	if err != nil || cur.ptr.Key == key || cur.ptr.Replaced == key {
		return
	}
	_ = t.store.Delete(ctx, key)
}

// doomedGeneration is a generation object to delete once its time has
// come.
type doomedGeneration struct {
	key string
	due time.Time
}

// doom notes that the generation object key is to be deleted at due.
func (v *versionsSync) doom(key string, due time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.doomed = append(v.doomed, doomedGeneration{key: key, due: due})
}

// takeDue removes the doomed generations due at now from the list and
// returns their keys.
func (v *versionsSync) takeDue(now time.Time) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var due []string
	kept := v.doomed[:0]
	for _, d := range v.doomed {
		if d.due.After(now) {
			kept = append(kept, d)
		} else {
			due = append(due, d.key)
		}
	}
	v.doomed = kept
	return due
}

// deleteDueGenerations deletes the doomed generation objects whose grace
// has run out, except the pointer's own generation, which is never
// deleted. A store failure leaves them in the bucket.
func (f *filler) deleteDueGenerations(ctx context.Context, v *versionsSync) {
	due := v.takeDue(f.now())
	if len(due) == 0 {
		return
	}
	cur, err := f.shared.readPointer(ctx)
	if err != nil {
		return
	}
	for _, key := range due {
		if key != cur.ptr.Key {
			_ = f.shared.store.Delete(ctx, key)
		}
	}
}

// maxAdoptTries bounds the fill flights of /versions an adoption waits
// out (see adoptPointer) before giving up until the next poll.
const maxAdoptTries = 3

// adoptVersions reads the pointer and adopts the generation it names when
// it is newer than the local /versions: a generation greater than the
// one held, and a newer body (versionsAge.newerThan). It returns the
// adopted entry, nil when nothing was adopted.
func (f *filler) adoptVersions(ctx context.Context) *cache.Entry {
	for range maxAdoptTries {
		cur, err := f.shared.readPointer(ctx)
		if err != nil || !cur.found || cur.unreadable {
			return nil
		}
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
// replica is finishing) answered instead, or when the generation object
// was gone (deleted once the pointer had moved past it): the caller reads
// the pointer again and tries again. A pointer to the body the replica
// already holds only records its generation.
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
	case !ptr.age().newerThan(f.versionsAge(local)):
		return nil, true // an older body: never go back
	}
	fr := fillRequest{rt: f.versionsRoute, key: versionsKey}
	gone := false
	e, _, err := f.store.Fill(ctx, versionsKey, func(e *cache.Entry) bool { return e.SHA256 != local.SHA256 },
		func(ctx context.Context) (*cache.Entry, error) {
			decided = true
			e, err := f.adoptGeneration(ctx, fr, ptr)
			if err != nil {
				gone = errors.Is(err, blobstore.ErrNotFound)
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
	return nil, decided && !gone
}

// adoptGeneration stores the generation ptr names as the local /versions,
// through the path of an upstream body (staged, checked against the
// pointer's size and SHA-256, committed with the ETag and Repr-Digest of
// its bytes, the /info it contradicts invalidated). An error means the
// object could not be read (ErrNotFound: it is gone) or did not check; it
// is dropped then.
func (f *filler) adoptGeneration(ctx context.Context, fr fillRequest, ptr versionsPointer) (*cache.Entry, error) {
	rc, info, err := f.shared.store.Get(ctx, ptr.Key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if info.Size != ptr.Size {
		err := fmt.Errorf("object of %d bytes, the pointer says %d", info.Size, ptr.Size)
		f.refuseGeneration(ptr, err)
		return nil, err
	}
	sha, _ := hex.DecodeString(ptr.SHA256)
	resp := &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Body: rc, ContentLength: ptr.Size,
		Header: http.Header{"Repr-Digest": {"sha-256=:" + base64.StdEncoding.EncodeToString(sha) + ":"}}}
	e, err := f.storeResponse(fr, resp, nil)
	if err != nil {
		f.refuseGeneration(ptr, err)
		return nil, err
	}
	if f.shared.versions.record(ptr.Generation) {
		f.shared.store.m.ObserveVersions(metrics.VersionsAdopted, ptr.Generation)
	}
	f.log.Info("adopted the fleet's /versions", "generation", ptr.Generation, "size", ptr.Size)
	return e, nil
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

// pollVersions adopts the pointer's generation, and deletes the doomed
// generations due, every interval until ctx ends, then closes done. An
// adoption under way when ctx ends completes.
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

// adoptOnce is one poll's adoption and deletion of the doomed generations
// due, bounded by versionsSyncTimeout.
func (f *filler) adoptOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, versionsSyncTimeout)
	defer cancel()
	f.adoptVersions(ctx)
	f.deleteDueGenerations(ctx, f.shared.versions)
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
