package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/prefetch"
	"github.com/gemproxy/gemproxy/internal/proxy"
)

// envURL names the variable holding the URL of a running gemproxy for
// prefetch.
const envURL = "GEMPROXY_URL"

// defaultJobs is how many files prefetch downloads at the same time.
const defaultJobs = 8

// prefetchFlagSet returns the flags of gemproxy prefetch.
func prefetchFlagSet() *flag.FlagSet {
	fs := newFlagSet("prefetch", "upstream", "data_dir")
	fs.String("url", "", "`URL` of a running gemproxy to prefetch through, instead of the data directory (env "+envURL+")")
	fs.Int("jobs", defaultJobs, "download at most `N` files at the same time")
	return fs
}

// prefetchUsage writes the help of gemproxy prefetch.
func prefetchUsage(w io.Writer) {
	fmt.Fprint(w, `Usage: gemproxy prefetch [flags] LOCKFILE...

Fills the cache with what Bundler needs to install the lockfiles
(Gemfile.lock) with the upstream out of reach: every gem of their GEM
sections whose source is rubygems.org, the upstream (data directory) or the
server's URL (--url), the compact index's /info file of each of those gems,
and /versions and /names. Gems of other sources are skipped, GIT and PATH
gems ignored. A gem listed in a CHECKSUMS section is checked against its
sha256 there.

  gemproxy prefetch --data-dir /var/lib/gemproxy a/Gemfile.lock b/Gemfile.lock
      into the data directory of a stopped server (the default), with the
      same verification and storage as serve; exits 2 while a server holds
      it. gemproxy serve --offline --data-dir /var/lib/gemproxy then installs
      those lockfiles without the upstream.
  gemproxy prefetch --url http://gemproxy:9292 Gemfile.lock
      through a running gemproxy, which fills its cache as for any client

Flags:
`)
	printFlags(w, prefetchFlagSet())
	fmt.Fprint(w, `
--url (or GEMPROXY_URL) selects the running server; --url cannot be combined
with --config, --upstream or --data-dir, which select the data directory even
when GEMPROXY_URL is set. Settings are taken from defaults < config file
< GEMPROXY_* environment < flags.

On a terminal a progress line (files done of total, bytes, rate, time left)
is redrawn on stderr; otherwise a plain progress line is written every 5s.
Each skipped gem is one line "FILE: skipped: ..." first; at the end, the
failures are grouped by cause, one line each: "NAME: reason", or
"N files failed: reason (NAME, NAME, NAME and K more)". The last line, on
stdout, is
  prefetched N gems (H already cached, M fetched, B bytes) and I index files in D; F failed, S skipped
where B is the size of the N gems and F counts gems and index files.
Exit status: 0 everything prefetched (skipped gems aside), 1 a gem or index
file failed (download, HTTP status, checksum mismatch) or an interrupt,
2 bad command line, configuration or lockfile (a file that is not a
lockfile among them), or data directory in use.
`)
}

// prefetchCommand runs gemproxy prefetch and returns the exit status.
func prefetchCommand(args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) int {
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
	allowed := serverURL
	if serverURL != "" {
		if base, err = parseUpstream(serverURL); err != nil {
			return fail(stderr, fmt.Errorf("%s: %w", urlOrigin, err))
		}
	} else {
		if cfg, err = load(fs, lookupEnv); err != nil {
			return fail(stderr, err)
		}
		allowed = cfg.Upstream
	}

	lockfiles, err := prefetch.ReadLockfiles(paths)
	if err != nil {
		return fail(stderr, err)
	}
	plan := prefetch.NewPlan(lockfiles, prefetch.NewRemoteFilter(allowed))

	// The first SIGINT or SIGTERM stops starting downloads; a second one
	// kills as usual.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop)

	out := prefetch.NewProgress(stderr)
	opts := prefetch.Options{Jobs: jobs, Out: out}
	closeCache := func() error { return nil }
	if base != nil {
		opts.Fetcher = prefetch.NewHTTPFetcher(base, jobs, userAgent())
	} else {
		p, store, err := openPrefetchProxy(cfg, out)
		if err != nil {
			return fail(stderr, err)
		}
		opts.Fetcher = prefetch.NewProxyFetcher(p, store)
		closeCache = func() error { return closePrefetchCache(p, store, out) }
	}

	sum := prefetch.Run(ctx, plan, opts)
	status := exitOK
	if err := closeCache(); err != nil {
		fmt.Fprintf(stderr, "gemproxy: prefetch: cache: %v\n", err)
		status = exitFailure
	}
	fmt.Fprintln(stdout, sum)
	if sum.NotAttempted > 0 {
		fmt.Fprintf(stderr, "gemproxy: prefetch interrupted: %d %s not attempted\n", sum.NotAttempted, plural(sum.NotAttempted, "file", "files"))
	}
	if sum.Failed > 0 || sum.NotAttempted > 0 {
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

// userAgent is the User-Agent of prefetch requests through a server.
func userAgent() string { return "gemproxy-prefetch/" + resolvedVersion() }

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

// closePrefetchCache waits for p's background work, enforces the size cap
// as serve's sweeper would, reporting evictions on out, and closes store.
func closePrefetchCache(p *proxy.Proxy, store *cache.Store, out io.Writer) error {
	p.Wait()
	n, err := store.Sweep()
	if n > 0 {
		fmt.Fprintf(out, "gemproxy: max_size reached: %d least recently used %s evicted\n", n, plural(n, "entry", "entries"))
	}
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	return err
}
