package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// putObjectSum stores body at key in s with the SHA-256 sum recorded.
func putObjectSum(t *testing.T, s blobstore.Store, key string, body []byte, sum [32]byte) {
	t.Helper()
	if _, err := s.PutIfAbsent(context.Background(), key, bytes.NewReader(body), int64(len(body)), blobstore.PutOptions{SHA256: sum}); err != nil {
		t.Fatal(err)
	}
}

// recordedSum is the SHA-256 recorded with the object at key in s.
func recordedSum(t *testing.T, s blobstore.Store, key string) [32]byte {
	t.Helper()
	info, err := s.Stat(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return info.SHA256
}

// TestSharedRecordedChecksumFreshReplica: the replica that fetched a gem
// upstream records its SHA-256 with the object; a replica on an empty data
// directory verifies the object against it and serves and stores the gem
// without any upstream request, not even /info (issue 13, test 2).
func TestSharedRecordedChecksumFreshReplica(t *testing.T) {
	up := gemUpstream(t, nil)
	s := blobstore.NewMemory()
	a := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
	getGem(t, a)
	a.Wait()
	if got, want := recordedSum(t, s, sharedGemKey), sha256.Sum256(sharedGem); got != want {
		t.Fatalf("SHA-256 recorded with the object: %x, want the gem's %x", got, want)
	}
	before := up.total()
	b := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "b"))
	getGem(t, b)
	getGem(t, b) // stored: a local hit
	b.Wait()
	if n := up.total() - before; n != 0 {
		t.Fatalf("the fresh replica sent %d upstream requests (/info/fleet: %d), want none", n, up.count("/info/fleet")-1)
	}
	if n := sharedRequests(b, metrics.SharedGet, metrics.SharedOK); n != 1 {
		t.Fatalf("the fresh replica read the store %v times, want 1: the gem was not stored", n)
	}
}

// TestSharedRecordedChecksumMismatch: an object whose bytes do not match
// the SHA-256 recorded with it (bit rot, or a wrong record) is corrupt: a
// replica with no /info of its own serves the upstream's gem, never the
// object, and replaces the object with its verified copy and checksum,
// which the next fresh replica serves with no upstream request.
func TestSharedRecordedChecksumMismatch(t *testing.T) {
	good := sha256.Sum256(sharedGem)
	for _, tc := range []struct {
		name string
		body []byte
		sum  [32]byte
	}{
		{"bytes changed", corruptGem(), good},
		{"checksum wrong", sharedGem, sha256.Sum256([]byte("another gem"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := gemUpstream(t, nil)
			s := blobstore.NewMemory()
			putObjectSum(t, s, sharedGemKey, tc.body, tc.sum)
			a := newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "a"))
			getGem(t, a)
			a.Wait()
			if n := up.count(sharedGemPath); n != 1 {
				t.Fatalf("upstream fetches of the gem: %d, want 1: the object was served", n)
			}
			if n := testutil.ToFloat64(a.m.SharedStore.CorruptReplaced); n != 1 {
				t.Errorf("corrupt objects replaced: %v, want 1", n)
			}
			if got := storedObject(t, s, sharedGemKey); !bytes.Equal(got, sharedGem) {
				t.Fatalf("the store holds %d bytes that are not the verified gem", len(got))
			}
			if got := recordedSum(t, s, sharedGemKey); got != good {
				t.Fatalf("SHA-256 recorded with the replacement: %x, want %x", got, good)
			}
			before := up.total()
			getGem(t, newTestProxy(t, up.URL, withShared(s, blobstore.Conditional, "fresh")))
			if n := up.total() - before; n != 0 {
				t.Fatalf("a fresh replica sent %d upstream requests for the replaced object, want none", n)
			}
		})
	}
}
