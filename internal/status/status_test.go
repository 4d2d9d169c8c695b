package status

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gemproxy/gemproxy/internal/metrics"
)

// clock is a settable test clock.
type clock struct{ now time.Time }

// Now returns the clock's time.
func (c *clock) Now() time.Time { return c.now }

// newTestPage builds metrics with two endpoints and three cache classes on
// a fresh registry, and a page over it with a test clock.
func newTestPage(t *testing.T, maxSize int64) (*Page, *metrics.Metrics, *clock) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, metrics.Options{
		Endpoints: []metrics.Endpoint{
			{Name: "info", Cached: true, Upstream: true},
			{Name: "gem", Cached: true, Upstream: true},
		},
		Classes: []string{"info", "gem", "versions"},
		Version: "1.2.3",
	})
	c := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	return New(reg, Options{Upstream: "https://rubygems.org", MaxSize: maxSize, Now: c.Now}), m, c
}

// TestReadsEveryFamily observes one of everything the page shows and
// checks that a reading sees it: the family names the page looks for are
// the ones internal/metrics exports.
func TestReadsEveryFamily(t *testing.T) {
	p, m, c := newTestPage(t, 0)
	m.ObserveRequest("info", "GET", 200, time.Millisecond)
	m.Lookup("info", metrics.ResultHit).Inc()
	m.ResponseBytes(metrics.SourceCache).Add(10)
	m.ObserveUpstream("gem", 503, time.Second)
	m.SetCircuitState(metrics.CircuitOpen)
	m.SetCacheUsage("gem", 2, 2048)
	m.ObserveClient([]byte("bundler/2.6.9 ci/github"))

	got, err := read(p.g, c.now)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]float64{
		familyRequests:       got.requests["info"]["2xx"],
		familyLookups:        got.lookups["hit"],
		familyResponseBytes:  got.responseBytes["cache"],
		familyUpstream:       got.upstream["5xx"],
		familyUpstreamTime:   got.upstreamTime.count,
		familyCircuit:        got.circuit,
		familyCacheEntries:   got.cacheEntries["gem"],
		familyCacheSize:      got.cacheBytes["gem"],
		familyClientRequests: got.clients[client{"bundler", "2.6", "github"}],
	}
	want := map[string]float64{familyRequests: 1, familyLookups: 1, familyResponseBytes: 10, familyUpstream: 1,
		familyUpstreamTime: 1, familyCircuit: 2, familyCacheEntries: 2, familyCacheSize: 2048, familyClientRequests: 1}
	for family, v := range checks {
		if v != want[family] {
			t.Errorf("%s read as %v, want %v", family, v, want[family])
		}
	}
	if got.version != "1.2.3" {
		t.Errorf("%s: version %q, want 1.2.3", familyBuildInfo, got.version)
	}
}

// TestLastHour advances the clock a minute at a time, taking a reading
// each minute as Run does, and checks that the last-hour figures count
// only what happened in the last 60 minutes while since-start counts all.
func TestLastHour(t *testing.T) {
	p, m, c := newTestPage(t, 0)
	for minute := 1; minute <= 150; minute++ {
		c.now = c.now.Add(time.Minute)
		m.ObserveRequest("info", "GET", 200, time.Millisecond) // one a minute
		if minute <= 30 {
			m.Lookup("info", metrics.ResultHit).Inc() // hits only in the first half hour
		} else {
			m.Lookup("info", metrics.ResultMiss).Inc()
		}
		p.snapshot()
		if p.n > historyLen {
			t.Fatalf("%d readings kept, more than %d", p.n, historyLen)
		}
	}
	cur, err := read(p.g, c.now)
	if err != nil {
		t.Fatal(err)
	}
	v := p.view(cur, cur.since(p.hourAgo(c.now)), c.now)
	if v.Start.Requests.Value != "150" || v.Hour.Requests.Value != "60" {
		t.Errorf("requests: since start %s, last hour %s; want 150 and 60", v.Start.Requests.Value, v.Hour.Requests.Value)
	}
	if v.Start.HitRatio.Text != "20.0%" || v.Hour.HitRatio.Text != "0.0%" {
		t.Errorf("hit ratio: since start %s, last hour %s; want 20.0%% and 0.0%%", v.Start.HitRatio.Text, v.Hour.HitRatio.Text)
	}
}

// TestLastHourYoungProcess checks that before an hour has passed (and
// without Run) the last hour is everything since start.
func TestLastHourYoungProcess(t *testing.T) {
	p, m, c := newTestPage(t, 0)
	m.ObserveRequest("info", "GET", 200, time.Millisecond)
	c.now = c.now.Add(10 * time.Minute)
	cur, _ := read(p.g, c.now)
	if got := cur.since(p.hourAgo(c.now)).requests["info"]["2xx"]; got != 1 {
		t.Errorf("last hour of a 10-minute-old page: %v requests, want 1", got)
	}
}

// TestCacheUsageAgainstCap checks the cache rows: entries, bytes and
// share of the cap per class, the total, and no bar without a cap.
func TestCacheUsageAgainstCap(t *testing.T) {
	for _, tt := range []struct {
		name      string
		maxSize   int64
		gemShare  float64
		total     string
		capText   string
		capShares float64
	}{
		{"with a cap", 1 << 20, 0.5, "768.0 KiB", "1.0 MiB", 0.75},
		{"without a cap", -1, -1, "768.0 KiB", "none", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, m, c := newTestPage(t, tt.maxSize)
			m.SetCacheUsage("gem", 3, 512<<10)
			m.SetCacheUsage("info", 7, 256<<10)
			cur, _ := read(p.g, c.now)
			v := p.view(cur, cur, c.now)
			var gem *row
			for i := range v.Cache {
				if v.Cache[i].Name == "gem" {
					gem = &v.Cache[i]
				}
			}
			if len(v.Cache) != 3 || gem == nil {
				t.Fatalf("cache rows %+v, want gem, info and versions", v.Cache)
			}
			if gem.Cells[0].Value != "3" || gem.Cells[1].Value != "524288" || gem.Share != tt.gemShare {
				t.Errorf("gem row %+v, want 3 entries, 524288 bytes, share %v", gem, tt.gemShare)
			}
			if v.CacheTotal.Text != tt.total || v.CacheCap.Text != tt.capText || v.CacheShare != tt.capShares {
				t.Errorf("total %q of %q (%v), want %q of %q (%v)", v.CacheTotal.Text, v.CacheCap.Text, v.CacheShare, tt.total, tt.capText, tt.capShares)
			}
		})
	}
}

// TestRender renders a page and checks the parts a browser needs: the
// refresh, the viewport, figures with ids, escaped text, no outside
// resource.
func TestRender(t *testing.T) {
	p, m, c := newTestPage(t, 1<<30)
	m.ObserveRequest("info", "GET", 200, time.Millisecond)
	p.ObserveGem("rack")
	p.UpstreamFailed(c.now.Add(-time.Minute), `upstream answered 503 <script>alert(1)</script>`)
	var buf bytes.Buffer
	if err := p.Render(&buf); err != nil {
		t.Fatal(err)
	}
	html := buf.String()
	for _, want := range []string{
		`<meta http-equiv="refresh" content="5">`,
		`<meta name="viewport" content="width=device-width, initial-scale=1">`,
		`id="requests-start" data-value="1">1<`,
		`data-gem="rack"`,
		`upstream answered 503 &lt;script&gt;`,
		`(1m0s ago)`,
		`gemproxy <span class="version" id="version">1.2.3</span>`,
	} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, outside := range []string{"http://", "https://", "//"} {
		for _, attr := range []string{`src="` + outside, `href="` + outside, `url(` + outside} {
			if strings.Contains(html, attr) {
				t.Errorf("page loads an outside resource: %s", attr)
			}
		}
	}
}

// TestTopKBounded feeds a skewed stream of 200,000 requests over 50,000
// names and checks that memory stays bounded, that the heavy names come
// out in order, and that no count is low.
func TestTopKBounded(t *testing.T) {
	k := newTopK(trackedGems)
	truth := map[string]uint64{}
	rng := rand.New(rand.NewPCG(3, 4))
	zipf := rand.NewZipf(rng, 1.2, 1, 49_999)
	for range 200_000 {
		name := fmt.Sprintf("gem%d", zipf.Uint64())
		truth[name]++
		k.add(name)
		if len(k.counts) > trackedGems {
			t.Fatalf("%d names counted, more than %d", len(k.counts), trackedGems)
		}
	}
	top := k.top(topGems)
	if len(top) != topGems {
		t.Fatalf("top has %d names, want %d", len(top), topGems)
	}
	for i, r := range top[:5] {
		if want := fmt.Sprintf("gem%d", i); r.Name != want {
			t.Errorf("rank %d is %s, want %s", i+1, r.Name, want)
		}
	}
	for _, r := range top {
		if r.Count < truth[r.Name] || r.Count-r.Overcount > truth[r.Name] {
			t.Errorf("%s counted %d (overcount %d), true count %d", r.Name, r.Count, r.Overcount, truth[r.Name])
		}
	}
}

// TestQuantile checks the histogram estimate against PromQL's
// interpolation on a known histogram.
func TestQuantile(t *testing.T) {
	h := histogram{bounds: []float64{0.1, 0.5, 1, math.Inf(1)}, counts: []float64{10, 30, 40, 40}, count: 40, sum: 12}
	for _, tt := range []struct{ q, want float64 }{
		{0.25, 0.1},   // rank 10: the top of the first bucket
		{0.5, 0.3},    // rank 20: half-way through 0.1..0.5
		{0.875, 0.75}, // rank 35: half-way through 0.5..1
	} {
		if got := h.quantile(tt.q); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got := h.mean(); got != 0.3 {
		t.Errorf("mean = %v, want 0.3", got)
	}
	if !math.IsNaN((histogram{}).quantile(0.5)) {
		t.Error("quantile of an empty histogram is not NaN")
	}
}
