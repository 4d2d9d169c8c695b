package s3store

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/blobstore/blobtest"
	"github.com/gemproxy/gemproxy/internal/testweed"
)

// TestMain stops the SeaweedFS that the tests shared, by PID, after them.
func TestMain(m *testing.M) { testweed.Main(m) }

// weedStore returns a store on a prefix of its own in the shared
// SeaweedFS. Without a SeaweedFS binary (it could not be built), the test
// skips, or fails under CI.
func weedStore(t testing.TB) *Store {
	t.Helper()
	// SeaweedFS queues concurrent If-Match writes of one key behind a lock
	// that it polls about once a second: 16 racers take up to 6 s on a
	// loaded machine.
	return weedStoreTimeout(t, 30*time.Second)
}

// weedStoreTimeout is weedStore with the given call timeout.
func weedStoreTimeout(t testing.TB, timeout time.Duration) *Store {
	t.Helper()
	weed := testweed.Start(t)
	return newTestStore(t, weed.Endpoint, testweed.Bucket, func(o *Options) {
		o.Prefix = weed.Prefix()
		o.Timeout = timeout
	})
}

// TestSeaweedFSCompliance runs the compliance suite on a real S3 server.
func TestSeaweedFSCompliance(t *testing.T) {
	blobtest.Run(t, func(t *testing.T) blobstore.Store { return weedStore(t) })
}

// TestSeaweedFSPutIfAbsentRounds: rounds of 32 writers racing for one new
// object each, as replicas filling one cold gem would: exactly one winner
// per round.
func TestSeaweedFSPutIfAbsentRounds(t *testing.T) {
	s := weedStore(t)
	const rounds, racers = 5, 32
	start := time.Now()
	for round := range rounds {
		blobtest.RacePutIfAbsent(t, s, fmt.Sprintf("gems/race-%d.gem", round), racers)
	}
	t.Logf("%d rounds of %d racers: exactly 1 winner each, %s per round",
		rounds, racers, time.Since(start)/rounds)
}

// BenchmarkSeaweedFS measures one call's latency on loopback, by size.
func BenchmarkSeaweedFS(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		body := bytes.Repeat([]byte{'g'}, size)
		b.Run(fmt.Sprintf("PutIfAbsent/%dKiB", size>>10), func(b *testing.B) {
			s := weedStore(b)
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				if _, err := s.PutIfAbsent(b.Context(), fmt.Sprintf("gems/b-%d.gem", i), bytes.NewReader(body), int64(size), blobstore.PutOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("Get/%dKiB", size>>10), func(b *testing.B) {
			s := weedStore(b)
			if _, err := s.PutIfAbsent(b.Context(), "gems/b.gem", bytes.NewReader(body), int64(size), blobstore.PutOptions{}); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			for b.Loop() {
				rc, _, err := s.Get(b.Context(), "gems/b.gem")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}
