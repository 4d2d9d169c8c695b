// Package status renders gemproxy's live status page: hit ratio and
// bandwidth saved, requests per endpoint, upstream health, cache usage per
// class, the most requested gems and the clients, since start and over the
// last hour.
//
// Every number but the gem ranking is read from the Prometheus registry
// that /metrics serves, so the page and a scrape never disagree: a Page
// keeps no counter of its own beyond a ring of per-minute readings (for
// the last hour), a bounded top-K of gem names and the last upstream
// failure. The page is one server-rendered HTML document (html/template,
// the template and stylesheet embedded) that refreshes itself.
package status

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configures New. Zero values select the defaults given per field.
type Options struct {
	// Upstream is the registry mirrored, shown in the header. Zero shows
	// nothing.
	Upstream string
	// MaxSize is the cache size cap the usage is shown against; zero or
	// negative means no cap.
	MaxSize int64
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// historyLen is the number of per-minute readings kept: an hour of them,
// and the one an hour before the newest.
const historyLen = 61

// topGems is the number of gems the page lists.
const topGems = 20

// trackedGems is how many gem names the top-K counts (a multiple of
// topGems, so that the listed ones are reliable).
const trackedGems = 5 * topGems

// Page is the status page. Build it with New; it is safe for concurrent
// use.
type Page struct {
	opts    Options
	g       prometheus.Gatherer
	started time.Time
	gems    *topK

	mu sync.Mutex
	// history is a ring of readings, one a minute; next is where the next
	// one goes and n how many it holds.
	history [historyLen]totals
	next, n int
	// lastFailure describes the last upstream failure; failedAt is zero
	// when there was none.
	lastFailure string
	failedAt    time.Time
}

// New returns the page for the metrics g gathers (the registry /metrics
// serves), taking the first reading now.
func New(g prometheus.Gatherer, opts Options) *Page {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	p := &Page{opts: opts, g: g, started: opts.Now(), gems: newTopK(trackedGems)}
	p.snapshot()
	return p
}

// Run takes a reading every minute until ctx is done, so that the page can
// show the last hour.
func (p *Page) Run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.snapshot()
		}
	}
}

// snapshot adds a reading to the ring. A failed gather keeps what it read.
func (p *Page) snapshot() {
	t, _ := read(p.g, p.opts.Now())
	p.mu.Lock()
	defer p.mu.Unlock()
	p.history[p.next] = t
	p.next = (p.next + 1) % historyLen
	p.n = min(p.n+1, historyLen)
}

// hourAgo returns the oldest reading taken at most an hour before now: the
// base of the "last hour" figures (the first reading while the process is
// younger than an hour).
func (p *Page) hourAgo(now time.Time) totals {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := p.n; i > 0; i-- {
		t := p.history[(p.next-i+historyLen)%historyLen]
		if now.Sub(t.at) <= time.Hour {
			return t
		}
	}
	return totals{}
}

// ObserveGem counts one request naming gem (a validated gem name; the
// string may be a view of a reused buffer).
func (p *Page) ObserveGem(gem string) { p.gems.add(gem) }

// UpstreamFailed records an upstream failure: reason, at at.
func (p *Page) UpstreamFailed(at time.Time, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastFailure, p.failedAt = reason, at
}

// lastUpstreamFailure returns the last failure recorded and when.
func (p *Page) lastUpstreamFailure() (string, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastFailure, p.failedAt
}
