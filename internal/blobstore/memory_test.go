package blobstore_test

import (
	"testing"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/blobstore/blobtest"
)

// TestMemoryCompliance runs the compliance suite on the reference store.
func TestMemoryCompliance(t *testing.T) {
	blobtest.Run(t, func(*testing.T) blobstore.Store { return blobstore.NewMemory() })
}
