package cache

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// fillResult is what one Fill caller got.
type fillResult struct {
	e      *Entry
	shared bool
	err    error
}

// freshNow reports whether e is fresh on the real (or bubble) clock.
func freshNow(e *Entry) bool { return e.Fresh(time.Now()) }

// TestFillCoalesces starts 200 callers at once on a channel barrier; load
// blocks until every one of them is parked (synctest.Wait), so all of them
// must have joined the single flight.
func TestFillCoalesces(t *testing.T) {
	s := newTestStore(t, Options{})
	const callers = 200
	body := []byte("coalesced body")
	synctest.Test(t, func(t *testing.T) {
		var loads atomic.Int32
		start, release := make(chan struct{}), make(chan struct{})
		load := func(ctx context.Context) (*Entry, error) {
			loads.Add(1)
			<-release
			return s.Commit(stage(t, s, body), testEntry("/info/rails", time.Now()), CommitOptions{})
		}
		results := make([]fillResult, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				<-start
				e, shared, err := s.Fill(context.Background(), "/info/rails", freshNow, load)
				results[i] = fillResult{e, shared, err}
			})
		}
		close(start)
		synctest.Wait() // every caller is parked in the flight or in load
		if n := loads.Load(); n != 1 {
			t.Fatalf("load running %d times", n)
		}
		close(release)
		wg.Wait()
		if n := loads.Load(); n != 1 {
			t.Fatalf("load called %d times, want 1", n)
		}
		first := results[0].e
		for i, r := range results {
			if r.err != nil || r.e == nil || r.e != first || !r.shared {
				t.Fatalf("caller %d got %+v", i, r)
			}
		}
		if !bytes.Equal(readBodyOf(t, s, first, false), body) || s.Peek("/info/rails") != first {
			t.Fatal("filled entry not stored")
		}
	})
}

func TestFillCallerCancelled(t *testing.T) {
	s := newTestStore(t, Options{FillTimeout: time.Hour})
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var loadCtx context.Context
		var loadStart time.Time
		load := func(ctx context.Context) (*Entry, error) {
			loadCtx, loadStart = ctx, time.Now()
			<-release
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return s.Commit(stage(t, s, []byte("x")), testEntry("/k", time.Now()), CommitOptions{})
		}
		type ctxKey struct{}
		// The first caller has a short deadline and is cancelled; the
		// second waits with no deadline.
		ctx1, cancel1 := context.WithTimeout(context.WithValue(context.Background(), ctxKey{}, "v"), time.Second)
		defer cancel1()
		var r1, r2 fillResult
		var wg sync.WaitGroup
		wg.Go(func() {
			e, shared, err := s.Fill(ctx1, "/k", freshNow, load)
			r1 = fillResult{e, shared, err}
		})
		synctest.Wait()
		wg.Go(func() {
			e, shared, err := s.Fill(context.Background(), "/k", freshNow, load)
			r2 = fillResult{e, shared, err}
		})
		synctest.Wait()
		cancel1()
		synctest.Wait()
		if !errors.Is(r1.err, context.Canceled) || r1.e != nil {
			t.Fatalf("cancelled caller got %+v, want context.Canceled", r1)
		}
		if loadCtx.Err() != nil {
			t.Fatalf("load context ended with the caller: %v", loadCtx.Err())
		}
		dl, ok := loadCtx.Deadline()
		if !ok || !dl.Equal(loadStart.Add(time.Hour)) {
			t.Fatalf("load deadline %v (%v), want FillTimeout after its start %v", dl, ok, loadStart.Add(time.Hour))
		}
		if loadCtx.Value(ctxKey{}) != "v" {
			t.Fatal("load context lost the caller's values")
		}
		close(release)
		wg.Wait()
		if r2.err != nil || r2.e == nil || !r2.shared {
			t.Fatalf("waiting caller got %+v", r2)
		}
		if got := s.Peek("/k"); got != r2.e {
			t.Fatal("fill not stored for the others")
		}
	})
}

func TestFillTimeout(t *testing.T) {
	s := newTestStore(t, Options{FillTimeout: 30 * time.Second})
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		_, _, err := s.Fill(context.Background(), "/slow", freshNow, func(ctx context.Context) (*Entry, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 30*time.Second {
			t.Fatalf("Fill = %v after %v, want DeadlineExceeded after FillTimeout", err, time.Since(start))
		}
		if s.Peek("/slow") != nil {
			t.Fatal("failed fill stored an entry")
		}
	})
}

func TestFillRechecksInFlight(t *testing.T) {
	s := newTestStore(t, Options{})
	cur := putKey(t, s, "/k", []byte("cached"), CommitOptions{})
	calls := 0
	load := func(context.Context) (*Entry, error) {
		calls++
		return s.Commit(stage(t, s, []byte("loaded")), testEntry("/k", time.Now()), CommitOptions{})
	}
	e, shared, err := s.Fill(t.Context(), "/k", freshNow, load)
	if err != nil || calls != 0 || e.ID != cur.ID || shared {
		t.Fatalf("Fill of a fresh entry = %+v, %v, %v after %d loads", e, shared, err, calls)
	}
	// A stale entry is loaded again.
	e, _, err = s.Fill(t.Context(), "/k", func(*Entry) bool { return false }, load)
	if err != nil || calls != 1 || e.ID == cur.ID || !bytes.Equal(readBodyOf(t, s, e, false), []byte("loaded")) {
		t.Fatalf("Fill of a stale entry = %+v, %v after %d loads", e, err, calls)
	}
	// A load error reaches the caller and stores nothing.
	boom := errors.New("upstream down")
	if _, _, err := s.Fill(t.Context(), "/other", freshNow, func(context.Context) (*Entry, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("Fill = %v, want the load error", err)
	}
}
