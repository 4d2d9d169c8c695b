package s3store

import (
	"testing"
	"time"
)

// WeedStore gives the external tests of this directory (fleet_test.go) a
// store on a prefix of its own in the shared SeaweedFS.
func WeedStore(t testing.TB) *Store { return weedStore(t) }

// QuickWeedStore is WeedStore with a short call timeout, for the tests of
// a store that stops answering.
func QuickWeedStore(t testing.TB, timeout time.Duration) *Store { return weedStoreTimeout(t, timeout) }
