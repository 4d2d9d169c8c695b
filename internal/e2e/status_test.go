package e2e

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// screenshotDir, when set, makes TestStatusPageInBrowser save the page as
// status-desktop.png and status-phone.png there (make screenshot).
var screenshotDir = flag.String("screenshot", "", "directory where TestStatusPageInBrowser saves PNGs of the status page")

// The User-Agents of the test traffic.
const (
	bundlerOnGitHub = "bundler/2.6.9 rubygems/3.6.9 ruby/3.3.0 (x86_64-pc-linux-gnu) command/install options/ ci/ci,github 0123456789abcdef"
	bundlerOnGitLab = "bundler/2.3.15 rubygems/3.3.15 ruby/3.1.2 (x86_64-pc-linux-gnu) command/install options/ ci/ci,gitlab fedcba9876543210"
	rubygemsUA      = "Ruby, RubyGems/3.3.15 x86_64-linux Ruby/3.1.2 (2022-04-12 patchlevel 20)"
)

// TestStatusPageInBrowser loads the status page in headless Chromium
// after known traffic and checks that every figure it renders equals what
// a scrape of /metrics says, that the gem ranking and the clients are
// those of the traffic, and that non-browser clients still get the plain
// answer at /.
func TestStatusPageInBrowser(t *testing.T) {
	browser := requireChromium(t)
	e := start(t, testupstream.Options{Marshal: noRuby})
	e.up.Publish(testupstream.GemSpec{Name: "rack", Version: "3.0.0"}, nil)
	e.up.Publish(testupstream.GemSpec{Name: "rake", Version: "13.0.0"}, nil)
	traffic := []struct {
		path, ua string
		times    int
	}{
		{"/versions", bundlerOnGitHub, 3},
		{"/info/rack", bundlerOnGitHub, 4},
		{"/info/rake", bundlerOnGitLab, 2},
		{"/gems/rack-3.0.0.gem", bundlerOnGitHub, 2},
		{"/gems/rake-13.0.0.gem", rubygemsUA, 1},
		{"/info/does-not-exist", rubygemsUA, 1},
		{"/no/such/path", "curl/8.5.0", 1},
		{"/api/v1/dependencies", bundlerOnGitLab, 1},
	}
	for _, tr := range traffic {
		for range tr.times {
			e.getAs(tr.path, tr.ua)
		}
	}
	checkPlainRoot(t, e)

	// /metrics is not a counted request, and the page's own request is
	// counted after it renders: the page shows what this scrape does.
	fams := scrape(t, e.proxyURL)
	dom := loadStatusPage(t, browser, e.proxyURL+"/")

	want := map[string]float64{
		"requests-start":          sumFamily(fams, "gemproxy_http_requests_total", nil),
		"lookups-start":           sumFamily(fams, "gemproxy_cache_lookups_total", nil) - sumFamily(fams, "gemproxy_cache_lookups_total", map[string]string{"result": "bypass"}),
		"saved-start":             sumFamily(fams, "gemproxy_http_response_bytes_total", map[string]string{"source": "cache"}),
		"upstream-bytes-start":    sumFamily(fams, "gemproxy_http_response_bytes_total", map[string]string{"source": "upstream"}),
		"upstream-requests-start": sumFamily(fams, "gemproxy_upstream_requests_total", nil),
		"upstream-failures-start": sumFamily(fams, "gemproxy_upstream_requests_total", map[string]string{"code": "5xx"}) + sumFamily(fams, "gemproxy_upstream_requests_total", map[string]string{"code": "error"}),
		"cache-cap":               1 << 30,
	}
	hits := sumFamily(fams, "gemproxy_cache_lookups_total", map[string]string{"result": "hit"}) + sumFamily(fams, "gemproxy_cache_lookups_total", map[string]string{"result": "stale"})
	want["hit-ratio-start"] = hits / want["lookups-start"]
	count, sum := histogramTotals(fams, "gemproxy_upstream_request_duration_seconds")
	want["latency-mean-start"] = sum / count
	if want["requests-start"] != 17 || want["saved-start"] == 0 || hits == 0 {
		t.Fatalf("the traffic did not produce the expected metrics: %v", want)
	}
	// The process is younger than an hour: the last hour is everything.
	for id, v := range want {
		if strings.HasSuffix(id, "-start") {
			want[strings.TrimSuffix(id, "-start")+"-hour"] = v
		}
	}
	for id, v := range want {
		got, ok := dom.IDs[id]
		if !ok {
			t.Errorf("#%s not on the page", id)
			continue
		}
		if g, err := strconv.ParseFloat(got.Value, 64); err != nil || !closeTo(g, v) {
			t.Errorf("#%s = %q (shown %q), /metrics says %v", id, got.Value, got.Text, v)
		}
	}
	if text := dom.IDs["requests-start"].Text; text != "17" {
		t.Errorf("requests since start shown as %q, want 17", text)
	}

	for ep, cells := range dom.Endpoints {
		total := sumFamily(fams, "gemproxy_http_requests_total", map[string]string{"endpoint": ep})
		fourxx := sumFamily(fams, "gemproxy_http_requests_total", map[string]string{"endpoint": ep, "code": "4xx"})
		if len(cells) != 4 || cells[0] != total || cells[1] != total || cells[2] != fourxx {
			t.Errorf("endpoint %s: page %v, /metrics total %v, 4xx %v", ep, cells, total, fourxx)
		}
	}
	if len(dom.Endpoints) != 6 { // versions, info, gem, unknown, dependencies and root
		t.Errorf("endpoints on the page: %v, want the 6 the traffic used", dom.Endpoints)
	}

	wantClients := map[string]float64{"bundler 2.6": 9, "bundler 2.3": 3, "rubygems 3.3": 2, "other": 3}
	checkRows(t, "client", dom.Clients, wantClients)
	for name, n := range wantClients {
		labels := clientLabels(name)
		if got := sumFamily(fams, "gemproxy_client_requests_total", labels); got != n {
			t.Errorf("/metrics client %v = %v, want %v", labels, got, n)
		}
	}
	checkRows(t, "CI", dom.CIs, map[string]float64{"github": 9, "gitlab": 3, "none": 5})
	// Only answers below 400 count: not /info/does-not-exist.
	checkRows(t, "gem", dom.Gems, map[string]float64{"rack": 6, "rake": 3})
	if dom.Circuit != "closed" {
		t.Errorf("circuit shown %q, want closed", dom.Circuit)
	}
}

// requireChromium returns Debian's chromium, skipping the test when it is
// missing (failing under CI).
func requireChromium(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		msg := "chromium not found: apt-get install chromium (make test-deps and .ci/run do) to run the browser tests"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (failing because CI is set)")
		}
		t.Skip(msg)
	}
	return bin
}

// getAs fetches path from gemproxy with User-Agent ua and drops the body.
func (e *env) getAs(path, ua string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.proxyURL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("User-Agent", ua)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
}

// checkPlainRoot checks that GET and HEAD / without text/html in Accept
// get the plain answer RubyGems' probe needs, and counts those requests
// as root requests.
func checkPlainRoot(t *testing.T, e *env) {
	t.Helper()
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		req, _ := http.NewRequest(method, e.proxyURL+"/", nil)
		req.Header.Set("Accept", "*/*")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("%s / with Accept */*: %d %s, want the plain 200", method, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

// scrape reads gemproxy's /metrics.
func scrape(t *testing.T, proxyURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(proxyURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// sumFamily adds the values of family's series whose labels include want.
func sumFamily(fams map[string]*dto.MetricFamily, family string, want map[string]string) float64 {
	total := 0.0
	for _, m := range fams[family].GetMetric() {
		if hasLabels(m, want) {
			total += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return total
}

// hasLabels reports whether m has every label of want.
func hasLabels(m *dto.Metric, want map[string]string) bool {
	found := 0
	for _, l := range m.GetLabel() {
		if v, ok := want[l.GetName()]; ok && v == l.GetValue() {
			found++
		}
	}
	return found == len(want)
}

// histogramTotals adds the sample counts and sums of a histogram family.
func histogramTotals(fams map[string]*dto.MetricFamily, family string) (count, sum float64) {
	for _, m := range fams[family].GetMetric() {
		count += float64(m.GetHistogram().GetSampleCount())
		sum += m.GetHistogram().GetSampleSum()
	}
	return count, sum
}

// closeTo compares two figures summed in different orders.
func closeTo(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}

// clientLabels maps a client row of the page to its metric labels.
func clientLabels(row string) map[string]string {
	kind, version, ok := strings.Cut(row, " ")
	if !ok {
		return map[string]string{"client": kind}
	}
	return map[string]string{"client": kind, "client_version": version}
}

// checkRows compares the rows of one table of the page with want.
func checkRows(t *testing.T, what string, got, want map[string]float64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s rows on the page: %v, want %v", what, got, want)
	}
}

// statusDOM is what loadStatusPage reads from the rendered page.
type statusDOM struct {
	// IDs maps the id of every figure to its text and exact value.
	IDs map[string]struct{ Text, Value string }
	// Endpoints, Clients, CIs and Gems map each row's name to its
	// figures' exact values (one for all but Endpoints).
	Endpoints map[string][]float64
	// Clients, CIs and Gems map each row's name to its count.
	Clients, CIs, Gems map[string]float64
	// Circuit is the circuit state shown.
	Circuit string
}

// readDOM is the script that collects a statusDOM from the page.
const readDOM = `(() => {
  const value = el => parseFloat(el.dataset.value);
  const one = (sel, attr) => Object.fromEntries([...document.querySelectorAll(sel)].map(
    el => [el.dataset[attr], value(el.querySelector('.num'))]));
  return {
    IDs: Object.fromEntries([...document.querySelectorAll('.num[id]')].map(
      el => [el.id, {Text: el.textContent, Value: el.dataset.value}])),
    Endpoints: Object.fromEntries([...document.querySelectorAll('tr[data-endpoint]')].map(
      tr => [tr.dataset.endpoint, [...tr.querySelectorAll('.num')].map(value)])),
    Clients: one('tr[data-client]', 'client'),
    CIs: one('tr[data-ci]', 'ci'),
    Gems: one('li[data-gem]', 'gem'),
    Circuit: document.getElementById('circuit').textContent,
  };
})()`

// loadStatusPage opens url in a fresh headless Chromium (no network but
// loopback is used: every background service is off) and reads the
// page's figures; with -screenshot it also saves the page at desktop and
// phone sizes.
func loadStatusPage(t *testing.T, browser, url string) statusDOM {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s in chromium: %v", url, err)
	}
	dom, err := chromedp.Run(bctx, chromedp.Evaluate[statusDOM](readDOM))
	if err != nil {
		t.Fatalf("reading the page: %v", err)
	}
	if *screenshotDir != "" {
		saveScreenshots(t, bctx, *screenshotDir)
	}
	return dom
}

// saveScreenshots writes the whole page as PNGs at a desktop width and at
// a phone's (390x844 CSS pixels, scale 2, mobile viewport).
func saveScreenshots(t *testing.T, ctx context.Context, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sizes := []struct {
		name string
		view chromedp.Action[chromedp.Void]
	}{
		{"status-desktop.png", chromedp.EmulateViewport(1280, 900)},
		{"status-phone.png", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)},
	}
	for _, s := range sizes {
		if err := chromedp.Do(ctx, s.view); err != nil {
			t.Fatal(err)
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, s.name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
}
