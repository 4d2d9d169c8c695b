package main

import (
	"time"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/proxy"
)

// Config is gemproxy's whole configuration. It is built by load from
// Defaults, the TOML file, GEMPROXY_* variables and flags, in that order of
// increasing precedence, and checked by Validate. It never leaves package
// main: CacheOptions and ProxyOptions translate it for the packages.
// config.example.toml documents every key; a test keeps it equal to
// Defaults.
type Config struct {
	// File is the configuration file load read, "" when none was given.
	// It is where the settings came from, not a setting.
	File string `toml:"-"`
	// Listen is the host:port the HTTP server listens on. Default ":9292".
	Listen string `toml:"listen"`
	// Upstream is the absolute http(s) base URL of the registry mirrored.
	// Default "https://rubygems.org".
	Upstream string `toml:"upstream"`
	// DataDir holds the cache file; created if missing. Default "./data".
	DataDir string `toml:"data_dir"`
	// LogLevel is debug, info, warn or error (case-insensitive). Default
	// "info".
	LogLevel string `toml:"log_level"`
	// LogFormat is text or json (case-insensitive). Default "text".
	LogFormat string `toml:"log_format"`
	// Offline serves only from the cache, never contacting the upstream:
	// misses get 504 and writes 503. Default false.
	Offline bool `toml:"offline"`
	// AdminToken enables the admin API under /-/ (stats, purge, verify of
	// the running server's cache) for requests bearing it as
	// "Authorization: Bearer TOKEN"; the cache commands' --url sends it.
	// It has no flag, so it never shows in a process listing. Default "":
	// no admin API.
	AdminToken string `toml:"admin_token"`
	// MaxSize caps the bytes cached entries take (bodies, plus keys,
	// headers and cache.EntryOverhead per entry); the sweeper evicts least
	// recently used entries above it. Default 10GiB; 0 means no cap.
	MaxSize Size `toml:"max_size"`
	// MemoryCache bounds the bytes of small bodies kept in memory for fast
	// hits. Default 64MiB; 0 disables in-memory bodies.
	MemoryCache Size `toml:"memory_cache"`
	// MaxNegativeEntries caps the number of remembered 404s; storing one
	// more forgets the oldest. Default 10000; 0 means no cap (the sweeper
	// still drops each once its negative_ttl has passed).
	MaxNegativeEntries int `toml:"max_negative_entries"`
	// KeepYanked keeps a yanked version's .gem and gemspec cached after a
	// yank through gemproxy. Default false.
	KeepYanked bool `toml:"keep_yanked"`
	// MaxBodySize is the largest request body (a gem push) forwarded
	// upstream. Default 500MiB; 0 is invalid.
	MaxBodySize Size `toml:"max_body_size"`
	// UpstreamConcurrency caps concurrent cache fills upstream. Default 32;
	// 0 is invalid.
	UpstreamConcurrency int `toml:"upstream_concurrency"`
	// UpstreamPassThroughConcurrency caps concurrent pass-through reads and
	// writes upstream, in slots of their own: clients pace them, so they
	// never take a cache fill's. Default 32; 0 is invalid.
	UpstreamPassThroughConcurrency int `toml:"upstream_pass_through_concurrency"`
	// UpstreamRedirectHosts lists the hosts (host or host:port) besides the
	// upstream's own that upstream redirects on reads may lead to, such as
	// a CDN serving gems. Default none: gemproxy contacts no other host.
	UpstreamRedirectHosts []string `toml:"upstream_redirect_hosts"`
	// SweepInterval is how often expired 404s are dropped, the size cap is
	// enforced and the cache gauges are refreshed. Default 1m; 0 is invalid.
	SweepInterval Duration `toml:"sweep_interval"`
	// Classes is the cache policy of each class, one [class.CLASS] table
	// per class; the defaults are proxy.DefaultPolicies.
	Classes ClassTables `toml:"class"`
	// Breaker configures the upstream circuit breaker.
	Breaker BreakerConfig `toml:"breaker"`
	// UpstreamTimeouts bounds the phases of an upstream request.
	UpstreamTimeouts UpstreamTimeoutsConfig `toml:"upstream_timeouts"`
	// Server holds the client-facing server limits and shutdown timing.
	Server ServerConfig `toml:"server"`
	// SharedStore is the object store a fleet of replicas shares.
	SharedStore SharedStoreConfig `toml:"shared_store"`
}

// SharedStoreConfig is the [shared_store] table: an S3-compatible bucket
// that the replicas of a fleet share (docs/fleet.md). Credentials and
// region come from the standard AWS chain, never from this file.
type SharedStoreConfig struct {
	// URL is s3://BUCKET/PREFIX. Default "": no shared store.
	URL string `toml:"url"`
	// Endpoint is the URL of an S3-compatible server (MinIO, SeaweedFS,
	// Ceph RGW), addressed path-style. Default "": AWS S3.
	Endpoint string `toml:"endpoint"`
	// VersionsPoll is how often a replica reads the fleet's /versions
	// pointer (proxy.SharedOptions.VersionsPoll). Default
	// proxy.DefaultVersionsPoll.
	VersionsPoll Duration `toml:"versions_poll"`
}

// BreakerConfig is the [breaker] table of the upstream circuit breaker.
type BreakerConfig struct {
	// Failures is how many consecutive upstream failures open the circuit.
	// Default 5; 0 disables the breaker.
	Failures int `toml:"failures"`
	// Backoff is the first open period, doubled after each failed probe.
	// Default 5s; 0 is invalid.
	Backoff Duration `toml:"backoff"`
	// MaxBackoff caps the open period. Default 5m; 0 is invalid.
	MaxBackoff Duration `toml:"max_backoff"`
}

// UpstreamTimeoutsConfig is the [upstream_timeouts] table. Every value must
// be positive. FirstByte and Idle apply to forwarded calls (writes and
// pass-through); cache fills take theirs from their class's policy.
type UpstreamTimeoutsConfig struct {
	// Connect bounds the TCP and TLS handshake. Default 10s.
	Connect Duration `toml:"connect"`
	// FirstByte bounds the wait for response headers. Default 30s.
	FirstByte Duration `toml:"first_byte"`
	// Idle bounds the wait between two body reads. Default 30s.
	Idle Duration `toml:"idle"`
	// Fill bounds one whole coalesced cache fill. Default 10m.
	Fill Duration `toml:"fill"`
}

// ServerConfig is the [server] table.
type ServerConfig struct {
	// ReadTimeout bounds reading one request, body included. Default 60s;
	// 0 is invalid.
	ReadTimeout Duration `toml:"read_timeout"`
	// WriteTimeout bounds writing one response. Default 0: unlimited.
	WriteTimeout Duration `toml:"write_timeout"`
	// IdleTimeout bounds an idle keep-alive connection. Default 120s; 0 is
	// invalid.
	IdleTimeout Duration `toml:"idle_timeout"`
	// MaxHeaderBytes bounds the request line and headers. Default 16384;
	// must be at least 1024.
	MaxHeaderBytes int `toml:"max_header_bytes"`
	// MaxConnections bounds concurrent client connections. Default 10000;
	// 0 is invalid.
	MaxConnections int `toml:"max_connections"`
	// ShutdownGrace is the time between SIGTERM turning /readyz to 503 and
	// the listener closing. Default 5s; 0 closes at once.
	ShutdownGrace Duration `toml:"shutdown_grace"`
	// DrainTimeout is the longest wait for in-flight requests after the
	// listener closed. Default 60s; 0 is invalid.
	DrainTimeout Duration `toml:"drain_timeout"`
}

// Defaults returns the configuration used when nothing else is given:
// the settings of package main's own, and the defaults of the options of
// packages cache and proxy for the others.
func Defaults() Config {
	co := cache.DefaultOptions()
	up := proxy.DefaultUpstreamOptions()
	br := proxy.DefaultBreakerOptions()
	so := proxy.DefaultServerOptions()
	return Config{
		Listen:                         ":9292",
		Upstream:                       "https://rubygems.org",
		DataDir:                        "./data",
		LogLevel:                       "info",
		LogFormat:                      "text",
		MaxSize:                        Size(co.MaxSize),
		MemoryCache:                    Size(co.MemoryBudget),
		MaxNegativeEntries:             co.MaxNegativeEntries,
		MaxBodySize:                    proxy.DefaultMaxBodySize,
		UpstreamConcurrency:            up.MaxConcurrent,
		UpstreamRedirectHosts:          []string{},
		SweepInterval:                  Duration(time.Minute),
		UpstreamPassThroughConcurrency: up.MaxPassThrough,
		Classes:                        classTables(proxy.DefaultPolicies()),
		Breaker:                        BreakerConfig{Failures: br.Failures, Backoff: Duration(br.Backoff), MaxBackoff: Duration(br.MaxBackoff)},
		UpstreamTimeouts: UpstreamTimeoutsConfig{
			Connect:   Duration(up.ConnectTimeout),
			FirstByte: Duration(up.FirstByteTimeout),
			Idle:      Duration(up.IdleTimeout),
			Fill:      Duration(co.FillTimeout),
		},
		Server: ServerConfig{
			ReadTimeout:    Duration(so.ReadTimeout),
			WriteTimeout:   Duration(so.WriteTimeout),
			IdleTimeout:    Duration(so.IdleTimeout),
			MaxHeaderBytes: so.MaxHeaderBytes,
			MaxConnections: so.MaxConnections,
			ShutdownGrace:  Duration(5 * time.Second),
			DrainTimeout:   Duration(60 * time.Second),
		},
		SharedStore: SharedStoreConfig{VersionsPoll: Duration(proxy.DefaultVersionsPoll)},
	}
}
