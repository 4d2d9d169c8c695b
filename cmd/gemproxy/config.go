package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

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

// Defaults returns the configuration used when nothing else is given.
func Defaults() Config {
	return Config{
		Listen:                         ":9292",
		Upstream:                       "https://rubygems.org",
		DataDir:                        "./data",
		LogLevel:                       "info",
		LogFormat:                      "text",
		MaxSize:                        10 * GiB,
		MemoryCache:                    64 * MiB,
		MaxNegativeEntries:             10000,
		MaxBodySize:                    500 * MiB,
		UpstreamConcurrency:            32,
		UpstreamRedirectHosts:          []string{},
		SweepInterval:                  Duration(time.Minute),
		UpstreamPassThroughConcurrency: 32,
		Classes:                        classTables(proxy.DefaultPolicies()),
		Breaker:                        BreakerConfig{Failures: 5, Backoff: Duration(5 * time.Second), MaxBackoff: Duration(5 * time.Minute)},
		UpstreamTimeouts: UpstreamTimeoutsConfig{
			Connect:   Duration(10 * time.Second),
			FirstByte: Duration(30 * time.Second),
			Idle:      Duration(30 * time.Second),
			Fill:      Duration(10 * time.Minute),
		},
		Server: ServerConfig{
			ReadTimeout:    Duration(60 * time.Second),
			IdleTimeout:    Duration(120 * time.Second),
			MaxHeaderBytes: 16 << 10,
			MaxConnections: 10000,
			ShutdownGrace:  Duration(5 * time.Second),
			DrainTimeout:   Duration(60 * time.Second),
		},
	}
}

// lockTimeout is how long cache.Open waits for the file lock, so that a
// second gemproxy on the same data directory fails fast.
const lockTimeout = time.Second

// CacheOptions translates c for cache.Open. readOnly opens the file for
// inspection only.
func (c Config) CacheOptions(readOnly bool) cache.Options {
	o := cache.Options{
		LockTimeout:        lockTimeout,
		MaxSize:            int64(c.MaxSize),
		MaxNegativeEntries: c.MaxNegativeEntries,
		MemoryBudget:       int64(c.MemoryCache),
		// Every Bundler run asks for these: keep them in memory whatever
		// their size (within memory_cache), so Range hits never touch bbolt.
		MemoryClasses: []string{string(proxy.ClassVersions), string(proxy.ClassNames)},
		FillTimeout:   time.Duration(c.UpstreamTimeouts.Fill),
		ReadOnly:      readOnly,
	}
	if o.MaxSize == 0 {
		o.MaxSize = -1 // no cap
	}
	if o.MaxNegativeEntries == 0 {
		o.MaxNegativeEntries = -1 // no cap
	}
	if o.MemoryBudget == 0 {
		o.MemoryBodyLimit = -1 // no body is small enough to keep in memory
	}
	return o
}

// ProxyOptions translates c for proxy.New. The caller adds the logger,
// metrics and version. c must have passed Validate.
func (c Config) ProxyOptions() (proxy.Options, error) {
	u, err := parseUpstream(c.Upstream)
	if err != nil {
		return proxy.Options{}, fmt.Errorf("upstream: %w", err)
	}
	o := proxy.Options{
		Upstream: proxy.UpstreamOptions{
			URL:              u,
			ConnectTimeout:   time.Duration(c.UpstreamTimeouts.Connect),
			FirstByteTimeout: time.Duration(c.UpstreamTimeouts.FirstByte),
			IdleTimeout:      time.Duration(c.UpstreamTimeouts.Idle),
			MaxConcurrent:    c.UpstreamConcurrency,
			MaxPassThrough:   c.UpstreamPassThroughConcurrency,
			RedirectHosts:    c.UpstreamRedirectHosts,
		},
		Server: proxy.ServerOptions{
			ReadTimeout:    time.Duration(c.Server.ReadTimeout),
			WriteTimeout:   time.Duration(c.Server.WriteTimeout),
			IdleTimeout:    time.Duration(c.Server.IdleTimeout),
			MaxHeaderBytes: c.Server.MaxHeaderBytes,
			MaxConnections: c.Server.MaxConnections,
		},
		Policies:    c.Classes.policies(),
		MaxBodySize: int64(c.MaxBodySize),
		KeepYanked:  c.KeepYanked,
		Offline:     c.Offline,
		AdminToken:  c.AdminToken,
		Breaker: proxy.BreakerOptions{
			Failures:   c.Breaker.Failures,
			Backoff:    time.Duration(c.Breaker.Backoff),
			MaxBackoff: time.Duration(c.Breaker.MaxBackoff),
		},
	}
	if o.Breaker.Failures == 0 {
		o.Breaker.Failures = -1 // breaker off
	}
	return o, nil
}

// keyError is a Validate failure: the TOML key and what is wrong. load
// replaces the key by where the value came from (file, variable, flag).
type keyError struct {
	// key is the dotted TOML key, e.g. "ttl.info".
	key string
	// problem describes the bad value.
	problem string
}

// Error returns "KEY: PROBLEM".
func (e *keyError) Error() string { return e.key + ": " + e.problem }

// Validate checks every value and returns the first problem as a
// *keyError.
func (c Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &keyError{key: key, problem: fmt.Sprintf(format, args...)}
	}
	if err := checkListen(c.Listen); err != nil {
		return bad("listen", "%v", err)
	}
	if _, err := parseUpstream(c.Upstream); err != nil {
		return bad("upstream", "%v", err)
	}
	if c.DataDir == "" {
		return bad("data_dir", "must not be empty")
	}
	if _, ok := parseLogLevel(c.LogLevel); !ok {
		return bad("log_level", "unknown level %q (want debug, info, warn or error)", c.LogLevel)
	}
	if f := strings.ToLower(c.LogFormat); f != "text" && f != "json" {
		return bad("log_format", "unknown format %q (want text or json)", c.LogFormat)
	}
	if err := checkAdminToken(c.AdminToken); err != nil {
		return bad("admin_token", "%v", err)
	}
	sizes := []struct {
		key     string
		v       Size
		zeroBad bool
	}{
		{"max_size", c.MaxSize, false},
		{"memory_cache", c.MemoryCache, false},
		{"max_body_size", c.MaxBodySize, true},
	}
	for _, s := range sizes {
		switch {
		case s.v < 0:
			return bad(s.key, "must not be negative")
		case s.v == 0 && s.zeroBad:
			return bad(s.key, "must be positive")
		}
	}
	if c.UpstreamConcurrency <= 0 {
		return bad("upstream_concurrency", "must be positive")
	}
	if c.UpstreamPassThroughConcurrency <= 0 {
		return bad("upstream_pass_through_concurrency", "must be positive")
	}
	if c.MaxNegativeEntries < 0 {
		return bad("max_negative_entries", "must not be negative")
	}
	for _, h := range c.UpstreamRedirectHosts {
		if u, err := url.Parse("http://" + h); err != nil || h == "" || u.Host != h {
			return bad("upstream_redirect_hosts", "%q is not a host or host:port", h)
		}
	}
	durations := []struct {
		key     string
		v       Duration
		zeroBad bool
	}{
		{"sweep_interval", c.SweepInterval, true},
		{"breaker.backoff", c.Breaker.Backoff, true},
		{"breaker.max_backoff", c.Breaker.MaxBackoff, true},
		{"upstream_timeouts.connect", c.UpstreamTimeouts.Connect, true},
		{"upstream_timeouts.first_byte", c.UpstreamTimeouts.FirstByte, true},
		{"upstream_timeouts.idle", c.UpstreamTimeouts.Idle, true},
		{"upstream_timeouts.fill", c.UpstreamTimeouts.Fill, true},
		{"server.read_timeout", c.Server.ReadTimeout, true},
		{"server.write_timeout", c.Server.WriteTimeout, false},
		{"server.idle_timeout", c.Server.IdleTimeout, true},
		{"server.shutdown_grace", c.Server.ShutdownGrace, false},
		{"server.drain_timeout", c.Server.DrainTimeout, true},
	}
	for _, d := range durations {
		switch {
		case d.v < 0:
			return bad(d.key, "must not be negative")
		case d.v == 0 && d.zeroBad:
			return bad(d.key, "must be positive")
		}
	}
	if err := c.Classes.validate(); err != nil {
		return err
	}
	if c.Breaker.Failures < 0 {
		return bad("breaker.failures", "must not be negative")
	}
	if c.Breaker.MaxBackoff < c.Breaker.Backoff {
		return bad("breaker.max_backoff", "must not be less than breaker.backoff")
	}
	if c.Server.MaxHeaderBytes < 1024 {
		return bad("server.max_header_bytes", "must be at least 1024")
	}
	if c.Server.MaxConnections <= 0 {
		return bad("server.max_connections", "must be positive")
	}
	return nil
}

// checkListen checks a host:port listen address.
func checkListen(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q (want host:port, e.g. \":9292\")", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid port %q in %q", port, addr)
	}
	return nil
}

// parseUpstream parses an absolute http(s) URL without user info, query or
// fragment.
func parseUpstream(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, fmt.Errorf("invalid URL %q", s)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q is not an http or https URL", s)
	case u.Host == "" || u.Opaque != "":
		return nil, fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return nil, fmt.Errorf("%q must not contain credentials", s)
	case u.RawQuery != "" || u.ForceQuery:
		return nil, fmt.Errorf("%q must not have a query", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, fmt.Errorf("%q must not have a fragment", s)
	}
	return u, nil
}

// parseLogLevel maps a log_level value (case-insensitive) to a slog level.
func parseLogLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}

// ensureDataDir creates dir if missing and checks that a file can be
// created in it.
func ensureDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data_dir %s: cannot create: %w", dir, pathCause(err))
	}
	f, err := os.CreateTemp(dir, ".gemproxy-write-test-*")
	if err != nil {
		return fmt.Errorf("data_dir %s: not writable: %w", dir, pathCause(err))
	}
	name := f.Name()
	_ = f.Close()
	_ = os.Remove(name)
	return nil
}

// pathCause strips the operation and path from a *fs.PathError, whose
// message would repeat the path already named.
func pathCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Size is a byte count written as an integer or a string with a binary
// unit: 500MiB, 10GiB, 64KiB, 1024, "1024B".
type Size int64

// The units a Size may be written in.
const (
	// KiB is 1024 bytes.
	KiB Size = 1 << 10
	// MiB is 1024 KiB.
	MiB Size = 1 << 20
	// GiB is 1024 MiB.
	GiB Size = 1 << 30
	// TiB is 1024 GiB.
	TiB Size = 1 << 40
)

// sizeUnits lists the units of Size from largest to smallest.
func sizeUnits() []struct {
	name string
	mult Size
} {
	return []struct {
		name string
		mult Size
	}{{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}, {"B", 1}}
}

// UnmarshalText parses "10GiB", "500MiB", "64KiB", "1024B" or "1024".
func (s *Size) UnmarshalText(text []byte) error {
	str := strings.TrimSpace(string(text))
	digits := strings.IndexFunc(str, func(r rune) bool { return r < '0' || r > '9' })
	if digits < 0 {
		digits = len(str)
	}
	n, err := strconv.ParseInt(str[:digits], 10, 64)
	unit := strings.TrimSpace(str[digits:])
	mult := Size(0)
	if unit == "" {
		mult = 1
	}
	for _, u := range sizeUnits() {
		if strings.EqualFold(unit, u.name) {
			mult = u.mult
		}
	}
	if err != nil || mult == 0 {
		return fmt.Errorf("invalid size %q (want bytes, or a number with B, KiB, MiB, GiB or TiB)", string(text))
	}
	if Size(n) > Size(math.MaxInt64)/mult {
		return fmt.Errorf("invalid size %q: too large", string(text))
	}
	*s = Size(n) * mult
	return nil
}

// MarshalText writes s with the largest unit that divides it.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// String writes s with the largest unit that divides it, e.g. "10GiB".
func (s Size) String() string {
	if s == 0 {
		return "0"
	}
	for _, u := range sizeUnits() {
		if s%u.mult == 0 {
			return strconv.FormatInt(int64(s/u.mult), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// Duration is a time.Duration written as a Go duration string ("60s",
// "10m", "1h30m") or "unlimited" (a bound that never runs out).
type Duration time.Duration

// unlimited is how a Duration of proxy.Unlimited is written.
const unlimited = "unlimited"

// UnmarshalText parses a Go duration string or "unlimited".
func (d *Duration) UnmarshalText(text []byte) error {
	if string(text) == unlimited {
		*d = Duration(proxy.Unlimited)
		return nil
	}
	v, err := time.ParseDuration(string(text))
	if err != nil {
		if _, numErr := strconv.ParseInt(string(text), 10, 64); numErr == nil {
			return fmt.Errorf("invalid duration %q: missing unit (e.g. \"%ss\")", string(text), string(text))
		}
		return fmt.Errorf("invalid duration %q", string(text))
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String writes d as a Go duration string, or "unlimited".
func (d Duration) String() string {
	if time.Duration(d) == proxy.Unlimited {
		return unlimited
	}
	return time.Duration(d).String()
}

// envConfig names the variable holding the config file path.
const envConfig = "GEMPROXY_CONFIG"

// flagConfig names the flag holding the config file path.
const flagConfig = "config"

// setting is a key that can also be set from the environment and, for the
// commands that offer it, a flag.
type setting struct {
	// key is the TOML key.
	key string
	// flag is the flag name, used as --flag.
	flag string
	// env is the environment variable.
	env string
	// arg names the flag's value in the usage text.
	arg string
	// usage describes the setting in the usage text.
	usage string
	// field returns a *string or *bool pointing into c.
	field func(c *Config) any
}

// settings lists the keys settable from the environment and flags.
func settings() []setting {
	return []setting{
		{"listen", "listen", "GEMPROXY_LISTEN", "ADDR", "address to listen on, host:port",
			func(c *Config) any { return &c.Listen }},
		{"upstream", "upstream", "GEMPROXY_UPSTREAM", "URL", "registry to mirror, an absolute http(s) URL",
			func(c *Config) any { return &c.Upstream }},
		{"data_dir", "data-dir", "GEMPROXY_DATA_DIR", "DIR", "directory of the cache file; serve creates it if missing",
			func(c *Config) any { return &c.DataDir }},
		{"log_level", "log-level", "GEMPROXY_LOG_LEVEL", "LEVEL", "debug, info, warn or error",
			func(c *Config) any { return &c.LogLevel }},
		{"log_format", "log-format", "GEMPROXY_LOG_FORMAT", "FORMAT", "text or json",
			func(c *Config) any { return &c.LogFormat }},
		{"offline", "offline", "GEMPROXY_OFFLINE", "", "serve from the cache only, never contacting the upstream (misses 504, writes 503)",
			func(c *Config) any { return &c.Offline }},
		// No flag: a token on the command line would show in ps.
		{"admin_token", "", envAdminToken, "", "",
			func(c *Config) any { return &c.AdminToken }},
	}
}

// apply sets s in c from its string form.
func (s setting) apply(c *Config, v string) error {
	switch p := s.field(c).(type) {
	case *string:
		*p = v
	case *bool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("invalid boolean %q", v)
		}
		*p = b
	}
	return nil
}

// current returns s's value in c as a string.
func (s setting) current(c *Config) string {
	switch p := s.field(c).(type) {
	case *string:
		return *p
	case *bool:
		return strconv.FormatBool(*p)
	}
	return ""
}

// flagValue is the flag.Value of a setting: it only records the string;
// load applies it after the file and the environment.
type flagValue struct {
	// value is the last value given, or the default for the usage text.
	value string
	// isBool makes "--flag" alone mean true.
	isBool bool
}

// String returns the recorded value.
func (v *flagValue) String() string { return v.value }

// Set records a value; a boolean is checked at once.
func (v *flagValue) Set(s string) error {
	if v.isBool {
		if _, err := strconv.ParseBool(s); err != nil {
			return errors.New("want true or false")
		}
	}
	v.value = s
	return nil
}

// IsBoolFlag reports whether the flag needs no value.
func (v *flagValue) IsBoolFlag() bool { return v.isBool }

// newFlagSet returns a flag set named name with --config and a flag for
// each setting whose key is in keys. Errors and usage are left to the
// caller: the set prints nothing.
func newFlagSet(name string, keys ...string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.String(flagConfig, "", "TOML configuration file")
	d := Defaults()
	for _, s := range settings() {
		for _, k := range keys {
			if k == s.key {
				_, isBool := s.field(&d).(*bool)
				fs.Var(&flagValue{value: s.current(&d), isBool: isBool}, s.flag, s.usage)
			}
		}
	}
	return fs
}

// load runs the configuration pipeline over the parsed flag set fs:
// Defaults, then the TOML file (--config, else GEMPROXY_CONFIG), then the
// GEMPROXY_* variables from lookupEnv (an empty variable counts as unset),
// then the flags given on the command line, then Validate. An error names
// where the bad value came from: "config PATH: KEY", the variable, or the
// flag.
func load(fs *flag.FlagSet, lookupEnv func(string) (string, bool)) (Config, error) {
	c := Defaults()
	// origin maps a key to where its value came from, for error messages.
	origin := make(map[string]string)

	path := ""
	if v, ok := lookupEnv(envConfig); ok && v != "" {
		path = v
	}
	given := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given[flagConfig] {
		path = fs.Lookup(flagConfig).Value.String()
	}
	if path != "" {
		keys, err := decodeFile(path, &c)
		if err != nil {
			return Config{}, err
		}
		for _, k := range keys {
			origin[k] = "config " + path + ": " + k
		}
	}

	for _, s := range settings() {
		v, ok := lookupEnv(s.env)
		if !ok || v == "" {
			continue
		}
		if err := s.apply(&c, v); err != nil {
			return Config{}, fmt.Errorf("%s: %w", s.env, err)
		}
		origin[s.key] = s.env
	}

	for _, s := range settings() {
		if !given[s.flag] {
			continue
		}
		if err := s.apply(&c, fs.Lookup(s.flag).Value.String()); err != nil {
			return Config{}, fmt.Errorf("--%s: %w", s.flag, err)
		}
		origin[s.key] = "--" + s.flag
	}

	if err := c.Validate(); err != nil {
		var ke *keyError
		if errors.As(err, &ke) {
			if where, ok := originOf(origin, ke.key); ok {
				return Config{}, fmt.Errorf("%s: %s", where, ke.problem)
			}
		}
		return Config{}, err
	}
	return c, nil
}

// originOf finds where key's value came from: the key itself, or the
// closest enclosing table given (a [class.info] table decoded as a whole).
func originOf(origin map[string]string, key string) (string, bool) {
	for k := key; k != ""; {
		if where, ok := origin[k]; ok && k == key {
			return where, true
		} else if ok {
			return strings.TrimSuffix(where, k) + key, true
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return "", false
}

// decodeFile decodes the TOML file at path over c and returns the keys it
// defines. Syntax errors, bad values and unknown keys are reported as
// "config PATH: ..." with the key or line.
func decodeFile(path string, c *Config) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: cannot read: %w", path, pathCause(err))
	}
	// A schema-free decode first, so that syntax errors are told apart
	// from bad values and reported with their line.
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("config %s: line %d: %s", path, pe.Position.Line, pe.Message)
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, fmt.Errorf("config %s: %s", path, describeDecodeError(err))
	}
	if unknown := topmostKeys(md.Undecoded()); len(unknown) == 1 {
		return nil, fmt.Errorf("config %s: %s: unknown key", path, unknown[0])
	} else if len(unknown) > 1 {
		return nil, fmt.Errorf("config %s: unknown keys %s", path, strings.Join(unknown, ", "))
	}
	var keys []string
	for _, k := range md.Keys() {
		keys = append(keys, k.String())
	}
	return keys, nil
}

// describeDecodeError renders a toml.Decode error as "KEY: PROBLEM". Bad
// values come as toml.ParseError; type mismatches are untyped errors of the
// form `toml: line 3 (last key "ttl.info"): incompatible types: ...`.
func describeDecodeError(err error) string {
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.LastKey != "" {
		if strings.HasPrefix(pe.Message, pe.LastKey+".") {
			return pe.Message // a table's own decoder named the key inside it
		}
		return pe.LastKey + ": " + pe.Message
	}
	msg := err.Error()
	const marker = `(last key "`
	if i := strings.Index(msg, marker); i >= 0 {
		rest := msg[i+len(marker):]
		if j := strings.Index(rest, `"): `); j >= 0 {
			return rest[:j] + ": " + rest[j+len(`"): `):]
		}
	}
	return msg
}

// topmostKeys renders keys as dotted strings, dropping those whose parent
// is in the list too (an unknown table is reported once).
func topmostKeys(keys []toml.Key) []string {
	seen := make(map[string]bool, len(keys))
	var out []string
	for _, k := range keys {
		parent := false
		for i := 1; i < len(k); i++ {
			if seen[k[:i].String()] {
				parent = true
				break
			}
		}
		seen[k.String()] = true
		if !parent {
			out = append(out, k.String())
		}
	}
	return out
}
