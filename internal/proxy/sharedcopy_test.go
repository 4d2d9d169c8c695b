package proxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/cache/localblob"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// TestSharedLocalViewStoresWhatAFillStores: a gem written through the
// local tier's view (localblob, with objectEntry) is stored as the entry
// that a fill of it from the shared store stores, headers included, and
// served from there; a key that is no gem or quick spec is refused.
func TestSharedLocalViewStoresWhatAFillStores(t *testing.T) {
	up := gemUpstream(t, nil)
	s := blobstore.NewMemory()
	sum := sha256.Sum256(sharedGem)
	putObjectSum(t, s, sharedGemKey, sharedGem, sum)
	a := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
	getGem(t, a)
	filled := a.store.Peek(sharedGemPath)

	b := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "b"))
	b.now = a.clock.Now
	view := b.fill.shared.local
	if _, err := view.PutIfAbsent(t.Context(), sharedGemKey, bytes.NewReader(sharedGem), int64(len(sharedGem)), blobstore.PutOptions{SHA256: sum}); err != nil {
		t.Fatal(err)
	}
	written := b.store.Peek(sharedGemPath)
	if written.Class != filled.Class || written.Status != filled.Status || written.Immutable != filled.Immutable ||
		!written.StoredAt.Equal(filled.StoredAt) || !written.FreshUntil.Equal(filled.FreshUntil) || !slices.Equal(written.Header, filled.Header) {
		t.Fatalf("written through the view: %+v %v\nfilled from the shared store: %+v %v", written, written.Header, filled, filled.Header)
	}
	getGem(t, b)
	if n := up.total() + int(sharedRequests(b, metrics.SharedGet, metrics.SharedOK)); n != 0 {
		t.Fatalf("replica b asked the upstream or the store %d times for a gem it holds", n)
	}
	if _, err := view.PutIfAbsent(t.Context(), "versions", bytes.NewReader([]byte("x")), 1, blobstore.PutOptions{}); err == nil || b.store.Peek("/versions") != nil {
		t.Fatalf("PutIfAbsent of versions through the view = %v; want it refused, nothing stored", err)
	}
}

// TestCopyObject: copyObject copies the version asked for with the
// SHA-256 that the source gives; an object gone from the source, or
// replaced there, is errSourceGone and copies nothing; a source whose
// readers do not read at offsets is an error.
func TestCopyObject(t *testing.T) {
	c, err := cache.Open(t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := localblob.New(c, func(key string, _ [16]byte, _ [32]byte) (cache.Entry, error) {
		return cache.Entry{Key: key, Class: string(ClassGem), Status: 200, Immutable: true}, nil
	})
	const key = "gems/a-1.gem"
	old, err := local.PutIfAbsent(t.Context(), key, bytes.NewReader([]byte("old")), 3, blobstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur, err := local.PutIfMatch(t.Context(), key, []byte("new bytes"), old.Version)
	if err != nil {
		t.Fatal(err)
	}
	to := blobstore.NewMemory()
	for name, src := range map[string]string{"replaced": key, "gone": "gems/b-1.gem"} {
		if err := copyObject(t.Context(), local, src, old.Version, to, key); !errors.Is(err, errSourceGone) {
			t.Fatalf("copyObject of an object %s = %v; want errSourceGone", name, err)
		}
	}
	if keys := to.Keys(""); len(keys) != 0 {
		t.Fatalf("copied %v of objects gone or replaced", keys)
	}
	if err := copyObject(t.Context(), local, key, cur.Version, to, "copies/a"); err != nil {
		t.Fatal(err)
	}
	if got := storedObject(t, to, "copies/a"); string(got) != "new bytes" || recordedSum(t, to, "copies/a") != cur.SHA256 {
		t.Fatalf("copied %q with SHA-256 %x; want the current object and its SHA-256", got, recordedSum(t, to, "copies/a"))
	}
	copied, err := to.Stat(t.Context(), "copies/a")
	if err != nil {
		t.Fatal(err)
	}
	if err := copyObject(t.Context(), to, "copies/a", copied.Version, local, "copies/b"); err == nil || errors.Is(err, errSourceGone) {
		t.Fatalf("copyObject from a store whose readers do not read at offsets = %v; want an error", err)
	}
}
