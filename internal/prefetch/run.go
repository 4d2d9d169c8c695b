// Package prefetch warms a gemproxy cache with everything Bundler needs to
// install lockfiles offline: every .gem file of their rubygems.org GEM
// sections, /versions and /names, and the compact index's /info file of
// each of those gems and, transitively, of every dependency an /info file
// names (Bundler reads those of all versions, not only the locked ones).
// It reads and merges the lockfiles (Plan), fetches through a Fetcher (a
// proxy over a data directory in process, or a running gemproxy over
// HTTP), checks gems against the lockfiles' CHECKSUMS, and reports
// progress and failures (Progress).
package prefetch

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gemproxy/gemproxy/internal/compactindex"
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

// items lists what pl fetches first: /versions and /names, then the gems
// (each of which looks up its /info file to be verified), then the /info
// files of the gems' names.
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

// runner is the state of one Run.
type runner struct {
	// opts are Run's options.
	opts Options
	// mu guards sum, failures and infos.
	mu sync.Mutex
	// sum is the counts so far.
	sum Summary
	// failures groups the failures by cause.
	failures failureLog
	// infos holds the names whose /info file is fetched or queued.
	infos map[string]bool
}

// Run fetches everything pl lists with at most opts.Jobs at a time, then,
// round after round, the /info files of the dependencies the /info files
// fetched name (of any version: Bundler asks for them all). It writes the
// skipped gems, the progress and the failures on opts.Out, and returns the
// counts. Once ctx is done no new fetch starts.
func Run(ctx context.Context, pl Plan, opts Options) Summary {
	start := time.Now()
	out := opts.Out
	for _, s := range pl.Skipped {
		out.printf("%s: skipped: %s\n", s.File, s.Reason)
	}
	r := &runner{opts: opts, sum: Summary{Skipped: len(pl.Skipped)}, infos: make(map[string]bool)}
	for _, t := range pl.Gems {
		r.infos[t.Name] = true
	}
	items := pl.items()
	out.start(len(items))
	stopTicks := out.startTicks()
	for len(items) > 0 && ctx.Err() == nil {
		items = r.round(ctx, items)
		out.addTotal(len(items))
	}
	stopTicks()
	out.finish()
	r.failures.report(out)
	r.sum.NotAttempted += len(items)
	r.sum.Elapsed = time.Since(start)
	return r.sum
}

// round fetches items with at most opts.Jobs at a time and returns the
// /info files of the dependencies not fetched yet that their /info files
// name. Items not started because ctx is done count as not attempted.
func (r *runner) round(ctx context.Context, items []item) (next []item) {
	work := make(chan item)
	var wg sync.WaitGroup
	for range min(r.opts.Jobs, len(items)) {
		wg.Go(func() {
			for it := range work {
				if ctx.Err() != nil {
					r.count(it, Result{}, context.Canceled, true)
					continue
				}
				res, err := fetchItem(ctx, r.opts.Fetcher, it)
				r.count(it, res, err, ctx.Err() != nil && errors.Is(err, context.Canceled))
				if err == nil && res.Body != nil {
					deps := r.newInfos(res.Body)
					r.mu.Lock()
					next = append(next, deps...)
					r.mu.Unlock()
				}
				r.opts.Out.step(res.Size)
			}
		})
	}
	sent := 0
feed:
	for _, it := range items {
		select {
		case work <- it:
			sent++
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	r.mu.Lock()
	r.sum.NotAttempted += len(items) - sent
	r.mu.Unlock()
	return next
}

// count records the outcome of one item; interrupted marks one not
// attempted because of an interrupt.
func (r *runner) count(it item, res Result, err error, interrupted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case interrupted:
		r.sum.NotAttempted++
	case err != nil:
		r.sum.Failed++
		r.failures.add(it.name(), err)
	case it.gem == nil:
		r.sum.Index++
	case res.Hit:
		r.sum.Cached++
	default:
		r.sum.Fetched++
	}
	if err == nil && it.gem != nil {
		r.sum.Bytes += res.Size
	}
}

// newInfos returns the /info items of the dependencies named in an /info
// body whose /info file is not fetched or queued yet, and marks them.
func (r *runner) newInfos(info []byte) []item {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []item
	compactindex.InfoDependencies(info, func(name []byte) {
		if !r.infos[string(name)] {
			r.infos[string(name)] = true
			out = append(out, item{path: "/info/" + string(name)})
		}
	})
	return out
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
