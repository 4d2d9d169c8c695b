package s3store

import "testing"

// WeedStore gives the external tests of this directory (fleet_test.go) a
// store on a prefix of its own in the shared SeaweedFS.
func WeedStore(t testing.TB) *Store { return weedStore(t) }
