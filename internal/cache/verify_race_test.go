package cache

import (
	"strconv"
	"sync"
	"testing"
)

// TestVerifyDuringCommitsFindsNothing: Verify run while entries are
// committed (eight keys, each written again and again) reports no problem. A commit writes an entry to the file
// before it publishes it in the index; Verify must not take that moment
// for a body that is missing.
func TestVerifyDuringCommitsFindsNothing(t *testing.T) {
	s := newTestStore(t, Options{})
	body := testBody(4<<10, 1)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			st := s.Stage()
			if _, err := st.Write(body); err != nil {
				t.Error(err)
				return
			}
			if _, err := s.Commit(st, testEntry("/info/gem"+strconv.Itoa(i%8), s.now()), CommitOptions{}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	defer wg.Wait()
	defer close(stop)
	for range 200 {
		problems, err := s.Verify()
		if err != nil || len(problems) > 0 {
			t.Fatalf("Verify during commits: %v %v", problems, err)
		}
	}
}
