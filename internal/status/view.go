package status

import (
	"cmp"
	"embed"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"
)

// assets holds the page template and its stylesheet.
//
//go:embed assets/status.html assets/status.css
var assets embed.FS

// page is the parsed template. Its functions: tid gives a number an
// element id, pct shows a share as a percentage.
var page = template.Must(template.New("status.html").Funcs(template.FuncMap{
	"tid": func(id string, n number) number { n.ID = id; return n },
	"pct": func(share float64) string { return strconv.FormatFloat(100*share, 'f', 1, 64) + "%" },
}).ParseFS(assets, "assets/status.html"))

// stylesheet is inlined into the page, so that it needs no second request.
var stylesheet = func() template.CSS {
	b, err := assets.ReadFile("assets/status.css")
	if err != nil {
		panic(err)
	}
	return template.CSS(b)
}()

// ContentType is the Content-Type of what Render writes.
const ContentType = "text/html; charset=utf-8"

// RefreshSeconds is how often the page reloads itself.
const RefreshSeconds = 5

// Render writes the page as it is now to w. A failed gather still renders
// what could be read.
func (p *Page) Render(w io.Writer) error {
	now := p.opts.Now()
	cur, _ := read(p.g, now)
	return page.Execute(w, p.view(cur, cur.since(p.hourAgo(now)), now))
}

// number is a figure as shown, with its exact value for machines (the
// data-value attribute).
type number struct {
	// ID is the element id, for the figures a test or script looks up.
	ID string
	// Text is the figure as a person reads it.
	Text string
	// Value is the exact value.
	Value string
}

// count shows a count of things.
func count(v float64) number {
	return number{Text: groupThousands(int64(math.Round(v))), Value: exact(v)}
}

// byteSize shows a number of bytes with a binary unit.
func byteSize(v float64) number {
	return number{Text: humanBytes(v), Value: exact(v)}
}

// ratio shows part/whole as a percentage, or a dash when whole is zero.
func ratio(part, whole float64) number {
	if whole <= 0 {
		return number{Text: "–", Value: ""}
	}
	r := part / whole
	return number{Text: strconv.FormatFloat(100*r, 'f', 1, 64) + "%", Value: exact(r)}
}

// seconds shows a duration in seconds, or a dash for NaN.
func seconds(v float64) number {
	if math.IsNaN(v) {
		return number{Text: "–", Value: ""}
	}
	return number{Text: time.Duration(v * float64(time.Second)).Round(10 * time.Microsecond).String(), Value: exact(v)}
}

// exact formats v with as many digits as it needs.
func exact(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// groupThousands formats n with commas between groups of three digits.
func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + groupThousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// humanBytes formats n bytes with one decimal and a binary unit.
func humanBytes(n float64) string {
	if n < 1024 {
		return strconv.FormatFloat(n, 'f', 0, 64) + " B"
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	i := -1
	for ; n >= 1024 && i < len(units)-1; i++ {
		n /= 1024
	}
	return strconv.FormatFloat(n, 'f', 1, 64) + " " + units[i]
}

// period holds the figures of one column: since start or the last hour.
type period struct {
	// HitRatio is hits and stale answers over the lookups that could be
	// served from the cache (all but bypass).
	HitRatio number
	// Lookups is the cache lookups, bypass excluded.
	Lookups number
	// Saved is the body bytes served from the cache.
	Saved number
	// FromUpstream is the body bytes streamed from the upstream.
	FromUpstream number
	// Requests is the requests served.
	Requests number
	// UpstreamRequests is the requests sent upstream.
	UpstreamRequests number
	// UpstreamFailures is those that got a 5xx or no answer.
	UpstreamFailures number
	// LatencyMean, LatencyP50 and LatencyP95 describe the upstream latency.
	LatencyMean, LatencyP50, LatencyP95 number
}

// newPeriod computes a column from t.
func newPeriod(t totals) period {
	eligible := sum(t.lookups) - t.lookups["bypass"]
	requests := 0.0
	for _, codes := range t.requests {
		requests += sum(codes)
	}
	return period{
		HitRatio:         ratio(t.lookups["hit"]+t.lookups["stale"], eligible),
		Lookups:          count(eligible),
		Saved:            byteSize(t.responseBytes["cache"]),
		FromUpstream:     byteSize(t.responseBytes["upstream"]),
		Requests:         count(requests),
		UpstreamRequests: count(sum(t.upstream)),
		UpstreamFailures: count(t.upstream["5xx"] + t.upstream["error"]),
		LatencyMean:      seconds(t.upstreamTime.mean()),
		LatencyP50:       seconds(t.upstreamTime.quantile(0.5)),
		LatencyP95:       seconds(t.upstreamTime.quantile(0.95)),
	}
}

// sum adds the values of m.
func sum[K comparable](m map[K]float64) float64 {
	s := 0.0
	for _, v := range m {
		s += v
	}
	return s
}

// row is one line of a table: a name and its figures.
type row struct {
	// Name is what the line is about.
	Name string
	// Note qualifies the name (e.g. an estimate); may be empty.
	Note string
	// Cells are the figures, in the table's column order.
	Cells []number
	// Share is a fraction in [0, 1] drawn as a bar; negative draws none.
	Share float64
	// order sorts the rows, highest first.
	order float64
}

// sortRows orders rows by order, highest first, then by name.
func sortRows(rows []row) []row {
	slices.SortFunc(rows, func(a, b row) int {
		return cmp.Or(cmp.Compare(b.order, a.order), cmp.Compare(a.Name, b.Name))
	})
	return rows
}

// view is what the template shows.
type view struct {
	// CSS is the stylesheet; Refresh the reload interval in seconds.
	CSS     template.CSS
	Refresh int
	// Version, Upstream, Uptime and Now describe the process.
	Version, Upstream, Uptime, Now string
	// Start and Hour are the since-start and last-hour columns.
	Start, Hour period
	// Lookups breaks the cache lookups since start down by result.
	Lookups []row
	// Circuit is the breaker state: closed, half-open or open.
	Circuit string
	// LastFailure and FailedAt describe the last upstream failure; Failed
	// is false when there was none.
	LastFailure, FailedAt string
	Failed                bool
	// Endpoints are requests by endpoint: since start, last hour, 4xx, 5xx.
	Endpoints []row
	// Cache is usage by class: entries, bytes, share of the cap.
	Cache []row
	// CacheTotal is the total usage, and CacheCap the cap (Text "none"
	// without one).
	CacheTotal, CacheCap number
	// CacheShare is CacheTotal over CacheCap, or negative without a cap.
	CacheShare float64
	// Gems are the most requested gems.
	Gems []row
	// Clients are requests by client and version; CIs by CI system.
	Clients, CIs []row
}

// view builds the view of cur (a reading now) and hour (what was counted
// in the last hour).
func (p *Page) view(cur, hour totals, now time.Time) view {
	v := view{
		CSS:       stylesheet,
		Refresh:   RefreshSeconds,
		Version:   cur.version,
		Upstream:  p.opts.Upstream,
		Uptime:    now.Sub(p.started).Round(time.Second).String(),
		Now:       now.UTC().Format(time.RFC3339),
		Start:     newPeriod(cur),
		Hour:      newPeriod(hour),
		Circuit:   circuitName(cur.circuit),
		Endpoints: endpointRows(cur, hour),
		Clients:   clientRows(cur, client.name),
		CIs:       clientRows(cur, func(c client) string { return c.ci }),
	}
	for _, result := range []string{"hit", "stale", "revalidated", "coalesced", "miss", "bypass"} {
		v.Lookups = append(v.Lookups, row{Name: result, Cells: []number{count(cur.lookups[result])}})
	}
	if reason, at := p.lastUpstreamFailure(); !at.IsZero() {
		v.Failed, v.LastFailure = true, reason
		v.FailedAt = fmt.Sprintf("%s (%s ago)", at.UTC().Format(time.RFC3339), now.Sub(at).Round(time.Second))
	}
	v.Cache, v.CacheTotal, v.CacheCap, v.CacheShare = cacheRows(cur, p.opts.MaxSize)
	for _, g := range p.gems.top(topGems) {
		r := row{Name: g.Name, Cells: []number{count(float64(g.Count))}}
		if g.Overcount > 0 {
			r.Note = "at most " + groupThousands(int64(g.Overcount)) + " fewer"
		}
		v.Gems = append(v.Gems, r)
	}
	return v
}

// circuitName names a gemproxy_upstream_circuit_state value.
func circuitName(state float64) string {
	switch state {
	case 1:
		return "half-open"
	case 2:
		return "open"
	}
	return "closed"
}

// endpointRows lists the endpoints that served requests since start.
func endpointRows(cur, hour totals) []row {
	var rows []row
	for ep, codes := range cur.requests {
		total := sum(codes)
		if total == 0 {
			continue
		}
		rows = append(rows, row{Name: ep, order: total, Cells: []number{
			count(total), count(sum(hour.requests[ep])), count(codes["4xx"]), count(codes["5xx"]),
		}})
	}
	return sortRows(rows)
}

// cacheRows lists the usage of every class against maxSize, with the total
// and the cap.
func cacheRows(cur totals, maxSize int64) (rows []row, total, limit number, share float64) {
	capBytes := float64(maxSize)
	used := sum(cur.cacheBytes)
	share = -1
	limit = number{Text: "none"}
	if maxSize > 0 {
		share, limit = min(used/capBytes, 1), byteSize(capBytes)
	}
	for _, class := range slices.Sorted(maps.Keys(cur.cacheBytes)) {
		r := row{Name: class, Share: -1, Cells: []number{count(cur.cacheEntries[class]), byteSize(cur.cacheBytes[class])}}
		if maxSize > 0 {
			r.Share = min(cur.cacheBytes[class]/capBytes, 1)
		}
		rows = append(rows, r)
	}
	return rows, byteSize(used), limit, share
}

// name is how the page shows the client and its version: "bundler 2.6",
// or "other" for a client that is neither Bundler nor RubyGems.
func (c client) name() string {
	if c.kind == "other" {
		return c.kind
	}
	return c.kind + " " + c.version
}

// clientRows sums the client requests by the name key gives each label
// set, busiest first.
func clientRows(cur totals, key func(client) string) []row {
	by := map[string]float64{}
	for c, n := range cur.clients {
		by[key(c)] += n
	}
	var rows []row
	for name, n := range by {
		rows = append(rows, row{Name: name, order: n, Cells: []number{count(n)}})
	}
	return sortRows(rows)
}
