// Package grafana_test checks the gemproxy Grafana dashboard: its shape
// (Grafana's current JSON model, a datasource variable used by every panel,
// job and instance filters) and, above all, that every PromQL query only
// names metrics gemproxy exports, so that a renamed metric or a typo shows
// up here rather than as an empty panel in production.
package grafana_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

// dashboardPath is the dashboard under test, relative to this package.
const dashboardPath = "gemproxy.json"

// exported maps each metric family gemproxy exports to its type. TestMain
// fills it from a scrape of the real binary, built from the parent module
// and run offline on loopback, so the dashboard is checked against what
// gemproxy actually exports.
var exported map[string]string

// TestMain builds gemproxy, scrapes its /metrics once and runs the tests.
func TestMain(m *testing.M) {
	fams, err := scrapeGemproxy()
	if err != nil {
		fmt.Fprintln(os.Stderr, "scraping gemproxy's /metrics:", err)
		os.Exit(1)
	}
	exported = fams
	os.Exit(m.Run())
}

// scrapeGemproxy builds ./cmd/gemproxy of the parent module, starts it in
// offline mode on a loopback port, reads the "# TYPE" lines of /metrics and
// stops it.
func scrapeGemproxy() (map[string]string, error) {
	tmp, err := os.MkdirTemp("", "gemproxy-dashboard")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "gemproxy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/gemproxy")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve", "--offline", "--listen", addr, "--data-dir", filepath.Join(tmp, "data"))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	var body []byte
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no /metrics answer from gemproxy: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fams := map[string]string{}
	for _, line := range strings.Split(string(body), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			fams[f[2]] = f[3]
		}
	}
	if fams["gemproxy_http_requests_total"] != "counter" {
		return nil, fmt.Errorf("scrape lacks gemproxy_http_requests_total:\n%s", body)
	}
	return fams, nil
}

// Dashboard is the part of Grafana's dashboard JSON model the test reads.
type Dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []Panel `json:"panels"`
	Templating    struct {
		List []Variable `json:"list"`
	} `json:"templating"`
}

// Panel is one dashboard panel.
type Panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *Datasource `json:"datasource"`
	GridPos    struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Targets []Target `json:"targets"`
	// Panels are a collapsed row's panels (none expected).
	Panels []Panel `json:"panels"`
}

// Target is one query of a panel.
type Target struct {
	RefID      string      `json:"refId"`
	Expr       string      `json:"expr"`
	Datasource *Datasource `json:"datasource"`
}

// Datasource references a data source.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Variable is a templating variable.
type Variable struct {
	Name       string      `json:"name"`
	Type       string      `json:"type"`
	Query      any         `json:"query"`
	Datasource *Datasource `json:"datasource"`
	Multi      bool        `json:"multi"`
	IncludeAll bool        `json:"includeAll"`
	AllValue   string      `json:"allValue"`
}

func loadDashboard(t *testing.T) *Dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d Dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return &d
}

// exprs returns every panel's queries as "panel title/refId" -> expr.
func exprs(t *testing.T, d *Dashboard) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			key := fmt.Sprintf("panel %d %q/%s", p.ID, p.Title, tg.RefID)
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: empty expr", key)
				continue
			}
			out[key] = tg.Expr
		}
	}
	if len(out) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	return out
}

// promqlCalls are PromQL's functions and aggregation operators: an
// identifier followed by "(" must be one of them.
var promqlCalls = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`
		abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time
		ceil changes clamp clamp_max clamp_min cos cosh count_over_time
		day_of_month day_of_week day_of_year days_in_month deg delta deriv exp
		floor histogram_avg histogram_count histogram_fraction histogram_quantile
		histogram_stddev histogram_stdvar histogram_sum holt_winters double_exponential_smoothing
		hour idelta increase info irate label_join label_replace last_over_time ln log10 log2
		mad_over_time max_over_time min_over_time minute month pi predict_linear
		present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh
		sort sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time
		sum_over_time tan tanh time timestamp vector year
		sum min max avg group stddev stdvar count count_values bottomk topk quantile
		limitk limit_ratio`) {
		promqlCalls[f] = true
	}
}

// promqlKeywords are PromQL's keywords and literals that are not metrics.
var promqlKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
	"group_right": true, "bool": true, "and": true, "or": true, "unless": true,
	"offset": true, "atan2": true, "inf": true, "nan": true, "start": true, "end": true,
}

var (
	// grafanaVar matches $var, ${var} and ${var:format}, including the
	// $__ built-ins.
	grafanaVar = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	// stringLit matches PromQL string literals.
	stringLit = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	// braces and brackets match label matchers and range/subquery windows
	// (string literals are removed first, so they cannot nest).
	braces   = regexp.MustCompile(`\{[^{}]*\}`)
	brackets = regexp.MustCompile(`\[[^\[\]]*\]`)
	// grouping matches the label lists of by/without/on/ignoring/
	// group_left/group_right, which hold label names, not metrics.
	grouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	// number matches numeric literals and durations (0.99, 1e3, 5m, 1h30m).
	number = regexp.MustCompile(`(^|[^\w:])(\d[\w.]*)`)
	// ident matches a PromQL identifier and what follows it.
	ident = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// tokenMetricNames extracts the metric names an expression selects with a
// tokenizer: Grafana variables, strings, label matchers, range windows,
// grouping label lists and numbers are blanked out; of the identifiers
// left, one followed by "(" must be a PromQL function or aggregation, a
// keyword is skipped, and every other one is a metric name.
func tokenMetricNames(expr string) ([]string, error) {
	s := grafanaVar.ReplaceAllString(expr, " ")
	s = stringLit.ReplaceAllString(s, `""`)
	s = braces.ReplaceAllString(s, " ")
	s = brackets.ReplaceAllString(s, " ")
	s = grouping.ReplaceAllString(s, " ")
	s = number.ReplaceAllString(s, "$1 ")
	if strings.ContainsAny(s, "{}[]") {
		return nil, fmt.Errorf("unbalanced braces or brackets in %q", expr)
	}
	names := map[string]bool{}
	for _, loc := range ident.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\r\n")
		switch {
		case strings.HasPrefix(rest, "("):
			if !promqlCalls[word] {
				return nil, fmt.Errorf("unknown PromQL function %q in %q", word, expr)
			}
		case promqlKeywords[strings.ToLower(word)]:
		default:
			names[word] = true
		}
	}
	return slices.Sorted(maps.Keys(names)), nil
}

// family maps a series name to its exported family: the name itself, or
// for a histogram or summary the name without _bucket, _sum or _count.
// ok is false for a name gemproxy does not export.
func family(name string) (fam string, ok bool) {
	if _, ok := exported[name]; ok {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if !found {
			continue
		}
		switch exported[base] {
		case "histogram":
			return base, true
		case "summary":
			if suffix != "_bucket" {
				return base, true
			}
		}
	}
	return "", false
}

// forParser replaces Grafana's variables that stand for durations, so that
// the expression is plain PromQL. $job and $instance only appear inside
// strings, where they are valid as they are.
func forParser(expr string) string {
	return strings.NewReplacer(
		"$__rate_interval", "5m", "${__rate_interval}", "5m",
		"$__interval", "1m", "${__interval}", "1m",
		"$__range", "6h", "${__range}", "6h",
	).Replace(expr)
}

// selectorsOf parses expr with Prometheus's PromQL parser and returns its
// vector selectors, each with the chain of its ancestors.
func selectorsOf(expr string) ([]*parser.VectorSelector, [][]parser.Node, error) {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(forParser(expr))
	if err != nil {
		return nil, nil, err
	}
	var sels []*parser.VectorSelector
	var paths [][]parser.Node
	parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			sels = append(sels, vs)
			paths = append(paths, slices.Clone(path))
		}
		return nil
	})
	return sels, paths, nil
}

// selectorName is a vector selector's metric name, from the name or a
// __name__="..." matcher.
func selectorName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == "__name__" && m.Type.String() == "=" {
			return m.Value
		}
	}
	return ""
}

func TestDashboardMetricsAreExported(t *testing.T) {
	d := loadDashboard(t)
	used := map[string]bool{}
	for key, expr := range exprs(t, d) {
		names, err := tokenMetricNames(expr)
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", key, expr)
		}
		for _, n := range names {
			fam, ok := family(n)
			if !ok {
				t.Errorf("%s: metric %s is not exported by gemproxy (expr %q)", key, n, expr)
				continue
			}
			used[fam] = true
		}

		// Cross-check with the real PromQL parser: the expression must
		// parse, and it must select exactly what the tokenizer found.
		sels, paths, err := selectorsOf(expr)
		if err != nil {
			t.Errorf("%s: invalid PromQL: %v\n%s", key, err, expr)
			continue
		}
		var parsed []string
		for i, vs := range sels {
			name := selectorName(vs)
			if name == "" {
				t.Errorf("%s: selector %s has no metric name", key, vs)
				continue
			}
			parsed = append(parsed, name)
			checkSelector(t, key, vs, name, paths[i])
		}
		slices.Sort(parsed)
		parsed = slices.Compact(parsed)
		if !slices.Equal(parsed, names) {
			t.Errorf("%s: tokenizer found %v, parser found %v in %q", key, names, parsed, expr)
		}
	}

	// Every gemproxy family is on the dashboard somewhere.
	for name := range exported {
		if strings.HasPrefix(name, "gemproxy_") && !used[name] {
			t.Errorf("gemproxy metric %s is on no panel", name)
		}
	}
}

// checkSelector checks one selector in its context: it is filtered by the
// job and instance variables; a counter is read through rate, irate or
// increase; a histogram through its _bucket series inside
// histogram_quantile.
func checkSelector(t *testing.T, key string, vs *parser.VectorSelector, name string, path []parser.Node) {
	t.Helper()
	matchers := map[string]string{}
	for _, m := range vs.LabelMatchers {
		matchers[m.Name] = m.Type.String() + m.Value
	}
	if matchers["job"] != `=~$job` || matchers["instance"] != `=~$instance` {
		t.Errorf("%s: %s must filter job=~\"$job\" and instance=~\"$instance\"", key, vs)
	}
	fam, _ := family(name)
	calls := map[string]bool{}
	for _, n := range path {
		if c, ok := n.(*parser.Call); ok {
			calls[c.Func.Name] = true
		}
	}
	switch exported[fam] {
	case "counter":
		if !calls["rate"] && !calls["irate"] && !calls["increase"] {
			t.Errorf("%s: counter %s is not inside rate/irate/increase", key, name)
		}
	case "histogram":
		if name == fam {
			t.Errorf("%s: histogram %s selected without _bucket/_sum/_count", key, name)
		}
		if strings.HasSuffix(name, "_bucket") && !calls["histogram_quantile"] {
			t.Errorf("%s: %s outside histogram_quantile", key, name)
		}
	}
}

func TestTokenizer(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum by (endpoint) (rate(gemproxy_http_requests_total{job=~"$job", code="5xx"}[$__rate_interval]))`,
			[]string{"gemproxy_http_requests_total"}},
		{`histogram_quantile(0.99, sum by (le, endpoint) (rate(gemproxy_upstream_request_duration_seconds_bucket[5m])))`,
			[]string{"gemproxy_upstream_request_duration_seconds_bucket"}},
		{`sum(rate(a_total[1h30m] offset 5m)) / on (instance) group_left (version) b_info > bool 0.5`,
			[]string{"a_total", "b_info"}},
		{"label_replace(up{job=\"a\"}, \"dst\", \"$1\", 'src', `(.*)`) or vector(0)",
			[]string{"up"}},
		{`count by (version) (gemproxy_build_info{instance=~"${instance:regex}"}) unless ignoring(x) c`,
			[]string{"c", "gemproxy_build_info"}},
		{`max_over_time(x[1h:5m]) * 1e3 + 2`, []string{"x"}},
	} {
		got, err := tokenMetricNames(tc.expr)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("tokenMetricNames(%q) = %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
	for _, bad := range []string{`rat(x[5m])`, `sum(x{a="b"`} {
		if got, err := tokenMetricNames(bad); err == nil {
			t.Errorf("tokenMetricNames(%q) = %v, want an error", bad, got)
		}
	}
	for name, want := range map[string]bool{
		"gemproxy_http_request_duration_seconds_bucket": true,
		"gemproxy_http_request_duration_seconds_count":  true,
		"gemproxy_cache_lookups_total":                  true,
		"gemproxy_cache_lookups_total_count":            false,
		"go_gc_duration_seconds_sum":                    true,
		"go_gc_duration_seconds_bucket":                 false,
		"gemproxy_cache_hits_total":                     false,
	} {
		if _, ok := family(name); ok != want {
			t.Errorf("family(%q) ok = %v, want %v", name, ok, want)
		}
	}
}

func TestDashboardModel(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 39 {
		t.Errorf("schemaVersion = %d, want 39 or later", d.SchemaVersion)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both needed for provisioning", d.UID, d.Title)
	}

	vars := map[string]Variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if ds, ok := vars["datasource"]; !ok || ds.Type != "datasource" || ds.Query != "prometheus" {
		t.Errorf("want a variable datasource of type datasource, query prometheus; got %+v", ds)
	}
	for _, name := range []string{"job", "instance"} {
		v, ok := vars[name]
		if !ok || v.Type != "query" || v.Datasource == nil || v.Datasource.UID != "${datasource}" {
			t.Errorf("want a query variable %s on ${datasource}; got %+v", name, v)
			continue
		}
		if !v.Multi || !v.IncludeAll || v.AllValue != ".*" {
			t.Errorf("variable %s: want multi, include all with allValue .*; got %+v", name, v)
		}
		q, _ := json.Marshal(v.Query)
		if !strings.Contains(string(q), "gemproxy_build_info") {
			t.Errorf("variable %s: query %s does not look up gemproxy_build_info", name, q)
		}
	}

	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]int{}
	for _, p := range d.Panels {
		if len(p.Panels) > 0 {
			t.Errorf("panel %d %q: nested panels (collapsed rows) are not expected", p.ID, p.Title)
		}
		switch p.Type {
		case "timeseries", "stat", "gauge":
		default:
			t.Errorf("panel %d %q: type %q, want timeseries, stat or gauge", p.ID, p.Title, p.Type)
		}
		if p.Title == "" {
			t.Errorf("panel %d has no title", p.ID)
		}
		if p.ID <= 0 || ids[p.ID] {
			t.Errorf("panel %q: id %d missing or repeated", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %d %q: datasource %+v, want prometheus ${datasource}", p.ID, p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q: no queries", p.ID, p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %d %q: refId %q missing or repeated", p.ID, p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && (tg.Datasource.Type != "prometheus" || tg.Datasource.UID != "${datasource}") {
				t.Errorf("panel %d %q/%s: datasource %+v, want prometheus ${datasource}", p.ID, p.Title, tg.RefID, tg.Datasource)
			}
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("panel %d %q: gridPos %+v outside the 24-column grid", p.ID, p.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panel %d %q overlaps panel %d at (%d,%d)", p.ID, p.Title, other, x, y)
					y, x = g.Y+g.H, g.X+g.W // report once
				}
				taken[cell{x, y}] = p.ID
			}
		}
	}
}

// TestDashboardCoversTheBrief checks that each topic the dashboard is for
// has a panel whose queries use the metric that answers it.
func TestDashboardCoversTheBrief(t *testing.T) {
	d := loadDashboard(t)
	for _, want := range []struct{ topic, pattern string }{
		{"request rate by endpoint", `sum by \(endpoint\) \(rate\(gemproxy_http_requests_total`},
		{"5xx error ratio", `code="5xx"`},
		{"cache hit ratio excluding bypass", `result!="bypass"`},
		{"upstream p50", `histogram_quantile\(0\.5, sum by \(le\) \(rate\(gemproxy_upstream_request_duration_seconds_bucket`},
		{"upstream p99", `histogram_quantile\(0\.99, sum by \(le\) \(rate\(gemproxy_upstream_request_duration_seconds_bucket`},
		{"bytes from cache vs upstream", `sum by \(source\) \(rate\(gemproxy_http_response_bytes_total`},
		{"cache size by class", `sum by \(class\) \(gemproxy_cache_size_bytes`},
		{"cache entries by class", `sum by \(class\) \(gemproxy_cache_entries`},
		{"evictions rate", `rate\(gemproxy_cache_evictions_total`},
		{"coalesced lookups", `result="coalesced"`},
		{"fill waiters", `gemproxy_cache_fill_waiters`},
		{"circuit breaker", `gemproxy_upstream_circuit_state`},
		{"compact-index refresh paths", `sum by \(path\) \(rate\(gemproxy_compactindex_refreshes_total`},
		{"compact-index refresh bytes", `sum by \(path\) \(rate\(gemproxy_compactindex_refresh_bytes_total`},
		{"upstream in flight", `gemproxy_upstream_in_flight_requests`},
		{"checksum failures", `gemproxy_cache_checksum_failures_total`},
		{"shared-store requests by op and result", `sum by \(op, result\) \(rate\(gemproxy_shared_store_requests_total`},
		{"shared-store bytes", `sum by \(op\) \(rate\(gemproxy_shared_store_bytes_total`},
		{"shared-store latency", `gemproxy_shared_store_request_duration_seconds_bucket`},
		{"fleet-coalesced waits", `gemproxy_shared_store_coalesced_waits_total`},
		{"corrupt shared objects replaced", `rate\(gemproxy_shared_store_corrupt_replaced_total`},
		{"fleet /versions generation", `gemproxy_shared_store_versions_generation`},
		{"fleet /versions publications and adoptions", `sum by \(event\) \(rate\(gemproxy_shared_store_versions_total`},
	} {
		re := regexp.MustCompile(want.pattern)
		found := false
		for _, expr := range exprs(t, d) {
			found = found || re.MatchString(expr)
		}
		if !found {
			t.Errorf("no query for %s (pattern %s)", want.topic, want.pattern)
		}
	}
}
