// Command report turns the raw measurements of bench/run.sh into the
// Markdown report printed at the end of `make bench` and saved as
// bench/results/latest.md: the warm-hit table (gemproxy against nginx, with
// ratios and PASS/FAIL per target), cold coalescing, memory, per-round
// figures and the machine.
//
// Inputs, all in -dir (bench/tmp/results):
//
//	warm.txt         one line per wrk run: key=value tokens (row, server,
//	                 round, cpu_ticks, clk_tck and the BENCHRESULT fields)
//	verify.txt       one line per row and server: the answer checked with curl
//	latency-base.txt one line per latency row: the row id and nginx's
//	                 saturated requests/s the loads are shares of
//	latency-ROW-SERVER-PCT.json  openloop results at PCT% of that rate
//	cold-*.json      coldload results (gemproxy-1, gemproxy-N, nginx-1, nginx-N)
//	mem-get.json     coldload: concurrent downloads of the 50 MB gem right
//	                 after gemproxy-N, in the same process, with RSS
//	mem-push.json    coldload: a large push streamed through, same process
//	warm-upstream.json  upstream requests during the warm runs
//	env.txt          key=value: parameters and tool versions
//
// and -manifest (the bench upstream's description of its content).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// row is one warm-hit benchmark row.
type row struct {
	id, label string
	// minRatio is the least gemproxy/nginx requests/s ratio that passes.
	minRatio float64
}

// rows lists the warm rows in table order; bench/run.sh uses the same ids.
var rows = []row{
	{"info_small", "`/info/NAME` (small, %SMALL_INFO_BYTES% B)", 1.0},
	{"api_json", "`/api/v1/gems/NAME.json` (%API_BYTES% B)", 1.0},
	{"versions_206", "`/versions` Range tail, stale ETag → 206 (%VERSIONS_TAIL_BYTES% B of %VERSIONS_BYTES% B)", 1.0},
	{"versions_304", "`/versions` Range tail, matching ETag → 304", 1.0},
	{"gem_1m", "`/gems/NAME.gem` 1 MiB (%GEM1M_BYTES% B)", 0.9},
}

// run is one wrk run.
type run struct {
	row, server string
	round       int
	rps         float64
	p50, p99    float64 // microseconds
	requests    float64
	cpuSec      float64 // server CPU seconds (user+system) during the run
	clientSec   float64 // wrk CPU seconds
	attempts    int     // wrk runs made (disturbed runs are repeated; the last is kept)
	otherPct    float64 // CPU used by other processes (or stolen), % of the machine; -1 unknown
	errors      float64 // wrk errors of any kind, non-2xx/3xx included
}

func main() {
	dir := flag.String("dir", "bench/tmp/results", "directory of the raw results")
	manifestPath := flag.String("manifest", "bench/tmp/manifest.env", "bench upstream manifest")
	flag.Parse()
	man := readKV(*manifestPath, "'")
	env := readKV(filepath.Join(*dir, "env.txt"), "")
	runs := readRuns(filepath.Join(*dir, "warm.txt"))
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	failures := report(w, *dir, man, env, runs)
	w.Flush()
	if failures > 0 && os.Getenv("BENCH_STRICT") == "1" {
		os.Exit(1)
	}
}

// report writes the whole report and returns the number of FAILs.
func report(w io.Writer, dir string, man, env map[string]string, runs []run) int {
	fails := 0
	pf := func(ok bool) string {
		if ok {
			return "PASS"
		}
		fails++
		return "**FAIL**"
	}
	fmt.Fprintf(w, "# gemproxy vs nginx: benchmark results\n\n")
	fmt.Fprintf(w, "gemproxy %s, run %s on %s. Everything on loopback; client, servers and upstream share the machine.\n\n",
		env["revision"], env["date"], machine(env))
	if busy, _ := strconv.Atoi(env["busy_before"]); busy > 15 {
		fmt.Fprintf(w, "> **Warning:** the machine was %d%% busy with other processes just before the run (load average %s at start, %s at the end): the figures are skewed.\n\n",
			busy, env["load_start"], env["load_end"])
	} else {
		fmt.Fprintf(w, "Machine %s%% busy before the run; load average %s at start, %s at the end.\n\n", env["busy_before"], env["load_start"], env["load_end"])
	}

	fmt.Fprintf(w, "## Warm hits\n\n")
	fmt.Fprintf(w, "wrk %s, %s threads, %s connections, %s per run; runs alternate gemproxy, nginx per row, %s rounds; "+
		"figures are the **median of the rounds** (requests/s, p50 and p99 each). Both servers hold every object fresh for 1 h "+
		"(gemproxy `ttl` 1h in every `[class.*]`; nginx `proxy_cache_valid 200 1h` with upstream Cache-Control ignored), so every request is a hit "+
		"(upstream requests during the warm runs: %s).\n\n",
		env["wrk_version"], env["threads"], env["connections"], env["duration"], env["rounds"], upstreamDuringWarm(dir))
	disturbed := 0
	worst := 0.0
	for _, r := range runs {
		if r.otherPct > disturbedPct {
			disturbed++
		}
		worst = max(worst, r.otherPct)
	}
	if disturbed > 0 {
		fmt.Fprintf(w, "> **Warning:** %d of %d runs were disturbed: other processes (or the hypervisor) used more than %.0f%% of the machine's CPU "+
			"during them (worst %.0f%%); see \"other CPU\" in the per-round figures. Re-run on a quiet machine before trusting the ratios.\n\n",
			disturbed, len(runs), disturbedPct, worst)
	}
	fmt.Fprintln(w, "| request | gemproxy req/s | nginx req/s | ratio | gemproxy p50 | nginx p50 | gemproxy p99 | nginx p99 | target | result |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
	type agg struct{ rps, p50, p99, cpuPerReq float64 }
	med := func(id, server string) (agg, bool) {
		var rps, p50, p99, cpu []float64
		errs := 0.0
		for _, r := range runs {
			if r.row == id && r.server == server {
				rps, p50, p99 = append(rps, r.rps), append(p50, r.p50), append(p99, r.p99)
				if r.requests > 0 {
					cpu = append(cpu, r.cpuSec/r.requests*1e6)
				}
				errs += r.errors
			}
		}
		if len(rps) == 0 || errs > 0 {
			return agg{}, false
		}
		return agg{median(rps), median(p50), median(p99), median(cpu)}, true
	}
	type cpuRow struct {
		label  string
		gp, ng agg
	}
	var cpuRows []cpuRow
	for _, r := range rows {
		label := expand(r.label, man)
		g, okG := med(r.id, "gemproxy")
		n, okN := med(r.id, "nginx")
		if !okG || !okN {
			fmt.Fprintf(w, "| %s | %s | %s | | | | | | ≥ %.1fx, p99 ≤ nginx | %s |\n", label, validity(okG), validity(okN), r.minRatio, pf(false))
			continue
		}
		ratio := g.rps / n.rps
		ok := ratio >= r.minRatio && g.p99 <= n.p99
		fmt.Fprintf(w, "| %s | %.0f | %.0f | %.2fx | %s | %s | %s | %s | ≥ %.1fx, p99 ≤ nginx | %s |\n",
			label, g.rps, n.rps, ratio, us(g.p50), us(n.p50), us(g.p99), us(n.p99), r.minRatio, pf(ok))
		cpuRows = append(cpuRows, cpuRow{label, g, n})
	}
	fmt.Fprintf(w, "\nRequest details: %s.\n", requestDetails(man))
	if len(cpuRows) > 0 {
		fmt.Fprintf(w, "\nServer CPU per request (user+system time of the server processes during the run ÷ requests; median of rounds; "+
			"wrk runs on the same cores):\n\n")
		fmt.Fprintln(w, "| request | gemproxy µs CPU/req | nginx µs CPU/req | ratio |")
		fmt.Fprintln(w, "|---|---:|---:|---:|")
		for _, c := range cpuRows {
			fmt.Fprintf(w, "| %s | %.1f | %.1f | %.2fx |\n", c.label, c.gp.cpuPerReq, c.ng.cpuPerReq, c.gp.cpuPerReq/c.ng.cpuPerReq)
		}
	}

	fails += latencyReport(w, dir, env, man)

	fmt.Fprintf(w, "\n## Cold coalescing\n\n")
	gp1, gpN := readCold(dir, "cold-gemproxy-1.json"), readCold(dir, "cold-gemproxy-N.json")
	ng1, ngN := readCold(dir, "cold-nginx-1.json"), readCold(dir, "cold-nginx-N.json")
	gemPath, infoPath := man["GEM50M_PATH"], man["GEM50M_INFO_PATH"]
	fmt.Fprintf(w, "One uncached %s (%s B) requested by N clients at once (each on its own pre-opened connection, released together "+
		"by a barrier), upstream latency %s per request. Times are from the release to the first / last body byte of each client. "+
		"The single-client baseline runs first, on a fresh data directory with the same latency; the N-client run on another fresh one. "+
		"\"Leader\" is the first client to finish.\n\n", "`"+gemPath+"`", man["GEM50M_BYTES"], env["cold_latency"])
	fmt.Fprintln(w, "| server | clients | upstream requests (gem / info) | TTFB min / median / max | TTLB min / median / p90 / max | slowest ÷ leader | median ÷ single client |")
	fmt.Fprintln(w, "|---|---:|---|---|---|---:|---:|")
	coldRow := func(server string, one, many *coldResult) {
		for _, c := range []*coldResult{one, many} {
			if c == nil {
				continue
			}
			spread, vsOne := "", ""
			if c.OK > 0 && c.TTLB.Min > 0 {
				spread = fmt.Sprintf("%.2fx", c.TTLB.Max/c.TTLB.Min)
			}
			if one != nil && one.OK > 0 && c.OK > 0 {
				vsOne = fmt.Sprintf("%.2fx", c.TTLB.Median/one.TTLB.Median)
			}
			fmt.Fprintf(w, "| %s | %d (%d ok) | %d / %d | %s / %s / %s | %s / %s / %s / %s | %s | %s |\n",
				server, c.Clients, c.OK, c.UpstreamDelta[gemPath], c.UpstreamDelta[infoPath],
				msf(c.TTFB.Min), msf(c.TTFB.Median), msf(c.TTFB.Max),
				msf(c.TTLB.Min), msf(c.TTLB.Median), msf(c.TTLB.P90), msf(c.TTLB.Max), spread, vsOne)
		}
	}
	coldRow("gemproxy", gp1, gpN)
	coldRow("nginx (reference)", ng1, ngN)
	fmt.Fprintln(w)
	coldPairs(w, dir, gpN, ngN)
	fmt.Fprintln(w, "| target | measured | result |")
	fmt.Fprintln(w, "|---|---|---|")
	if gpN != nil {
		up := gpN.UpstreamDelta[gemPath]
		fmt.Fprintf(w, "| exactly 1 upstream request for %d concurrent misses (all clients served) | %d gem request(s), %d/%d clients ok | %s |\n",
			gpN.Clients, up, gpN.OK, gpN.Clients, pf(up == 1 && gpN.OK == gpN.Clients))
		spread := 0.0
		if gpN.TTLB.Min > 0 {
			spread = gpN.TTLB.Max / gpN.TTLB.Min
		}
		fmt.Fprintf(w, "| followers finish within 10%% of the leader (slowest TTLB ≤ 1.10 × first) | %.2fx (%s vs %s) | %s |\n",
			spread, msf(gpN.TTLB.Max), msf(gpN.TTLB.Min), pf(gpN.OK == gpN.Clients && spread > 0 && spread <= 1.10))
		if gpN.TTFB.Min > 0 {
			fmt.Fprintf(w, "| (info) first-byte spread: slowest TTFB ÷ first | %.2fx (%s vs %s) | |\n", gpN.TTFB.Max/gpN.TTFB.Min, msf(gpN.TTFB.Max), msf(gpN.TTFB.Min))
		}
		if gpN.Memory != nil {
			fmt.Fprintf(w, "| (info) gemproxy peak RSS during the cold fill and fan-out | %s (anon %s, file-backed %s), idle %s | |\n",
				mib(gpN.Memory.PeakKB), mib(gpN.Memory.AnonKB), mib(gpN.Memory.FileKB), mib(gpN.Memory.IdleRSSKB))
		}
	} else {
		fmt.Fprintf(w, "| cold coalescing | not measured | %s |\n", pf(false))
	}
	if gp1 != nil && gp1.Memory != nil {
		fmt.Fprintf(w, "| (info) gemproxy peak RSS, single-client cold fill | %s (anon %s, file-backed %s), idle %s | |\n",
			mib(gp1.Memory.PeakKB), mib(gp1.Memory.AnonKB), mib(gp1.Memory.FileKB), mib(gp1.Memory.IdleRSSKB))
	}

	fmt.Fprintf(w, "\n## Memory\n\n")
	fmt.Fprintf(w, "Memory as the kubelet counts it, in one gemproxy process: the %d-client cold fill and fan-out above, then right after "+
		"(1 s later) the concurrent downloads of the cached gem, then the push. Idle = RSS just before the load; peak = VmHWM "+
		"(reset through /proc/PID/clear_refs before the load) or the highest VmRSS sampled every 10 ms, whichever is higher. "+
		"RSS includes file-backed pages (the binary, the mmapped bbolt file); the anonymous part (heap, stacks) and the "+
		"file-backed part are the highest sampled RssAnon and RssFile.\n\n", clientsOf(gpN))
	fmt.Fprintln(w, "| scenario | idle RSS | peak RSS | growth | peak anon | peak file-backed | check | target | result |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---|---|---|")
	memRow := func(name string, c *coldResult, check string) {
		if c == nil || c.Memory == nil {
			fmt.Fprintf(w, "| %s | | | | | | not measured | peak < 100 MiB | %s |\n", name, pf(false))
			return
		}
		m := c.Memory
		ok := m.PeakKB < 100*1024 && c.OK == c.Clients
		fmt.Fprintf(w, "| %s | %s | %s | +%s | %s | %s | %s | peak < 100 MiB | %s |\n",
			name, mib(m.IdleRSSKB), mib(m.PeakKB), mib(m.GrowthKB), mib(m.AnonKB), mib(m.FileKB), check, pf(ok))
	}
	if gpN != nil {
		memRow(fmt.Sprintf("%d concurrent cold clients of the %s B gem (fill and fan-out)", gpN.Clients, man["GEM50M_BYTES"]), gpN,
			fmt.Sprintf("%d/%d clients got all bytes, %d upstream request(s)", gpN.OK, gpN.Clients, gpN.UpstreamDelta[gemPath]))
	} else {
		memRow("concurrent cold clients of the 50 MB gem", nil, "")
	}
	mg := readCold(dir, "mem-get.json")
	if mg != nil {
		memRow(fmt.Sprintf("then %d clients download the cached gem at once", mg.Clients), mg,
			fmt.Sprintf("%d/%d clients got all bytes, TTLB median %s", mg.OK, mg.Clients, msf(mg.TTLB.Median)))
	} else {
		memRow("concurrent downloads of the 50 MB gem", nil, "")
	}
	mp := readCold(dir, "mem-push.json")
	if mp != nil {
		got := int64(0)
		for _, v := range mp.UpstreamBodyBytes {
			got += v
		}
		memRow(fmt.Sprintf("then a %s MiB push (POST /api/v1/gems) streams through", strconv.FormatInt(mp.BytesPerClient>>20, 10)), mp,
			fmt.Sprintf("upstream received %d of %d body bytes, answered %s in %s", got, mp.BytesPerClient, statuses(mp.Statuses), msf(mp.WallMS)))
	} else {
		memRow("a large push streams through", nil, "")
	}

	fmt.Fprintf(w, "\n## Per-round figures\n\n")
	fmt.Fprintf(w, "\"other CPU\" is the machine's busy time used by neither the server nor wrk (other processes, the upstream, "+
		"hypervisor steal), as a share of all CPU time during the run; above %.0f%% the run was disturbed and was repeated "+
		"(up to 3 attempts while time allows; \"attempts\" shows how many, the last one is kept).\n\n", disturbedPct)
	fmt.Fprintln(w, "| request | server | round | req/s | p50 | p99 | server CPU s | wrk CPU s | other CPU | attempts | wrk errors |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		for _, x := range runs {
			if x.row == r.id {
				fmt.Fprintf(w, "| %s | %s | %d | %.0f | %s | %s | %.2f | %.2f | %s | %d | %.0f |\n",
					r.id, x.server, x.round, x.rps, us(x.p50), us(x.p99), x.cpuSec, x.clientSec, pct(x.otherPct), x.attempts, x.errors)
			}
		}
	}
	fmt.Fprintf(w, "\nVerification before the runs (curl, same headers as wrk): %s\n", verification(dir))
	fmt.Fprintf(w, "\nUpstream content: %s gems, %s versions published; /versions %s B; /info sizes %s.\n",
		man["UP_GEMS"], man["UP_VERSIONS_PUBLISHED"], man["VERSIONS_BYTES"], man["UP_INFO_SIZES"])
	fmt.Fprintf(w, "\nResult: %d target(s) failed.\n", fails)
	return fails
}

// machine describes the machine from env.txt and /proc.
func machine(env map[string]string) string {
	model := env["cpu_model"]
	if model == "" {
		model = "unknown CPU"
	}
	return fmt.Sprintf("%s cores (%s), %s RAM, %s; %s, %s, %s", env["nproc"], model, env["mem"], env["os"],
		env["go_version"], env["nginx_version"], "wrk "+env["wrk_version"])
}

// requestDetails lists the exact requests of the rows.
func requestDetails(m map[string]string) string {
	oldLen, _ := strconv.Atoi(m["VERSIONS_OLD_BYTES"])
	curLen, _ := strconv.Atoi(m["VERSIONS_BYTES"])
	return fmt.Sprintf("`GET %s`; `GET %s`; 206 row: `GET /versions` with `Range: bytes=%d-` and `If-None-Match: %s` "+
		"(a Bundler client whose copy lacks the last published line, %d of %d bytes); 304 row: `Range: bytes=%d-` with the current "+
		"`If-None-Match: %s`; `GET %s`",
		m["SMALL_INFO_PATH"], m["API_PATH"], oldLen-1, m["VERSIONS_OLD_ETAG"], oldLen, curLen, curLen-1, m["VERSIONS_ETAG"], m["GEM1M_PATH"])
}

// validity renders a missing or invalid aggregate.
func validity(ok bool) string {
	if ok {
		return ""
	}
	return "invalid (errors or no run)"
}

// expand replaces %KEY% with manifest values.
func expand(s string, m map[string]string) string {
	for k, v := range m {
		s = strings.ReplaceAll(s, "%"+k+"%", v)
	}
	return s
}

// readKV reads KEY=VALUE lines (values optionally quoted with quote).
func readKV(path, quote string) map[string]string {
	out := map[string]string{}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(strings.TrimSpace(k), "#") {
			continue
		}
		if quote != "" {
			v = strings.TrimSuffix(strings.TrimPrefix(v, quote), quote)
		}
		out[strings.TrimSpace(k)] = v
	}
	return out
}

// readRuns parses warm.txt.
func readRuns(path string) []run {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []run
	for _, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		kv := map[string]string{}
		for _, tok := range strings.Fields(line) {
			if k, v, ok := strings.Cut(tok, "="); ok {
				kv[k] = v
			}
		}
		f := func(k string) float64 { x, _ := strconv.ParseFloat(kv[k], 64); return x }
		r := run{row: kv["row"], server: kv["server"], rps: f("rps"), p50: f("p50_us"), p99: f("p99_us"), requests: f("requests")}
		r.round = int(f("round"))
		r.attempts = max(int(f("attempts")), 1)
		r.otherPct = -1
		if tck := f("clk_tck"); tck > 0 {
			r.cpuSec = f("cpu_ticks") / tck
			r.clientSec = f("client_ticks") / tck
		}
		if mt := f("machine_ticks"); mt > 0 {
			// Rounded to whole percents, as bench/run.sh does when it
			// decides to repeat a run.
			r.otherPct = math.Round(max(f("other_ticks"), 0) / mt * 100)
		}
		r.errors = f("err_connect") + f("err_read") + f("err_write") + f("err_status") + f("err_timeout")
		if _, ok := kv["rps"]; !ok {
			r.errors++ // wrk printed no result
		}
		out = append(out, r)
	}
	return out
}

// coldResult mirrors coldload's JSON.
type coldResult struct {
	Clients  int            `json:"clients"`
	OK       int            `json:"ok"`
	Statuses map[string]int `json:"statuses"`
	TTFB     struct {
		Min, Median, P90, Max float64
	} `json:"ttfb_ms"`
	TTLB struct {
		Min, Median, P90, Max float64
	} `json:"ttlb_ms"`
	WallMS            float64          `json:"wall_ms"`
	BytesPerClient    int64            `json:"bytes_per_client"`
	UpstreamDelta     map[string]int   `json:"upstream_delta"`
	UpstreamBodyBytes map[string]int64 `json:"upstream_body_bytes"`
	Memory            *struct {
		IdleRSSKB int64 `json:"idle_rss_kb"`
		PeakKB    int64 `json:"peak_kb"`
		GrowthKB  int64 `json:"growth_kb"`
		AnonKB    int64 `json:"peak_anon_kb"`
		FileKB    int64 `json:"peak_file_kb"`
	} `json:"memory"`
}

// coldPairs writes the table of the alternating N-client cold runs
// (BENCH_COLD_PAIRS), the first pair being the one above (gpN, ngN), with
// gemproxy's median and slowest last byte over nginx's in each pair and
// the median of those ratios; nothing when there are no more pairs.
func coldPairs(w io.Writer, dir string, gpN, ngN *coldResult) {
	pairs := [][2]*coldResult{{gpN, ngN}}
	for i := 1; ; i++ {
		gp, ng := readCold(dir, fmt.Sprintf("cold-pair-%d-gemproxy.json", i)), readCold(dir, fmt.Sprintf("cold-pair-%d-nginx.json", i))
		if gp == nil || ng == nil {
			break
		}
		pairs = append(pairs, [2]*coldResult{gp, ng})
	}
	if len(pairs) < 2 || gpN == nil || ngN == nil {
		return
	}
	fmt.Fprintf(w, "The %d-client run again, in alternating pairs (`BENCH_COLD_PAIRS`), each on fresh data directories; pair 1 is the run above:\n\n", gpN.Clients)
	fmt.Fprintln(w, "| pair | gemproxy TTLB median / max | nginx TTLB median / max | median ratio | slowest ratio |")
	fmt.Fprintln(w, "|---:|---|---|---:|---:|")
	var medians, slowest []float64
	for i, p := range pairs {
		gp, ng := p[0], p[1]
		if gp.OK != gp.Clients || ng.OK != ng.Clients || ng.TTLB.Median <= 0 || ng.TTLB.Max <= 0 {
			fmt.Fprintf(w, "| %d | %d/%d ok | %d/%d ok | | |\n", i+1, gp.OK, gp.Clients, ng.OK, ng.Clients)
			continue
		}
		m, x := gp.TTLB.Median/ng.TTLB.Median, gp.TTLB.Max/ng.TTLB.Max
		medians, slowest = append(medians, m), append(slowest, x)
		fmt.Fprintf(w, "| %d | %s / %s | %s / %s | %.2fx | %.2fx |\n", i+1,
			msf(gp.TTLB.Median), msf(gp.TTLB.Max), msf(ng.TTLB.Median), msf(ng.TTLB.Max), m, x)
	}
	if len(medians) > 0 {
		fmt.Fprintf(w, "\nOver %d pairs: median ratio %.2fx (at or below 1.0x in %d), slowest ratio %.2fx (at or below 1.0x in %d).\n\n",
			len(medians), median(medians), atMostOne(medians), median(slowest), atMostOne(slowest))
	}
}

// atMostOne counts the ratios that are 1.0 or less.
func atMostOne(ratios []float64) int {
	n := 0
	for _, r := range ratios {
		if r <= 1 {
			n++
		}
	}
	return n
}

// clientsOf is the client count of c, or 0.
func clientsOf(c *coldResult) int {
	if c == nil {
		return 0
	}
	return c.Clients
}

// latencyRun is one openloop result.
type latencyRun struct {
	Rate     float64 `json:"rate"`
	Requests int64   `json:"requests"`
	Errors   int64   `json:"errors"`
	Achieved float64 `json:"achieved_rate"`
	Latency  struct {
		P50  float64 `json:"p50"`
		P99  float64 `json:"p99"`
		P999 float64 `json:"p99_9"`
	} `json:"latency_us"`
	Lag struct {
		P99  float64 `json:"p99"`
		P999 float64 `json:"p99_9"`
	} `json:"send_lag_us"`
	// Response is measured from the write of each request (absent from
	// results of openloop before it recorded it: zero).
	Response struct {
		P99  float64 `json:"p99"`
		P999 float64 `json:"p99_9"`
	} `json:"response_us"`
	CPU float64 `json:"cpu_s"`
}

// readLatency reads the openloop results of rounds 1 to rounds of one
// point, or nil when one of them is missing or empty.
func readLatency(dir, row, server, pct string, rounds int) []*latencyRun {
	var runs []*latencyRun
	for round := 1; round <= rounds; round++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("latency-%s-%s-%s-r%d.json", row, server, pct, round)))
		if err != nil {
			return nil
		}
		var l latencyRun
		if json.Unmarshal(b, &l) != nil || l.Requests == 0 {
			return nil
		}
		runs = append(runs, &l)
	}
	return runs
}

// medianRun is one result whose figures are the medians of runs' (errors:
// their sum).
func medianRun(runs []*latencyRun) *latencyRun {
	pick := func(f func(*latencyRun) float64) float64 {
		xs := make([]float64, len(runs))
		for i, r := range runs {
			xs[i] = f(r)
		}
		return median(xs)
	}
	m := *runs[0]
	m.Latency.P50 = pick(func(r *latencyRun) float64 { return r.Latency.P50 })
	m.Latency.P99 = pick(func(r *latencyRun) float64 { return r.Latency.P99 })
	m.Latency.P999 = pick(func(r *latencyRun) float64 { return r.Latency.P999 })
	m.Lag.P99 = pick(func(r *latencyRun) float64 { return r.Lag.P99 })
	m.Lag.P999 = pick(func(r *latencyRun) float64 { return r.Lag.P999 })
	m.Response.P99 = pick(func(r *latencyRun) float64 { return r.Response.P99 })
	m.Response.P999 = pick(func(r *latencyRun) float64 { return r.Response.P999 })
	m.CPU = pick(func(r *latencyRun) float64 { return r.CPU })
	m.Errors = 0
	for _, r := range runs {
		m.Errors += r.Errors
	}
	return &m
}

// latencyReport writes the steady-load section from latency-*.json and
// returns its number of FAILs; nothing when the phase did not run.
func latencyReport(w io.Writer, dir string, env, man map[string]string) int {
	base := readKV(filepath.Join(dir, "latency-base.txt"), "")
	if len(base) == 0 {
		return 0
	}
	fails := 0
	rounds, err := strconv.Atoi(env["lat_rounds"])
	if err != nil || rounds < 1 {
		rounds = 1
	}
	fmt.Fprintf(w, "\n## Latency at a steady load\n\n")
	fmt.Fprintf(w, "bench/openloop: a constant arrival rate for %s per run (after 1 s of warm-up), each request's latency counted "+
		"from its intended send time (no coordinated omission), persistent connections (rate/500, 16 to 512); the load is a share of "+
		"nginx's saturated requests/s on the row (median of its wrk runs above). Runs alternate gemproxy, nginx. \"send lag\" is how "+
		"late the generator wrote requests (its own delay, shared by both servers), \"gen CPU\" its CPU time.%s\n\n", env["lat_duration"],
		roundsNote(rounds))
	fmt.Fprintln(w, "| request | load | req/s | gemproxy p50 / p99 / p99.9 | nginx p50 / p99 / p99.9 | send lag p99 / p99.9 (gp; nginx) | gen CPU s (gp / nginx) | target | result |")
	fmt.Fprintln(w, "|---|---:|---:|---|---|---|---|---|---|")
	var perRound, responses strings.Builder
	for _, r := range rows {
		b, ok := base[r.id]
		if !ok {
			continue
		}
		label := expand(r.label, man)
		baseRate, _ := strconv.Atoi(b)
		for _, pct := range strings.Fields(env["lat_loads"]) {
			gr, nr := readLatency(dir, r.id, "gemproxy", pct, rounds), readLatency(dir, r.id, "nginx", pct, rounds)
			p, _ := strconv.Atoi(pct)
			if gr == nil || nr == nil {
				fmt.Fprintf(w, "| %s | %s%% of %d | %d | %s | %s | | | p99, p99.9 ≤ nginx | %s |\n", label, pct, baseRate, baseRate*p/100,
					validity(gr != nil), validity(nr != nil), failed(&fails))
				continue
			}
			for i := range gr {
				fmt.Fprintf(&perRound, "| %s | %s%% | %d | %s / %s | %s / %s | %s |\n", label, pct, i+1,
					us(gr[i].Latency.P99), us(gr[i].Latency.P999), us(nr[i].Latency.P99), us(nr[i].Latency.P999), lags(gr[i], nr[i]))
			}
			g, n := medianRun(gr), medianRun(nr)
			if g.Response.P99 > 0 && n.Response.P99 > 0 {
				fmt.Fprintf(&responses, "| %s | %s%% | %s / %s | %s / %s |\n", label, pct,
					us(g.Response.P99), us(g.Response.P999), us(n.Response.P99), us(n.Response.P999))
			}
			ok := g.Errors == 0 && n.Errors == 0 && g.Latency.P99 <= n.Latency.P99 && g.Latency.P999 <= n.Latency.P999
			result := "PASS"
			if !ok {
				result = failed(&fails)
			}
			errs := ""
			if g.Errors+n.Errors > 0 {
				errs = fmt.Sprintf(" (errors: %d / %d)", g.Errors, n.Errors)
			}
			fmt.Fprintf(w, "| %s | %s%% of %d | %.0f | %s / %s / %s | %s / %s / %s | %s | %.2f / %.2f | p99, p99.9 ≤ nginx | %s%s |\n",
				label, pct, baseRate, g.Rate, us(g.Latency.P50), us(g.Latency.P99), us(g.Latency.P999),
				us(n.Latency.P50), us(n.Latency.P99), us(n.Latency.P999), lags(g, n), g.CPU, n.CPU, result, errs)
		}
	}
	if rounds > 1 {
		fmt.Fprintf(w, "\nEach round (p99 / p99.9 per server, and the generator's send lag p99 / p99.9):\n\n")
		fmt.Fprintln(w, "| request | load | round | gemproxy | nginx | send lag (gp; nginx) |")
		fmt.Fprintln(w, "|---|---:|---:|---|---|---|")
		fmt.Fprint(w, perRound.String())
	}
	if responses.Len() > 0 {
		of := ""
		if rounds > 1 {
			of = ", medians of the rounds"
		}
		fmt.Fprintf(w, "\nFor diagnosis, not a target: the response time from the write of each request to the last byte of its answer "+
			"(p99 / p99.9%s), which leaves out the generator's send lag and so does not count requests that waited to be sent.\n\n", of)
		fmt.Fprintln(w, "| request | load | gemproxy | nginx |")
		fmt.Fprintln(w, "|---|---:|---|---|")
		fmt.Fprint(w, responses.String())
	}
	return fails
}

// lags is the cell of the generator's send lag p99 / p99.9 in g's run
// (gemproxy) and n's (nginx).
func lags(g, n *latencyRun) string {
	return fmt.Sprintf("%s / %s; %s / %s", us(g.Lag.P99), us(g.Lag.P999), us(n.Lag.P99), us(n.Lag.P999))
}

// roundsNote says, when the steady-load runs were repeated, that the
// table shows the medians of the rounds.
func roundsNote(rounds int) string {
	if rounds == 1 {
		return " One run per server and load."
	}
	return fmt.Sprintf(" %d alternating rounds; the figures are the **median of the rounds** (each percentile, send lag, response time and CPU on its own), "+
		"and the target compares those medians; each round is listed below.", rounds)
}

// failed counts a FAIL in *fails and returns its cell.
func failed(fails *int) string {
	*fails++
	return "**FAIL**"
}

// readCold reads one coldload result, or nil.
func readCold(dir, name string) *coldResult {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return nil
	}
	var c coldResult
	if err := json.Unmarshal(b, &c); err != nil {
		return nil
	}
	return &c
}

// upstreamDuringWarm summarises warm-upstream.json.
func upstreamDuringWarm(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "warm-upstream.json"))
	if err != nil {
		return "not recorded"
	}
	var doc struct {
		Total int `json:"total"`
	}
	if json.Unmarshal(b, &doc) != nil {
		return "not recorded"
	}
	return strconv.Itoa(doc.Total)
}

// verification summarises verify.txt.
func verification(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "verify.txt"))
	if err != nil {
		return "not recorded."
	}
	var parts []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line != "" {
			parts = append(parts, "`"+line+"`")
		}
	}
	return strings.Join(parts, "; ") + "."
}

// statuses renders a status count map.
func statuses(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// disturbedPct is the share of the machine's CPU used by other processes
// above which a run is reported as disturbed.
const disturbedPct = 10.0

// pct renders a percentage, or "?" when unknown.
func pct(x float64) string {
	if x < 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", x)
}

// median returns the median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// us renders microseconds as µs or ms.
func us(x float64) string {
	if x >= 1000 {
		return fmt.Sprintf("%.2f ms", x/1000)
	}
	return fmt.Sprintf("%.0f µs", x)
}

// msf renders milliseconds.
func msf(x float64) string {
	if x >= 1000 {
		return fmt.Sprintf("%.2f s", x/1000)
	}
	return fmt.Sprintf("%.0f ms", x)
}

// mib renders KiB as MiB.
func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
