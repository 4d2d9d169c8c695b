package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/lockfile"
	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/proxy"
)

// envURL names the variable holding the URL of a running gemproxy for
// prefetch.
const envURL = "GEMPROXY_URL"

// defaultJobs is how many gems prefetch downloads at the same time.
const defaultJobs = 8

// Timeouts of the HTTP client of prefetch --url.
const (
	// urlConnectTimeout bounds the TCP and TLS handshakes.
	urlConnectTimeout = 10 * time.Second
	// urlRequestTimeout bounds one gem download, request to last byte. A
	// miss is answered once the server's fill is done, which its default
	// upstream_timeouts.fill bounds to 10m.
	urlRequestTimeout = 15 * time.Minute
)

// prefetchFlagSet returns the flags of gemproxy prefetch.
func prefetchFlagSet() *flag.FlagSet {
	fs := newFlagSet("prefetch", "upstream", "data_dir")
	fs.String("url", "", "`URL` of a running gemproxy to prefetch through, instead of the data directory (env "+envURL+")")
	fs.Int("jobs", defaultJobs, "download at most `N` gems at the same time")
	return fs
}

// prefetchUsage writes the help of gemproxy prefetch.
func prefetchUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: gemproxy prefetch [flags] LOCKFILE...

Warms the cache with every gem of the lockfiles (Gemfile.lock) whose GEM
source is rubygems.org, the upstream (data directory) or the server's URL
(--url); gems of other sources are skipped, GIT and PATH gems ignored. A gem
listed in a CHECKSUMS section is checked against its sha256 there.

  gemproxy prefetch --url http://gemproxy:9292 Gemfile.lock
      through a running gemproxy, which fills its cache as for any client
  gemproxy prefetch --data-dir /var/lib/gemproxy a/Gemfile.lock b/Gemfile.lock
      into the data directory of a stopped server (the default), with the
      same verification and storage as serve; exits 2 while a server holds it

Flags:
`)
	printFlags(w, prefetchFlagSet())
	fmt.Fprint(w, `
--url (or GEMPROXY_URL) selects the running server; --url cannot be combined
with --config, --upstream or --data-dir, which select the data directory even
when GEMPROXY_URL is set. Settings are taken from defaults < config file
< GEMPROXY_* environment < flags.

On a terminal a progress bar is drawn on stderr. Each failed gem is one line
"FILE: reason" on stderr, each skipped one "FILE: skipped: ...". The last
line, on stdout, is
  prefetched N gems (H already cached, M fetched, B bytes) in D; F failed, S skipped
where B is the size of the N gems.
Exit status: 0 every gem prefetched (skipped ones aside), 1 a gem failed
(download, HTTP status, checksum mismatch) or an interrupt, 2 bad command
line, configuration or lockfile, or data directory in use.
`)
}

// prefetch runs gemproxy prefetch and returns the exit status.
func prefetch(args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
	fs := prefetchFlagSet()
	paths, code, ok := parseArgs(fs, args, stdout, stderr, prefetchUsage)
	if !ok {
		return code
	}
	if len(paths) == 0 {
		return fail(stderr, errors.New("prefetch: no lockfile given (usage: gemproxy prefetch [flags] LOCKFILE...)"))
	}
	jobs := fs.Lookup("jobs").Value.(flag.Getter).Get().(int)
	if jobs < 1 {
		return fail(stderr, fmt.Errorf("prefetch: --jobs %d: must be at least 1", jobs))
	}
	serverURL, urlOrigin, err := chooseServer(fs, lookupEnv)
	if err != nil {
		return fail(stderr, err)
	}
	var cfg Config
	var base *url.URL
	var allowed []string
	if serverURL != "" {
		if base, err = parseUpstream(serverURL); err != nil {
			return fail(stderr, fmt.Errorf("%s: %w", urlOrigin, err))
		}
		allowed = []string{serverURL}
	} else {
		if cfg, err = load(fs, lookupEnv); err != nil {
			return fail(stderr, err)
		}
		allowed = []string{cfg.Upstream}
	}

	lockfiles, err := readLockfiles(paths)
	if err != nil {
		return fail(stderr, err)
	}
	pl := planPrefetch(lockfiles, newRemoteFilter(allowed...))

	// The first SIGINT or SIGTERM stops starting downloads; a second one
	// kills as usual.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)

	out := newProgress(stderr, isTerminal(stderr))
	var get getter
	var stored func(key string, sum [32]byte) bool
	finish := func() error { return nil }
	if base != nil {
		get = httpGetter(base, jobs)
	} else {
		p, store, err := openPrefetchProxy(cfg, out)
		if err != nil {
			return fail(stderr, err)
		}
		get = appGetter(p)
		stored = func(key string, sum [32]byte) bool {
			e := store.Peek(key)
			return e != nil && e.Status == http.StatusOK && e.SHA256 == sum
		}
		finish = func() error {
			n, err := store.Sweep() // the size cap, as serve's sweeper would enforce it
			if n > 0 {
				out.printf("gemproxy: max_size reached: %d least recently used %s evicted\n", n, plural(n, "entry", "entries"))
			}
			if cerr := store.Close(); err == nil {
				err = cerr
			}
			return err
		}
	}

	for _, s := range pl.skipped {
		out.printf("%s: skipped: %s\n", s.file, s.reason)
	}
	start := time.Now()
	sum := runPrefetch(ctx, pl.targets, jobs, get, stored, out)
	out.finish()
	status := exitOK
	if err := finish(); err != nil {
		fmt.Fprintf(stderr, "gemproxy: prefetch: cache: %v\n", err)
		status = exitFailure
	}
	fmt.Fprintf(stdout, "prefetched %d %s (%d already cached, %d fetched, %d bytes) in %s; %d failed, %d skipped\n",
		sum.cached+sum.fetched, plural(sum.cached+sum.fetched, "gem", "gems"), sum.cached, sum.fetched, sum.bytes,
		time.Since(start).Round(time.Millisecond), sum.failed, len(pl.skipped))
	if sum.notAttempted > 0 {
		fmt.Fprintf(stderr, "gemproxy: prefetch interrupted: %d %s not attempted\n", sum.notAttempted, plural(sum.notAttempted, "gem", "gems"))
	}
	if sum.failed > 0 || sum.notAttempted > 0 {
		status = exitFailure
	}
	return status
}

// chooseServer returns the URL of the running gemproxy prefetch works
// through, and where it came from (--url or GEMPROXY_URL), or "" for the
// data directory: --url wins, and cannot be combined with the flags of the
// data directory; those flags win over GEMPROXY_URL.
func chooseServer(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) (serverURL, origin string, err error) {
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	dataDirFlags := given[flagConfig] || given["upstream"] || given["data-dir"]
	switch {
	case given["url"] && dataDirFlags:
		return "", "", errors.New("prefetch: --url cannot be combined with --config, --upstream or --data-dir")
	case given["url"]:
		return fs.Lookup("url").Value.String(), "--url", nil
	case dataDirFlags:
		return "", "", nil
	}
	if v, ok := lookupEnv(envURL); ok && v != "" {
		return v, envURL, nil
	}
	return "", "", nil
}

// parsedLockfile is a lockfile read by readLockfiles.
type parsedLockfile struct {
	// path is the path given on the command line.
	path string
	// lf is its content.
	lf *lockfile.Lockfile
}

// readLockfiles reads and parses every lockfile; the first error names the
// path.
func readLockfiles(paths []string) ([]parsedLockfile, error) {
	out := make([]parsedLockfile, 0, len(paths))
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("lockfile %s: cannot read: %w", path, pathCause(err))
		}
		lf, err := lockfile.Parse(bufio.NewReader(f))
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("lockfile %s: %w", path, err)
		}
		out = append(out, parsedLockfile{path: path, lf: lf})
	}
	return out, nil
}

// target is one .gem file to prefetch, merged over the lockfiles that list
// it.
type target struct {
	// file is the file name, NAME-VERSION[-PLATFORM].gem.
	file string
	// sha256 is the lowercase hex SHA-256 the CHECKSUMS section gives; ""
	// when no lockfile gives one.
	sha256 string
	// sumFrom is the lockfile that gave sha256.
	sumFrom string
	// conflict, when set, is why the gem is not fetched: two lockfiles give
	// different checksums.
	conflict string
}

// skip is a gem not fetched because of its source.
type skip struct {
	// file is the .gem file name.
	file string
	// reason says why.
	reason string
}

// prefetchPlan is what prefetch does: the gems to fetch and those skipped,
// each file once, in the order of their first appearance.
type prefetchPlan struct {
	targets []*target
	skipped []skip
}

// planPrefetch merges the gems of lockfiles: a gem is fetched when one of
// its GEM section's remotes passes allow in at least one lockfile, and
// skipped otherwise.
func planPrefetch(lockfiles []parsedLockfile, allow func(remote string) bool) prefetchPlan {
	var pl prefetchPlan
	byFile := make(map[string]*target)
	skipped := make(map[string]string)
	var skipOrder []string
	for _, l := range lockfiles {
		for _, g := range l.lf.Gems {
			file := g.FileName()
			if !allowedGem(g, allow) {
				if _, ok := skipped[file]; !ok {
					skipped[file] = skipReason(g)
					skipOrder = append(skipOrder, file)
				}
				continue
			}
			t := byFile[file]
			if t == nil {
				t = &target{file: file}
				byFile[file] = t
				pl.targets = append(pl.targets, t)
			}
			switch {
			case g.SHA256 == "" || g.SHA256 == t.sha256:
			case t.sha256 == "":
				t.sha256, t.sumFrom = g.SHA256, l.path
			case t.conflict == "":
				t.conflict = fmt.Sprintf("CHECKSUMS of %s and %s disagree (sha256 %s and %s); not fetched",
					t.sumFrom, l.path, t.sha256, g.SHA256)
			}
		}
	}
	for _, file := range skipOrder {
		if byFile[file] == nil {
			pl.skipped = append(pl.skipped, skip{file: file, reason: skipped[file]})
		}
	}
	return pl
}

// allowedGem reports whether one of g's remotes passes allow.
func allowedGem(g lockfile.Gem, allow func(string) bool) bool {
	for _, r := range g.Remotes {
		if allow(r) {
			return true
		}
	}
	return false
}

// skipReason says why g's source is not fetched.
func skipReason(g lockfile.Gem) string {
	switch len(g.Remotes) {
	case 0:
		return "its GEM section has no remote"
	case 1:
		return "source " + g.Remotes[0] + " is neither rubygems.org nor the upstream"
	}
	return "sources " + strings.Join(g.Remotes, ", ") + " are neither rubygems.org nor the upstream"
}

// newRemoteFilter returns a function reporting whether a lockfile remote
// is served through gemproxy: rubygems.org or index.rubygems.org over http
// or https, or one of extra (the upstream, or the URL of the running
// server). Scheme, host case, default ports and trailing slashes do not
// matter.
func newRemoteFilter(extra ...string) func(remote string) bool {
	keys := map[string]bool{"rubygems.org": true, "index.rubygems.org": true}
	for _, e := range extra {
		if k, ok := remoteKey(e); ok {
			keys[k] = true
		}
	}
	return func(remote string) bool {
		k, ok := remoteKey(remote)
		return ok && keys[k]
	}
}

// remoteKey is an http(s) URL reduced to host[:port][/path], lowercase host,
// without default port and trailing slash.
func remoteKey(s string) (string, bool) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", false
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port != "" && !(u.Scheme == "http" && port == "80") && !(u.Scheme == "https" && port == "443") {
		host = net.JoinHostPort(host, port)
	}
	return host + strings.TrimRight(u.Path, "/"), true
}

// getter requests path (/gems/FILE.gem) from a gemproxy.
type getter func(ctx context.Context, path string) (*http.Response, error)

// userAgent is the User-Agent of prefetch requests.
func userAgent() string { return "gemproxy-prefetch/" + resolvedVersion() }

// httpGetter returns a getter of a running gemproxy at base, with a client
// keeping up to jobs connections.
func httpGetter(base *url.URL, jobs int) getter {
	client := &http.Client{
		Timeout: urlRequestTimeout,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: urlConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: urlConnectTimeout,
			MaxIdleConnsPerHost: jobs,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		},
	}
	prefix := strings.TrimRight(base.String(), "/")
	return func(ctx context.Context, path string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, prefix+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("User-Agent", userAgent())
		return client.Do(req)
	}
}

// appGetter returns a getter driving p's Fiber app in process, with no
// listening socket. The context is not passed on: the proxy bounds its
// upstream requests and fills itself.
func appGetter(p *proxy.Proxy) getter {
	app := p.App()
	return func(ctx context.Context, path string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://gemproxy"+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("User-Agent", userAgent())
		return app.Test(req, -1)
	}
}

// openPrefetchProxy opens the cache of cfg.DataDir, creating it if needed,
// and builds a proxy over it whose warnings go to log (the access log is
// not written). The caller closes the store.
func openPrefetchProxy(cfg Config, log io.Writer) (*proxy.Proxy, *cache.Store, error) {
	if err := ensureDataDir(cfg.DataDir); err != nil {
		return nil, nil, err
	}
	store, err := cache.Open(cfg.DataDir, cfg.CacheOptions(false))
	if err != nil {
		return nil, nil, describeOpenError(cfg.DataDir, err,
			"in use by a running gemproxy; prefetch through it with --url instead, or stop it first")
	}
	popts, err := cfg.ProxyOptions()
	if err != nil {
		_ = store.Close()
		return nil, nil, err
	}
	level, _ := parseLogLevel(cfg.LogLevel)
	logCfg := cfg
	logCfg.LogLevel = max(level, slog.LevelWarn).String()
	ver := resolvedVersion()
	popts.Logger = newLogger(logCfg, log)
	popts.Version = ver
	popts.Metrics = metrics.New(prometheus.NewRegistry(), metrics.Options{
		Endpoints: proxy.MetricEndpoints(),
		Classes:   classNames(),
		Version:   ver,
		Revision:  buildRevision(),
	})
	p, err := proxy.New(store, popts)
	if err != nil {
		_ = store.Close()
		return nil, nil, fmt.Errorf("proxy: %w", err)
	}
	return p, store, nil
}

// prefetchSummary counts the outcomes of runPrefetch.
type prefetchSummary struct {
	// cached counts gems the cache already held (X-Cache: HIT).
	cached int
	// fetched counts gems downloaded into the cache.
	fetched int
	// failed counts gems that could not be prefetched.
	failed int
	// notAttempted counts gems not tried because of an interrupt.
	notAttempted int
	// bytes is the total size of the cached and fetched gems.
	bytes int64
}

// runPrefetch fetches every target with at most jobs at a time, reports
// each failure and the progress on out, and returns the counts. stored, when
// not nil, tells whether the cache now holds the key with that SHA-256. Once
// ctx is done no new download starts.
func runPrefetch(ctx context.Context, targets []*target, jobs int, get getter, stored func(key string, sum [32]byte) bool, out *progress) prefetchSummary {
	var mu sync.Mutex
	var sum prefetchSummary
	out.start(len(targets))
	work := make(chan *target)
	var wg sync.WaitGroup
	for range min(jobs, len(targets)) {
		wg.Go(func() {
			for t := range work {
				if ctx.Err() != nil {
					mu.Lock()
					sum.notAttempted++
					mu.Unlock()
					continue
				}
				cached, n, err := fetchGem(ctx, get, t, stored)
				mu.Lock()
				switch {
				case err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled):
					sum.notAttempted++
				case err != nil:
					sum.failed++
				case cached:
					sum.cached++
				default:
					sum.fetched++
				}
				if err == nil {
					sum.bytes += n
				}
				mu.Unlock()
				if err != nil && ctx.Err() == nil {
					out.printf("%s: %v\n", t.file, err)
				}
				out.step()
			}
		})
	}
	sent := 0
feed:
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		select {
		case work <- t:
			sent++
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	sum.notAttempted += len(targets) - sent
	return sum
}

// maxReasonBytes bounds the part of an error response read for its reason.
const maxReasonBytes = 1 << 10

// fetchGem downloads t through get, checks it against its lockfile
// checksum and, with stored, that the cache now holds it. It reports
// whether the response was a cache hit and the body size.
func fetchGem(ctx context.Context, get getter, t *target, stored func(string, [32]byte) bool) (cached bool, n int64, err error) {
	if t.conflict != "" {
		return false, 0, errors.New(t.conflict)
	}
	key := "/gems/" + t.file
	resp, err := get(ctx, key)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL would repeat the file name
		}
		return false, 0, fmt.Errorf("request failed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxReasonBytes))
		reason, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		if reason == "" {
			return false, 0, fmt.Errorf("HTTP %s", resp.Status)
		}
		return false, 0, fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(reason))
	}
	h := sha256.New()
	n, err = io.Copy(h, resp.Body)
	if err != nil {
		return false, 0, fmt.Errorf("download failed after %d bytes: %w", n, err)
	}
	var got [32]byte
	h.Sum(got[:0])
	if t.sha256 != "" && hex.EncodeToString(got[:]) != t.sha256 {
		return false, 0, fmt.Errorf("sha256 %x, but the CHECKSUMS section of %s says %s", got, t.sumFrom, t.sha256)
	}
	cached = resp.Header.Get("X-Cache") == "HIT"
	if !cached && stored != nil && !stored(key, got) {
		return false, 0, errors.New("downloaded but not stored in the cache (see the warning above: no checksum for it in the upstream's /info, or not storable)")
	}
	return cached, n, nil
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// barWidth is the number of cells between the brackets of the progress bar.
const barWidth = 30

// progress writes prefetch's stderr: lines of text, and on a terminal a
// one-line progress bar redrawn in place under them. It is safe for
// concurrent use; as an io.Writer it takes whole lines (a logger's output).
type progress struct {
	mu sync.Mutex
	w  io.Writer
	// bar draws the progress bar.
	bar bool
	// done and total are the gems finished and to do.
	done, total int
	// drawn is set while the bar is on the screen.
	drawn bool
}

// newProgress returns a progress writing to w, with a bar when bar is set.
func newProgress(w io.Writer, bar bool) *progress { return &progress{w: w, bar: bar} }

// start sets the number of gems and draws the empty bar.
func (p *progress) start(total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = total
	p.draw()
}

// step counts one finished gem and redraws the bar.
func (p *progress) step() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.draw()
}

// finish ends the bar's line, leaving the final bar on the screen; later
// lines are written without a bar.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		_, _ = io.WriteString(p.w, "\n")
		p.drawn = false
	}
	p.bar = false
}

// printf writes a formatted line above the bar.
func (p *progress) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(p, format, args...)
}

// Write writes b, which should end with a newline, above the bar.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		_, _ = io.WriteString(p.w, "\r\x1b[K") // erase the bar's line
		p.drawn = false
	}
	n, err := p.w.Write(b)
	p.draw()
	return n, err
}

// draw draws the bar over the current line when the bar is on and there
// is something to do. p.mu is held.
func (p *progress) draw() {
	if !p.bar || p.total == 0 {
		return
	}
	_, _ = io.WriteString(p.w, "\r"+renderBar(p.done, p.total, barWidth))
	p.drawn = true
}

// renderBar renders "[=====>    ] 12/51 gems" with width cells between
// the brackets.
func renderBar(done, total, width int) string {
	filled := width
	if total > 0 && done < total {
		filled = done * width / total
	}
	var b strings.Builder
	b.WriteByte('[')
	b.WriteString(strings.Repeat("=", filled))
	if filled < width {
		b.WriteByte('>')
		b.WriteString(strings.Repeat(" ", width-filled-1))
	}
	fmt.Fprintf(&b, "] %d/%d gems", done, total)
	return b.String()
}
