// Command coldload is the load program of bench/run.sh for what wrk cannot
// do: N clients that each open their own connection, wait at a barrier,
// and are released at once to GET one URL (cold coalescing, concurrent big
// downloads), or one streamed POST of a large body (a gem push through the
// proxy). It reports per-client time to first byte and to last byte, the
// upstream request counts before and after (from the bench upstream's
// /__stats), and, given -pid, the resident memory of that process: its RSS
// just before the load and its peak during it (VmHWM, reset through
// /proc/PID/clear_refs before the load, cross-checked by sampling VmRSS).
//
// The result is one JSON object on stdout; a human summary goes to stderr.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// result is the JSON printed on stdout.
type result struct {
	Label   string `json:"label"`
	Mode    string `json:"mode"`
	URL     string `json:"url"`
	Clients int    `json:"clients"`
	// OK counts clients with the expected status and byte count.
	OK int `json:"ok"`
	// Statuses counts clients per HTTP status ("error" for transport errors).
	Statuses map[string]int `json:"statuses"`
	// Errors holds up to 5 distinct failure descriptions.
	Errors []string `json:"errors,omitempty"`
	// BytesPerClient is the body size the first successful client read.
	BytesPerClient int64 `json:"bytes_per_client"`
	// Times in milliseconds from the common release of the barrier.
	TTFB stat `json:"ttfb_ms"`
	TTLB stat `json:"ttlb_ms"`
	// ReleaseSkewMS is the latest start of a client after the release.
	ReleaseSkewMS float64 `json:"release_skew_ms"`
	// WallMS is the time from release to the last client done.
	WallMS float64 `json:"wall_ms"`
	// Upstream request counts per -count-path, before and after.
	UpstreamBefore map[string]int `json:"upstream_before,omitempty"`
	UpstreamAfter  map[string]int `json:"upstream_after,omitempty"`
	// UpstreamDelta is after - before per path.
	UpstreamDelta map[string]int `json:"upstream_delta,omitempty"`
	// UpstreamBodyBytes is the request-body bytes the upstream received
	// per -count-path during the run (pushes).
	UpstreamBodyBytes map[string]int64 `json:"upstream_body_bytes,omitempty"`
	// Memory of -pid in KiB.
	Memory *memory `json:"memory,omitempty"`
}

// stat summarises a set of durations in milliseconds.
type stat struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
	Max    float64 `json:"max"`
}

// memory is the RSS report of the measured process, in KiB. RSS counts
// anonymous memory (heap, stacks) and file-backed pages mapped and touched
// (for gemproxy: the bbolt file's mmap, reclaimable page cache); the
// sampled peaks of each are reported apart.
type memory struct {
	PID        int   `json:"pid"`
	IdleRSSKB  int64 `json:"idle_rss_kb"`
	IdleAnonKB int64 `json:"idle_anon_kb"`
	IdleFileKB int64 `json:"idle_file_kb"`
	// PeakHWMKB is VmHWM after the load, reset to the idle RSS before it.
	PeakHWMKB int64 `json:"peak_hwm_kb"`
	// SampledKB, AnonKB and FileKB are the largest sampled VmRSS,
	// RssAnon and RssFile.
	SampledKB  int64 `json:"peak_sampled_kb"`
	AnonKB     int64 `json:"peak_anon_kb"`
	FileKB     int64 `json:"peak_file_kb"`
	PeakKB     int64 `json:"peak_kb"`
	GrowthKB   int64 `json:"growth_kb"`
	HWMReset   bool  `json:"hwm_reset"`
	Samples    int   `json:"samples"`
	AfterRSSKB int64 `json:"after_rss_kb"`
}

func main() {
	mode := flag.String("mode", "get", "get: N concurrent GETs; push: one streamed POST")
	target := flag.String("url", "", "URL to request (required)")
	n := flag.Int("n", 1, "number of concurrent clients (get)")
	label := flag.String("label", "", "label copied into the result")
	preconnect := flag.String("preconnect", "/healthz", "path each client GETs first to open its connection before the barrier; empty: none")
	expectStatus := flag.Int("expect-status", 200, "status a successful client gets")
	expectBytes := flag.Int64("expect-bytes", -1, "body size a successful client reads; -1: any")
	statsURL := flag.String("stats", "", "bench upstream /__stats URL, for upstream request counts")
	countPaths := flag.String("count-path", "", "comma-separated upstream paths whose request counts are reported")
	pid := flag.Int("pid", 0, "process whose RSS is measured (0: none)")
	sample := flag.Duration("sample", 10*time.Millisecond, "RSS sampling interval")
	timeout := flag.Duration("timeout", 5*time.Minute, "overall deadline of the load")
	size := flag.Int64("size", 200<<20, "push: request body size in bytes")
	auth := flag.String("auth", "bench-unknown-key", "push: Authorization header value")
	flag.Parse()
	if *target == "" || *n < 1 || (*mode != "get" && *mode != "push") {
		flag.Usage()
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	res := result{Label: *label, Mode: *mode, URL: *target, Clients: *n, Statuses: map[string]int{}}
	paths := splitList(*countPaths)
	if *statsURL != "" && len(paths) > 0 {
		before, _, err := upstreamStats(*statsURL, paths)
		if err != nil {
			fatal(err)
		}
		res.UpstreamBefore = before
	}
	var mon *monitor
	if *pid > 0 {
		var err error
		if mon, err = startMonitor(*pid, *sample); err != nil {
			fatal(err)
		}
	}
	var bodyBefore map[string]int64
	if *mode == "push" && *statsURL != "" {
		_, bodyBefore, _ = upstreamStats(*statsURL, paths)
	}

	switch *mode {
	case "get":
		runGets(ctx, &res, *target, *n, *preconnect, *expectStatus, *expectBytes)
	case "push":
		res.Clients = 1
		runPush(ctx, &res, *target, *size, *auth, *expectStatus)
	}

	if mon != nil {
		res.Memory = mon.stop()
	}
	if *statsURL != "" && len(paths) > 0 {
		after, body, err := upstreamStats(*statsURL, paths)
		if err != nil {
			fatal(err)
		}
		res.UpstreamAfter = after
		res.UpstreamDelta = map[string]int{}
		for _, p := range paths {
			res.UpstreamDelta[p] = after[p] - res.UpstreamBefore[p]
		}
		if *mode == "push" {
			res.UpstreamBodyBytes = map[string]int64{}
			for _, p := range paths {
				res.UpstreamBodyBytes[p] = body[p] - bodyBefore[p]
			}
		}
	}
	summary(os.Stderr, &res)
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(res); err != nil {
		fatal(err)
	}
	if res.OK != res.Clients {
		os.Exit(1)
	}
}

// fatal prints err and exits 1.
func fatal(err error) {
	fmt.Fprintln(os.Stderr, "coldload:", err)
	os.Exit(1)
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// newClient returns a client with its own single connection: no proxy from
// the environment, no transparent gzip, no HTTP/2.
func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		DisableCompression:  true,
		MaxIdleConns:        1,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		IdleConnTimeout:     5 * time.Minute,
		ReadBufferSize:      256 << 10,
	}}
}

// clientResult is what one client saw.
type clientResult struct {
	status     int
	err        error
	bytes      int64
	started    time.Duration // after the release
	ttfb, ttlb time.Duration // after the release
}

// runGets runs n clients: each preconnects, waits at the barrier, GETs url
// and reads the whole body.
func runGets(ctx context.Context, res *result, url string, n int, preconnect string, expectStatus int, expectBytes int64) {
	out := make([]clientResult, n)
	start := make(chan struct{})
	var ready, done sync.WaitGroup
	// release is written before start is closed and read after, so the
	// channel orders the accesses.
	var release time.Time
	base := baseURL(url)
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			c := newClient()
			defer c.CloseIdleConnections()
			if preconnect != "" {
				if err := warmConnection(ctx, c, base+preconnect); err != nil {
					out[i].err = fmt.Errorf("preconnect: %w", err)
					ready.Done()
					return
				}
			}
			ready.Done()
			<-start
			t0 := release
			out[i].started = time.Since(t0)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				out[i].err = err
				return
			}
			resp, err := c.Do(req)
			if err != nil {
				out[i].err = err
				return
			}
			out[i].ttfb = time.Since(t0)
			out[i].status = resp.StatusCode
			out[i].bytes, out[i].err = drain(resp.Body)
			out[i].ttlb = time.Since(t0)
			resp.Body.Close()
		}()
	}
	ready.Wait()
	release = time.Now()
	close(start)
	done.Wait()
	res.WallMS = ms(time.Since(release))
	collect(res, out, expectStatus, expectBytes)
}

// warmConnection opens c's connection with one GET whose body is drained.
func warmConnection(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = drain(resp.Body)
	resp.Body.Close()
	return err
}

// drain reads r to EOF with a large buffer and returns the byte count.
func drain(r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		m, err := r.Read(buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// baseURL returns scheme://host of url.
func baseURL(url string) string {
	i := strings.Index(url, "://")
	if i < 0 {
		return url
	}
	if j := strings.IndexByte(url[i+3:], '/'); j >= 0 {
		return url[:i+3+j]
	}
	return url
}

// collect fills the statistics of res from the client results.
func collect(res *result, out []clientResult, expectStatus int, expectBytes int64) {
	var ttfb, ttlb []time.Duration
	seen := map[string]bool{}
	for _, r := range out {
		key := strconv.Itoa(r.status)
		ok := r.err == nil && r.status == expectStatus && (expectBytes < 0 || r.bytes == expectBytes)
		switch {
		case r.err != nil:
			key = "error"
			if msg := r.err.Error(); !seen[msg] && len(res.Errors) < 5 {
				seen[msg] = true
				res.Errors = append(res.Errors, msg)
			}
		case !ok:
			if msg := fmt.Sprintf("status %d with %d bytes (want %d with %d)", r.status, r.bytes, expectStatus, expectBytes); !seen[msg] && len(res.Errors) < 5 {
				seen[msg] = true
				res.Errors = append(res.Errors, msg)
			}
		}
		res.Statuses[key]++
		if ok {
			res.OK++
			if res.BytesPerClient == 0 {
				res.BytesPerClient = r.bytes
			}
			ttfb = append(ttfb, r.ttfb)
			ttlb = append(ttlb, r.ttlb)
		}
		res.ReleaseSkewMS = max(res.ReleaseSkewMS, ms(r.started))
	}
	res.TTFB, res.TTLB = summarise(ttfb), summarise(ttlb)
}

// summarise returns min, median, p90 and max of ds.
func summarise(ds []time.Duration) stat {
	if len(ds) == 0 {
		return stat{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 { return ms(ds[min(int(q*float64(len(ds))), len(ds)-1)]) }
	med := ms(ds[len(ds)/2])
	if len(ds)%2 == 0 {
		med = (ms(ds[len(ds)/2-1]) + ms(ds[len(ds)/2])) / 2
	}
	return stat{Min: ms(ds[0]), Median: med, P90: at(0.9), Max: ms(ds[len(ds)-1])}
}

// ms converts d to milliseconds.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// runPush sends one POST of size generated bytes, streamed.
func runPush(ctx context.Context, res *result, url string, size int64, auth string, expectStatus int) {
	out := make([]clientResult, 1)
	c := newClient()
	defer c.CloseIdleConnections()
	body := io.LimitReader(newPattern(), size)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/octet-stream")
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		out[0].err = err
	} else {
		out[0].ttfb = time.Since(t0)
		out[0].status = resp.StatusCode
		_, out[0].err = drain(resp.Body)
		out[0].ttlb = time.Since(t0)
		resp.Body.Close()
	}
	res.WallMS = ms(time.Since(t0))
	collect(res, out, expectStatus, -1)
	res.BytesPerClient = size
}

// pattern is an endless reader of one pseudo-random 1 MiB block repeated
// (incompressible enough, and cheap: the body is never held in memory).
type pattern struct {
	block []byte
	off   int
}

// newPattern returns a pattern reader.
func newPattern() *pattern {
	b := make([]byte, 1<<20)
	r := rand.NewChaCha8([32]byte{'g', 'e', 'm'})
	_, _ = r.Read(b)
	return &pattern{block: b}
}

// Read fills p from the repeated block.
func (p *pattern) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		c := copy(b[n:], p.block[p.off:])
		n += c
		p.off = (p.off + c) % len(p.block)
	}
	return n, nil
}

// upstreamStats reads the request counts and body bytes of paths from the
// bench upstream's /__stats.
func upstreamStats(url string, paths []string) (map[string]int, map[string]int64, error) {
	c := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, nil, fmt.Errorf("upstream stats: %w", err)
	}
	defer resp.Body.Close()
	var doc struct {
		Counts    map[string]int   `json:"counts"`
		BodyBytes map[string]int64 `json:"body_bytes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("upstream stats: %w", err)
	}
	counts, body := map[string]int{}, map[string]int64{}
	for _, p := range paths {
		counts[p] = doc.Counts[p]
		body[p] = doc.BodyBytes[p]
	}
	return counts, body, nil
}

// monitor samples the RSS of a process while the load runs.
type monitor struct {
	pid     int
	idle    procMem
	reset   bool
	peak    procMem // written by the sampling goroutine only
	samples atomic.Int64
	quit    chan struct{}
	done    chan struct{}
}

// procMem is one reading of /proc/PID/status, in KiB.
type procMem struct{ rss, hwm, anon, file int64 }

// startMonitor records the idle RSS of pid, resets its VmHWM and starts
// sampling VmRSS every interval.
func startMonitor(pid int, interval time.Duration) (*monitor, error) {
	m := &monitor{pid: pid, quit: make(chan struct{}), done: make(chan struct{})}
	// Idle: the reading with the median RSS of a few over 300ms.
	var idle []procMem
	for range 7 {
		pm, err := readStatus(pid)
		if err != nil {
			return nil, err
		}
		if pm.rss == 0 {
			return nil, fmt.Errorf("process %d has no resident memory (exited?)", pid)
		}
		idle = append(idle, pm)
		time.Sleep(50 * time.Millisecond)
	}
	slices.SortFunc(idle, func(a, b procMem) int { return int(a.rss - b.rss) })
	m.idle = idle[len(idle)/2]
	// "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
	m.reset = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
	m.peak = m.idle
	go func() {
		defer close(m.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-m.quit:
				return
			case <-t.C:
				if pm, err := readStatus(pid); err == nil && pm.rss > 0 {
					m.samples.Add(1)
					m.peak.rss = max(m.peak.rss, pm.rss)
					m.peak.anon = max(m.peak.anon, pm.anon)
					m.peak.file = max(m.peak.file, pm.file)
				}
			}
		}
	}()
	return m, nil
}

// stop ends sampling and returns the report.
func (m *monitor) stop() *memory {
	close(m.quit)
	<-m.done
	after, _ := readStatus(m.pid)
	r := &memory{
		PID: m.pid, IdleRSSKB: m.idle.rss, IdleAnonKB: m.idle.anon, IdleFileKB: m.idle.file,
		SampledKB: m.peak.rss, AnonKB: m.peak.anon, FileKB: m.peak.file,
		HWMReset: m.reset, Samples: int(m.samples.Load()), AfterRSSKB: after.rss,
	}
	if m.reset {
		r.PeakHWMKB = after.hwm
	}
	r.PeakKB = max(r.PeakHWMKB, r.SampledKB)
	r.GrowthKB = r.PeakKB - r.IdleRSSKB
	return r
}

// readStatus reads VmRSS, VmHWM, RssAnon and RssFile of pid.
func readStatus(pid int) (procMem, error) {
	var pm procMem
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return pm, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &pm.rss
		case "VmHWM":
			dst = &pm.hwm
		case "RssAnon":
			dst = &pm.anon
		case "RssFile":
			dst = &pm.file
		default:
			continue
		}
		if fields := strings.Fields(value); len(fields) >= 1 {
			*dst, _ = strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return pm, sc.Err()
}

// summary writes a human-readable report.
func summary(w io.Writer, r *result) {
	fmt.Fprintf(w, "coldload %s %s: %d/%d ok %v", r.Label, r.Mode, r.OK, r.Clients, r.Statuses)
	if r.OK > 0 {
		fmt.Fprintf(w, "; TTFB ms min %.1f median %.1f max %.1f; TTLB ms min %.1f median %.1f p90 %.1f max %.1f; wall %.1f ms",
			r.TTFB.Min, r.TTFB.Median, r.TTFB.Max, r.TTLB.Min, r.TTLB.Median, r.TTLB.P90, r.TTLB.Max, r.WallMS)
	}
	if r.UpstreamDelta != nil {
		fmt.Fprintf(w, "; upstream requests %v", r.UpstreamDelta)
	}
	if r.UpstreamBodyBytes != nil {
		fmt.Fprintf(w, "; upstream body bytes %v", r.UpstreamBodyBytes)
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "; RSS idle %.1f MiB, peak %.1f MiB (+%.1f MiB; peak anon %.1f MiB, file %.1f MiB)",
			float64(m.IdleRSSKB)/1024, float64(m.PeakKB)/1024, float64(m.GrowthKB)/1024, float64(m.AnonKB)/1024, float64(m.FileKB)/1024)
	}
	fmt.Fprintln(w)
	for _, e := range r.Errors {
		fmt.Fprintln(w, "  error:", e)
	}
}
