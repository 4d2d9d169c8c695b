// Package blobtest is the compliance suite of blobstore.Store: every
// implementation runs Run from its own tests, so that the contract written
// on blobstore.Store is checked the same way on each of them.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/gemproxy/gemproxy/internal/blobstore"
)

// Racers is how many writers the race subtests start at once.
const Racers = 16

// Run runs the compliance suite against the stores newStore returns; each
// subtest gets a store of its own, empty, that newStore cleans up through
// t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) blobstore.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s blobstore.Store)
	}{
		{"Missing", testMissing},
		{"PutIfAbsentThenGet", testPutThenGet},
		{"EmptyObject", testEmptyObject},
		{"RecordedSHA256", testRecordedSHA256},
		{"PutIfAbsentExisting", testPutExisting},
		{"PutIfAbsentRace", testPutRace},
		{"ShortBodyStoresNothing", testShortBody},
		{"PutIfMatch", testPutIfMatch},
		{"PutIfMatchRace", testPutIfMatchRace},
		{"Delete", testDelete},
		{"InvalidKey", testInvalidKey},
		{"CancelledContext", testCancelled},
		{"Probe", testProbe},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newStore(t)) })
	}
}

// gemKey is a key shaped like the ones the proxy stores.
const gemKey = "gems/nokogiri-1.16.0-x86_64-linux.gem"

// payload returns n pseudo-random bytes, different for each seed.
func payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// put stores b at key with PutIfAbsent and fails the test on error.
func put(t *testing.T, s blobstore.Store, key string, b []byte) blobstore.Info {
	t.Helper()
	info, err := s.PutIfAbsent(t.Context(), key, bytes.NewReader(b), int64(len(b)), blobstore.PutOptions{})
	if err != nil {
		t.Fatalf("PutIfAbsent(%s): %v", key, err)
	}
	if info.Size != int64(len(b)) || info.Version == "" {
		t.Fatalf("PutIfAbsent(%s) = %+v; want size %d and a version", key, info, len(b))
	}
	return info
}

// read reads the object at key whole and checks that Get's Info and the
// bytes agree with each other and with Stat.
func read(t *testing.T, s blobstore.Store, key string) ([]byte, blobstore.Info) {
	t.Helper()
	rc, info, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%s): %v", key, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	if int64(len(b)) != info.Size {
		t.Fatalf("Get(%s) read %d bytes; Info.Size = %d", key, len(b), info.Size)
	}
	st, err := s.Stat(t.Context(), key)
	if err != nil || st != info {
		t.Fatalf("Stat(%s) = %+v, %v; Get said %+v", key, st, err, info)
	}
	return b, info
}

// wantEqual fails when the object at key does not hold want.
func wantEqual(t *testing.T, s blobstore.Store, key string, want []byte) blobstore.Info {
	t.Helper()
	got, info := read(t, s, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s holds %d bytes that differ from the %d expected", key, len(got), len(want))
	}
	return info
}

// wantAbsent fails unless Get and Stat both say ErrNotFound for key.
func wantAbsent(t *testing.T, s blobstore.Store, key string) {
	t.Helper()
	if rc, _, err := s.Get(t.Context(), key); !errors.Is(err, blobstore.ErrNotFound) {
		if err == nil {
			rc.Close()
		}
		t.Fatalf("Get(%s) = %v; want ErrNotFound", key, err)
	}
	if _, err := s.Stat(t.Context(), key); !errors.Is(err, blobstore.ErrNotFound) {
		t.Fatalf("Stat(%s) = %v; want ErrNotFound", key, err)
	}
}

// testMissing: an absent object is ErrNotFound for Get and Stat.
func testMissing(t *testing.T, s blobstore.Store) {
	wantAbsent(t, s, gemKey)
}

// testPutThenGet: an object several megabytes long, with an odd size,
// reads back byte for byte at once (read-after-write), with the size and
// version that PutIfAbsent returned.
func testPutThenGet(t *testing.T, s blobstore.Store) {
	b := payload(3<<20+17, 1)
	info := put(t, s, gemKey, b)
	if got := wantEqual(t, s, gemKey, b); got != info {
		t.Fatalf("Get's Info = %+v; PutIfAbsent returned %+v", got, info)
	}
	quick := "quick/Marshal.4.8/nokogiri-1.16.0-x86_64-linux.gemspec.rz"
	small := payload(100, 2)
	put(t, s, quick, small)
	wantEqual(t, s, quick, small)
	wantEqual(t, s, gemKey, b)
}

// testRecordedSHA256: the SHA-256 given to PutIfAbsent comes back with
// the object from PutIfAbsent, Get and Stat (read checks that the two
// agree). What comes back for an object written without one tells which
// of the two kinds of store the contract allows s is; the rest of the
// test checks the whole behaviour of that kind (keptSHA256,
// computedSHA256), and any other value fails.
func testRecordedSHA256(t *testing.T, s blobstore.Store) {
	b := payload(1000, 4)
	sum := sha256.Sum256(b)
	info, err := s.PutIfAbsent(t.Context(), gemKey, bytes.NewReader(b), int64(len(b)), blobstore.PutOptions{SHA256: sum})
	if err != nil || info.SHA256 != sum {
		t.Fatalf("PutIfAbsent with a SHA-256 = %+v, %v; want the SHA-256 %x", info, err, sum)
	}
	if got := wantEqual(t, s, gemKey, b); got.SHA256 != sum {
		t.Fatalf("Get's Info.SHA256 = %x; recorded %x", got.SHA256, sum)
	}

	gen1 := []byte("gen 1")
	put(t, s, pointerKey, gen1)
	switch got := wantEqual(t, s, pointerKey, gen1); got.SHA256 {
	case [32]byte{}:
		keptSHA256(t, s, b, info)
	case sha256.Sum256(gen1):
		computedSHA256(t, s, b, info)
	default:
		t.Fatalf("an object written with no SHA-256 has Info.SHA256 %x; want zero, or the SHA-256 of its bytes", got.SHA256)
	}
}

// keptSHA256 is the rest of testRecordedSHA256 for a store that keeps the
// SHA-256 a writer recorded and computes none: it records the value, it
// does not check it against the bytes (one that does not match comes back
// as given), and PutIfMatch over gemKey (written with body b, Info old)
// writes an object without one.
func keptSHA256(t *testing.T, s blobstore.Store, b []byte, old blobstore.Info) {
	wrong := sha256.Sum256([]byte("other bytes"))
	quick := "quick/Marshal.4.8/a-1.gemspec.rz"
	if _, err := s.PutIfAbsent(t.Context(), quick, bytes.NewReader(b), int64(len(b)), blobstore.PutOptions{SHA256: wrong}); err != nil {
		t.Fatalf("PutIfAbsent(%s): %v", quick, err)
	}
	if got := wantEqual(t, s, quick, b); got.SHA256 != wrong {
		t.Fatalf("Get's Info.SHA256 = %x; recorded %x", got.SHA256, wrong)
	}

	swapped, err := s.PutIfMatch(t.Context(), gemKey, []byte("gen 2"), old.Version)
	if err != nil {
		t.Fatalf("PutIfMatch over an object with a SHA-256: %v", err)
	}
	if got := wantEqual(t, s, gemKey, []byte("gen 2")); got.SHA256 != ([32]byte{}) || swapped.SHA256 != ([32]byte{}) {
		t.Fatalf("after PutIfMatch Info.SHA256 = %x (returned %x); want zero", got.SHA256, swapped.SHA256)
	}
}

// computedSHA256 is the rest of testRecordedSHA256 for a store that
// computes the SHA-256 of what it stores: a PutIfAbsent whose recorded
// SHA-256 is not the body's fails and stores nothing, and PutIfMatch over
// gemKey (written with body b, Info old) writes an object whose
// Info.SHA256 is the SHA-256 of its bytes.
func computedSHA256(t *testing.T, s blobstore.Store, b []byte, old blobstore.Info) {
	wrong := sha256.Sum256([]byte("other bytes"))
	quick := "quick/Marshal.4.8/a-1.gemspec.rz"
	if _, err := s.PutIfAbsent(t.Context(), quick, bytes.NewReader(b), int64(len(b)), blobstore.PutOptions{SHA256: wrong}); err == nil {
		t.Fatalf("PutIfAbsent(%s) with a SHA-256 that is not the body's succeeded on a store that computes it", quick)
	}
	wantAbsent(t, s, quick)

	gen2 := []byte("gen 2")
	swapped, err := s.PutIfMatch(t.Context(), gemKey, gen2, old.Version)
	if err != nil {
		t.Fatalf("PutIfMatch over an object with a SHA-256: %v", err)
	}
	want := sha256.Sum256(gen2)
	if got := wantEqual(t, s, gemKey, gen2); got.SHA256 != want || swapped.SHA256 != want {
		t.Fatalf("after PutIfMatch Info.SHA256 = %x (returned %x); want the SHA-256 of its bytes, %x", got.SHA256, swapped.SHA256, want)
	}
}

// testEmptyObject: a zero-length object is an object.
func testEmptyObject(t *testing.T, s blobstore.Store) {
	put(t, s, "claims/empty", nil)
	wantEqual(t, s, "claims/empty", nil)
	if _, err := s.PutIfAbsent(t.Context(), "claims/empty", bytes.NewReader(nil), 0, blobstore.PutOptions{}); !errors.Is(err, blobstore.ErrExists) {
		t.Fatalf("second PutIfAbsent of an empty object = %v; want ErrExists", err)
	}
}

// testPutExisting: PutIfAbsent over an object is ErrExists and leaves the
// first object in place, even when it is this caller's own.
func testPutExisting(t *testing.T, s blobstore.Store) {
	first := payload(1000, 1)
	info := put(t, s, gemKey, first)
	for _, b := range [][]byte{first, payload(2000, 2)} {
		if _, err := s.PutIfAbsent(t.Context(), gemKey, bytes.NewReader(b), int64(len(b)), blobstore.PutOptions{}); !errors.Is(err, blobstore.ErrExists) {
			t.Fatalf("PutIfAbsent over an object = %v; want ErrExists", err)
		}
	}
	if got := wantEqual(t, s, gemKey, first); got != info {
		t.Fatalf("Info changed from %+v to %+v", info, got)
	}
}

// testPutRace: Racers writers of different content for one key at once:
// exactly one wins.
func testPutRace(t *testing.T, s blobstore.Store) {
	RacePutIfAbsent(t, s, gemKey, Racers)
}

// RacePutIfAbsent starts racers writers of different content for key at
// once and checks that exactly one wins, that the others get ErrExists,
// and that the store holds the winner's bytes. It returns the winner.
func RacePutIfAbsent(t *testing.T, s blobstore.Store, key string, racers int) int {
	t.Helper()
	bodies := make([][]byte, racers)
	for i := range bodies {
		bodies[i] = payload(64<<10+i, uint64(i))
	}
	errs := Race(racers, func(i int) error {
		_, err := s.PutIfAbsent(t.Context(), key, bytes.NewReader(bodies[i]), int64(len(bodies[i])), blobstore.PutOptions{})
		return err
	})
	winner := OnlyWinner(t, errs, blobstore.ErrExists)
	if winner < 0 {
		t.Fatalf("no PutIfAbsent won: %v", errs)
	}
	wantEqual(t, s, key, bodies[winner])
	return winner
}

// Race runs fn(0..n-1) at once, released together, and returns their
// errors by index.
func Race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// OnlyWinner checks that at most one of errs is nil and every other is
// loss; it returns the winner's index, or -1.
func OnlyWinner(t *testing.T, errs []error, loss error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, loss):
			t.Fatalf("writer %d: %v; want nil or %v", i, err, loss)
		}
	}
	return winner
}

// shortReader is a body that ends before the size its writer announces.
type shortReader struct{ b []byte }

// ReadAt reads from the short body, returning io.EOF at its end.
func (r shortReader) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(r.b).ReadAt(p, off)
}

// testShortBody: a body shorter than its size is an error and stores
// nothing, so a later PutIfAbsent of the whole body succeeds.
func testShortBody(t *testing.T, s blobstore.Store) {
	b := payload(100<<10, 3)
	if _, err := s.PutIfAbsent(t.Context(), gemKey, shortReader{b[:len(b)/2]}, int64(len(b)), blobstore.PutOptions{}); err == nil {
		t.Fatal("PutIfAbsent of a short body succeeded")
	}
	wantAbsent(t, s, gemKey)
	put(t, s, gemKey, b)
	wantEqual(t, s, gemKey, b)
}

// pointerKey is a key shaped like the /versions pointer.
const pointerKey = "versions/pointer"

// testPutIfMatch: a swap naming the current version replaces the object
// and changes its version; a swap naming a stale version, or of an absent
// object, is ErrConflict and writes nothing.
func testPutIfMatch(t *testing.T, s blobstore.Store) {
	if _, err := s.PutIfMatch(t.Context(), pointerKey, []byte("gen 1"), "anything"); !errors.Is(err, blobstore.ErrConflict) {
		t.Fatalf("PutIfMatch of an absent object = %v; want ErrConflict", err)
	}
	wantAbsent(t, s, pointerKey)

	v1 := put(t, s, pointerKey, []byte("gen 1"))
	v2, err := s.PutIfMatch(t.Context(), pointerKey, []byte("gen 2"), v1.Version)
	if err != nil {
		t.Fatalf("PutIfMatch with the current version: %v", err)
	}
	if v2.Version == v1.Version || v2.Size != 5 {
		t.Fatalf("after the swap Info = %+v; before it %+v", v2, v1)
	}
	if got := wantEqual(t, s, pointerKey, []byte("gen 2")); got != v2 {
		t.Fatalf("Get's Info = %+v; PutIfMatch returned %+v", got, v2)
	}
	if _, err := s.PutIfMatch(t.Context(), pointerKey, []byte("gen 3"), v1.Version); !errors.Is(err, blobstore.ErrConflict) {
		t.Fatalf("PutIfMatch with a stale version = %v; want ErrConflict", err)
	}
	wantEqual(t, s, pointerKey, []byte("gen 2"))
}

// testPutIfMatchRace: Racers swaps naming the same version at once: at
// most one wins, the others get ErrConflict, and the store holds the
// winner's bytes (or the old ones when none won).
func testPutIfMatchRace(t *testing.T, s blobstore.Store) {
	old := []byte("gen 0")
	v := put(t, s, pointerKey, old)
	bodies := make([][]byte, Racers)
	for i := range bodies {
		bodies[i] = []byte("gen 1 from racer " + string(rune('a'+i)))
	}
	errs := Race(Racers, func(i int) error {
		_, err := s.PutIfMatch(t.Context(), pointerKey, bodies[i], v.Version)
		return err
	})
	want := old
	if winner := OnlyWinner(t, errs, blobstore.ErrConflict); winner >= 0 {
		want = bodies[winner]
	}
	wantEqual(t, s, pointerKey, want)
}

// testDelete: a deleted object is gone at once and can be created again;
// deleting an absent object is not an error.
func testDelete(t *testing.T, s blobstore.Store) {
	put(t, s, gemKey, []byte("one"))
	if err := s.Delete(t.Context(), gemKey); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantAbsent(t, s, gemKey)
	if err := s.Delete(t.Context(), gemKey); err != nil {
		t.Fatalf("Delete of an absent object: %v", err)
	}
	put(t, s, gemKey, []byte("two"))
	wantEqual(t, s, gemKey, []byte("two"))
}

// testInvalidKey: every method refuses a key that CheckKey refuses.
func testInvalidKey(t *testing.T, s blobstore.Store) {
	ctx := t.Context()
	for _, key := range []string{"", "/gems/a.gem", "gems//a.gem", "gems/../a.gem", "gems/a b.gem", "gems/a.gem/"} {
		calls := map[string]error{
			"PutIfAbsent": second(s.PutIfAbsent(ctx, key, bytes.NewReader([]byte("x")), 1, blobstore.PutOptions{})),
			"PutIfMatch":  second(s.PutIfMatch(ctx, key, []byte("x"), "v")),
			"Stat":        second(s.Stat(ctx, key)),
			"Delete":      s.Delete(ctx, key),
		}
		_, _, calls["Get"] = s.Get(ctx, key)
		for name, err := range calls {
			if !errors.Is(err, blobstore.ErrInvalidKey) {
				t.Errorf("%s(%q) = %v; want ErrInvalidKey", name, key, err)
			}
		}
	}
}

// second returns the error of a call that also returns an Info.
func second(_ blobstore.Info, err error) error { return err }

// testCancelled: a call whose context has ended fails with an error that
// wraps the context's, and writes nothing.
func testCancelled(t *testing.T, s blobstore.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.PutIfAbsent(ctx, gemKey, bytes.NewReader([]byte("x")), 1, blobstore.PutOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutIfAbsent with a cancelled context = %v; want context.Canceled", err)
	}
	if _, _, err := s.Get(ctx, gemKey); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled context = %v; want context.Canceled", err)
	}
	wantAbsent(t, s, gemKey)
}

// testProbe: a compliant store probes as Conditional.
func testProbe(t *testing.T, s blobstore.Store) {
	mode, err := blobstore.Probe(t.Context(), s)
	if err != nil || mode != blobstore.Conditional {
		t.Fatalf("Probe = %v, %v; want conditional", mode, err)
	}
}
