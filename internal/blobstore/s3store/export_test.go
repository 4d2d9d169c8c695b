package s3store

import (
	"syscall"
	"testing"
	"time"
)

// WeedStore gives the external tests of this directory (fleet_test.go) a
// store on a prefix of its own in the shared SeaweedFS.
func WeedStore(t testing.TB) *Store { return weedStore(t) }

// QuickWeedStore is WeedStore with a short call timeout, for the tests of
// a store that stops answering.
func QuickWeedStore(t testing.TB, timeout time.Duration) *Store { return weedStoreTimeout(t, timeout) }

// PauseWeed stops the shared SeaweedFS with SIGSTOP (it keeps its
// connections, answers nothing) and returns the function that resumes it
// with SIGCONT, which also runs at the end of the test.
func PauseWeed(t testing.TB) (resume func()) {
	t.Helper()
	if err := weed.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume = func() {
		if !resumed {
			resumed = true
			_ = weed.cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	return resume
}
