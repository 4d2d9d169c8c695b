package blobstore_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/blobstore/blobtest"
)

// TestMemoryCompliance runs the compliance suite on the reference store.
func TestMemoryCompliance(t *testing.T) {
	blobtest.Run(t, func(*testing.T) blobstore.Store { return blobstore.NewMemory() })
}

// TestMemoryKeys: Keys lists the stored keys under a prefix, sorted, and
// forgets deleted ones.
func TestMemoryKeys(t *testing.T) {
	ctx := context.Background()
	m := blobstore.NewMemory()
	for _, k := range []string{"versions/gen/2-b", "versions/current", "versions/gen/1-a", "gems/a-1.gem"} {
		if _, err := m.PutIfAbsent(ctx, k, strings.NewReader(k), int64(len(k)), blobstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Delete(ctx, "versions/gen/2-b"); err != nil {
		t.Fatal(err)
	}
	if got, want := m.Keys("versions/"), []string{"versions/current", "versions/gen/1-a"}; !slices.Equal(got, want) {
		t.Errorf("Keys(versions/) = %q, want %q", got, want)
	}
}
