package s3store_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/blobstore/s3store"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// TestFleetCorruptObjectReplaced: a gem object in the bucket whose bytes
// fail verification is served to no client; the replica that read it
// fetches the gem upstream and replaces the object with its verified copy,
// and a fresh replica then serves the gem from the bucket with no upstream
// fetch.
func TestFleetCorruptObjectReplaced(t *testing.T) {
	gem, err := testupstream.BuildGem(fleetGem)
	if err != nil {
		t.Fatal(err)
	}
	s := s3store.WeedStore(t)
	up, ts := testupstream.Start(t, testupstream.Options{})
	up.Publish(fleetGem, gem)
	bad := bytes.Clone(gem)
	bad[len(bad)/2] ^= 1
	if _, err := s.PutIfAbsent(context.Background(), fleetGemKey, bytes.NewReader(bad), int64(len(bad)), blobstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	code, body, err := getBody(startReplica(t, ts.URL, s, "r") + fleetGemPath)
	if err != nil || code != http.StatusOK || !bytes.Equal(body, gem) {
		t.Fatalf("replica over the corrupt object: %d, %d bytes (the gem: %v), %v", code, len(body), bytes.Equal(body, gem), err)
	}
	waitForBytes(t, s, fleetGemKey, gem)
	code, body, err = getBody(startReplica(t, ts.URL, s, "fresh") + fleetGemPath)
	if err != nil || code != http.StatusOK || !bytes.Equal(body, gem) {
		t.Fatalf("fresh replica: %d, %d bytes, %v", code, len(body), err)
	}
	if n := up.Requests(fleetGemPath); n != 1 {
		t.Fatalf("upstream fetches of the gem: %d, want 1 (the replica that found the corrupt object)", n)
	}
}

// waitForBytes waits until the object at key holds want, whatever it held
// before: a replica replaces it after serving its client.
func waitForBytes(t *testing.T, s *s3store.Store, key string, want []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got []byte
		rc, _, err := s.Get(context.Background(), key)
		if err == nil {
			got, err = io.ReadAll(rc)
			rc.Close()
		}
		if err == nil && bytes.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("object %s: %d bytes, %v; never the verified gem", key, len(got), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
