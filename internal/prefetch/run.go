// Package prefetch warms a gemproxy cache with everything Bundler needs to
// install lockfiles offline: every .gem file of their rubygems.org GEM
// sections, the compact index's /info file of each of those gems, and
// /versions and /names. It reads and merges the lockfiles (Plan), fetches
// through a Fetcher (a proxy over a data directory in process, or a
// running gemproxy over HTTP), checks gems against the lockfiles'
// CHECKSUMS, and reports progress and failures (Progress).
package prefetch

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Options configures Run.
type Options struct {
	// Fetcher gets each path into the cache.
	Fetcher Fetcher
	// Jobs is how many paths are fetched at the same time (at least 1).
	Jobs int
	// Out receives the skipped gems, the progress and, at the end, the
	// failures grouped by cause.
	Out *Progress
}

// Summary counts the outcomes of Run.
type Summary struct {
	// Cached counts gems the cache held already.
	Cached int
	// Fetched counts gems downloaded into the cache.
	Fetched int
	// Bytes is the total size of the cached and fetched gems.
	Bytes int64
	// Index counts the compact-index files now in the cache.
	Index int
	// Failed counts gems and index files that could not be prefetched.
	Failed int
	// NotAttempted counts gems and index files not tried because of an
	// interrupt.
	NotAttempted int
	// Skipped counts the gems of other sources.
	Skipped int
	// Elapsed is how long the run took.
	Elapsed time.Duration
}

// String is the summary line, e.g. "prefetched 3 gems (1 already cached,
// 2 fetched, 12345 bytes) and 5 index files in 1.2s; 0 failed, 0 skipped".
func (s Summary) String() string {
	n := s.Cached + s.Fetched
	return fmt.Sprintf("prefetched %d %s (%d already cached, %d fetched, %d bytes) and %d index %s in %s; %d failed, %d skipped",
		n, plural(n, "gem", "gems"), s.Cached, s.Fetched, s.Bytes, s.Index, plural(s.Index, "file", "files"),
		s.Elapsed.Round(time.Millisecond), s.Failed, s.Skipped)
}

// item is one path to fetch.
type item struct {
	// path is what is fetched.
	path string
	// gem is the gem, nil for an index file.
	gem *Target
}

// name is how messages name the item: a gem's file name, an index file's
// path.
func (it item) name() string {
	if it.gem != nil {
		return it.gem.File
	}
	return it.path
}

// items lists what pl fetches: /versions and /names first, then the gems
// (each of which looks up its /info file to be verified), then the /info
// files.
func (pl Plan) items() []item {
	index := pl.indexPaths()
	out := make([]item, 0, len(index)+len(pl.Gems))
	for _, p := range index[:2] {
		out = append(out, item{path: p})
	}
	for _, t := range pl.Gems {
		out = append(out, item{path: "/gems/" + t.File, gem: t})
	}
	for _, p := range index[2:] {
		out = append(out, item{path: p})
	}
	return out
}

// Run fetches everything pl lists with at most opts.Jobs at a time,
// writes the skipped gems, the progress and the failures on opts.Out, and
// returns the counts. Once ctx is done no new fetch starts.
func Run(ctx context.Context, pl Plan, opts Options) Summary {
	start := time.Now()
	out := opts.Out
	for _, s := range pl.Skipped {
		out.printf("%s: skipped: %s\n", s.File, s.Reason)
	}
	items := pl.items()
	var mu sync.Mutex
	sum := Summary{Skipped: len(pl.Skipped)}
	var failures failureLog
	out.start(len(items))
	stopTicks := out.startTicks()
	work := make(chan item)
	var wg sync.WaitGroup
	for range min(opts.Jobs, len(items)) {
		wg.Go(func() {
			for it := range work {
				if ctx.Err() != nil {
					mu.Lock()
					sum.NotAttempted++
					mu.Unlock()
					continue
				}
				r, err := fetchItem(ctx, opts.Fetcher, it)
				mu.Lock()
				switch {
				case err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled):
					sum.NotAttempted++
				case err != nil:
					sum.Failed++
					failures.add(it.name(), err)
				case it.gem == nil:
					sum.Index++
				case r.Hit:
					sum.Cached++
				default:
					sum.Fetched++
				}
				if err == nil && it.gem != nil {
					sum.Bytes += r.Size
				}
				mu.Unlock()
				out.step(r.Size)
			}
		})
	}
	sent := 0
feed:
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		select {
		case work <- it:
			sent++
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	stopTicks()
	out.finish()
	failures.report(out)
	sum.NotAttempted += len(items) - sent
	sum.Elapsed = time.Since(start)
	return sum
}

// fetchItem fetches it and checks a gem against its lockfile checksum.
func fetchItem(ctx context.Context, f Fetcher, it item) (Result, error) {
	if it.gem != nil && it.gem.Conflict != "" {
		return Result{}, errors.New(it.gem.Conflict)
	}
	r, err := f.Fetch(ctx, it.path)
	if err != nil {
		return Result{}, err
	}
	if it.gem != nil && it.gem.SHA256 != "" && hex.EncodeToString(r.SHA256[:]) != it.gem.SHA256 {
		return Result{}, fmt.Errorf("sha256 %x, but the CHECKSUMS section of %s says %s", r.SHA256, it.gem.SumFrom, it.gem.SHA256)
	}
	return r, nil
}

// plural returns one when n is 1, else many.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
