package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gemproxy/gemproxy/internal/accesslog"
	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/proxy"
	"github.com/gemproxy/gemproxy/internal/status"
)

// serveFlagSet returns the flags of gemproxy serve: --config and one per
// setting.
func serveFlagSet() *flag.FlagSet {
	return newFlagSet("serve", "listen", "upstream", "data_dir", "log_level", "log_format", "offline",
		"shared_store.url", "shared_store.endpoint", "shared_store.versions_poll")
}

// serve runs the proxy until SIGTERM or SIGINT and returns the exit status.
// usage prints the help for --help. It owns the process: besides the
// signals, the memory limit and the PID file, once its configuration is
// valid it re-executes the process with the runtime setting that keeps
// sysmon from parking (execKeepingSysmonAwake).
func serve(args []string, stdout, stderr io.Writer, lookupEnv func(string) (string, bool), usage func(io.Writer)) int {
	fs := serveFlagSet()
	rest, code, ok := parseArgs(fs, args, stdout, stderr, usage)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		return fail(stderr, fmt.Errorf("serve: unexpected argument %q", rest[0]))
	}
	cfg, err := load(fs, lookupEnv)
	if err != nil {
		return fail(stderr, err)
	}
	// Before anything is opened, and after the command line and the
	// configuration are known to be good, so that their errors come from
	// this run alone and without the runtime's output.
	if err := execKeepingSysmonAwake(); err != nil {
		fmt.Fprintf(stderr, "gemproxy: warning: %v; serving without it\n", err)
	}
	// Signals are caught from here, before anything is opened, so one
	// arriving during start-up still shuts down in order (and one before
	// this point ends a process that holds nothing yet).
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)

	// Bound first: a start that fails on a busy port creates nothing.
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fail(stderr, fmt.Errorf("listen %s: %w", cfg.Listen, listenCause(err)))
	}
	defer func() { _ = ln.Close() }()
	if err := ensureDataDir(cfg.DataDir); err != nil {
		return fail(stderr, err)
	}
	log := newLogger(cfg, stderr)
	ver := resolvedVersion()
	if limit, ok := defaultMemoryLimit(cfg, lookupEnv); ok {
		debug.SetMemoryLimit(limit)
	}

	reg := prometheus.NewRegistry()
	m := metrics.New(reg, metrics.Options{
		Endpoints: proxy.MetricEndpoints(),
		Classes:   classNames(),
		Version:   ver,
		Revision:  buildRevision(),
	})

	store, err := cache.Open(cfg.DataDir, cfg.CacheOptions(false))
	if err != nil {
		return fail(stderr, describeOpenError(cfg.DataDir, err, "locked by another gemproxy process"+lockHolder(cfg.DataDir)))
	}
	// closeStore is deferred from here on; it runs once, after the server
	// and the sweeper have stopped.
	closeStore := sync.OnceValue(store.Close)
	defer func() { _ = closeStore() }()
	// The PID file goes while the lock is still held (defers run last in,
	// first out).
	removePIDFile, err := writePIDFile(cfg.DataDir)
	if err != nil {
		log.Warn("cannot write the PID file", "err", err)
	}
	defer removePIDFile()

	popts, err := cfg.ProxyOptions()
	if err != nil {
		return fail(stderr, err)
	}
	// The access log is closed once the server has stopped, after the last
	// request's line; the deferred call only covers the early returns.
	access := newAccessLog(cfg, stderr)
	closeAccess := sync.OnceValue(access.Close)
	defer func() { _ = closeAccess() }()
	popts.Logger, popts.AccessLog, popts.Metrics, popts.MetricsHandler, popts.Version = log, access, m, m.Handler(reg), ver
	popts.Status = status.New(reg, status.Options{Upstream: cfg.Upstream, MaxSize: int64(cfg.MaxSize)})
	popts.Shared = openSharedStore(context.Background(), cfg.SharedStore, log)
	p, err := proxy.New(store, popts)
	if err != nil {
		return fail(stderr, fmt.Errorf("proxy: %w", err))
	}
	if cfg.Offline {
		log.Warn("offline mode: the upstream is never contacted; misses get 504, writes 503")
	}

	sweepCtx, stopSweeper := context.WithCancel(context.Background())
	var sweeper sync.WaitGroup
	reportUsage(store, m)
	sweeper.Go(func() { popts.Status.Run(sweepCtx) })
	sweeper.Go(func() {
		store.RunSweeper(sweepCtx, time.Duration(cfg.SweepInterval), func(evicted int, err error) {
			if err != nil {
				log.Error("cache sweep failed", "err", err)
			}
			if evicted > 0 {
				m.CacheEvictions.Add(float64(evicted))
				log.Info("cache size cap enforced", "evicted", evicted)
			}
			reportUsage(store, m)
		})
	})

	app := p.App()
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "upstream", cfg.Upstream, "data_dir", cfg.DataDir, "version", ver,
		"config", cmp.Or(cfg.File, "none (built-in defaults, GEMPROXY_* and flags)"), "memory_limit", debug.SetMemoryLimit(-1))

	status := exitOK
	select {
	case err := <-served:
		// The server stopped on its own: nothing left to drain.
		log.Error("server stopped", "err", err)
		status = exitFailure
	case sig := <-sigs:
		grace := time.Duration(cfg.Server.ShutdownGrace)
		log.Info("shutting down: draining", "signal", sig.String(), "shutdown_grace", grace.String(),
			"drain_timeout", cfg.Server.DrainTimeout.String(), "hint", "a second Ctrl-C or SIGTERM skips the rest of shutdown_grace")
		p.Drain()
		t := time.NewTimer(grace)
		select {
		case <-t.C:
		case sig := <-sigs:
			log.Info("second signal: closing the listener now", "signal", sig.String())
		}
		t.Stop()
		if err := app.ShutdownWithTimeout(time.Duration(cfg.Server.DrainTimeout)); err != nil {
			log.Warn("in-flight requests did not finish within drain_timeout", "err", err)
		}
		// Serve may not have registered the listener when the signal came;
		// closing it ourselves makes sure Serve returns.
		_ = ln.Close()
		<-served
	}

	if err := closeAccess(); err != nil {
		log.Error("writing the access log failed", "err", err)
	}
	stopSweeper()
	sweeper.Wait()
	p.Wait() // background refreshes finish (bounded by the upstream timeouts)
	removePIDFile()
	if err := closeStore(); err != nil {
		log.Error("closing the cache failed", "err", err)
		return exitFailure
	}
	log.Info("stopped")
	return status
}

// newLogger builds the slog logger configured by c, writing to w.
func newLogger(c Config, w io.Writer) *slog.Logger {
	level, _ := parseLogLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(c.LogFormat, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newAccessLog builds the access log configured by c, writing to w, or
// returns nil when the log level hides its INFO lines.
func newAccessLog(c Config, w io.Writer) *accesslog.Logger {
	if level, _ := parseLogLevel(c.LogLevel); level > slog.LevelInfo {
		return nil
	}
	format := accesslog.Text
	if strings.EqualFold(c.LogFormat, "json") {
		format = accesslog.JSON
	}
	return accesslog.New(w, accesslog.Options{Format: format})
}

// classNames lists proxy.Classes as strings.
func classNames() []string {
	out := make([]string, len(proxy.Classes))
	for i, c := range proxy.Classes {
		out[i] = string(c)
	}
	return out
}

// reportUsage sets the cache gauges of every class from store.Stats; a
// class with no entries is set to zero.
func reportUsage(store *cache.Store, m *metrics.Metrics) {
	st := store.Stats()
	for _, c := range proxy.Classes {
		cs := st.Classes[string(c)]
		m.SetCacheUsage(string(c), cs.Entries, cs.Bytes)
	}
	for _, name := range slices.Sorted(maps.Keys(st.Classes)) {
		if !slices.Contains(proxy.Classes, proxy.Class(name)) {
			m.SetCacheUsage(name, st.Classes[name].Entries, st.Classes[name].Bytes)
		}
	}
}

// describeOpenError renders a cache.Open failure for dir; locked is the
// message for cache.ErrLocked.
func describeOpenError(dir string, err error, locked string) error {
	if errors.Is(err, cache.ErrLocked) {
		return fmt.Errorf("data_dir %s: %s", dir, locked)
	}
	return fmt.Errorf("data_dir %s: %w", dir, err)
}

// listenCause strips the "listen tcp ADDR" prefix of a net.Listen error,
// which the caller's message already says.
func listenCause(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}
