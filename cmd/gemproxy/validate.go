package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/gemproxy/gemproxy/internal/blobstore"
)

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
	if err := checkAdminToken(c.AdminToken); err != nil {
		return bad("admin_token", "%v", err)
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
	if err := checkBounds([]bound[Size]{
		{"max_size", c.MaxSize, false},
		{"memory_cache", c.MemoryCache, false},
		{"max_body_size", c.MaxBodySize, true},
	}); err != nil {
		return err
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
	if err := checkBounds([]bound[Duration]{
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
	}); err != nil {
		return err
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
	return c.SharedStore.validate()
}

// validate checks the [shared_store] table.
func (s SharedStoreConfig) validate() error {
	if err := checkBounds([]bound[Duration]{{"shared_store.versions_poll", s.VersionsPoll, true}}); err != nil {
		return err
	}
	if s.URL != "" {
		if _, _, err := parseSharedStore(s.URL); err != nil {
			return &keyError{key: "shared_store.url", problem: err.Error()}
		}
	}
	if s.Endpoint == "" {
		return nil
	}
	if s.URL == "" {
		return &keyError{key: "shared_store.endpoint", problem: "set without shared_store.url"}
	}
	if _, err := parseUpstream(s.Endpoint); err != nil {
		return &keyError{key: "shared_store.endpoint", problem: err.Error()}
	}
	return nil
}

// parseSharedStore splits s3://BUCKET/PREFIX into the bucket and the key
// prefix (blobstore.CheckKey's rules, "" for none).
func parseSharedStore(s string) (bucket, prefix string, err error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", "", fmt.Errorf("invalid URL %q", s)
	case u.Scheme != "s3" || u.Host == "":
		return "", "", fmt.Errorf("%q is not s3://BUCKET/PREFIX", s)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return "", "", fmt.Errorf("%q must not have credentials, a query or a fragment", s)
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		if err := blobstore.CheckKey(prefix); err != nil {
			return "", "", fmt.Errorf("prefix of %q: %w", s, err)
		}
	}
	return u.Host, prefix, nil
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

// bound is a numeric setting whose sign is checked: negative is refused,
// and zero too when zeroBad.
type bound[T ~int64] struct {
	// key is the dotted TOML key.
	key string
	// v is the value.
	v T
	// zeroBad refuses zero.
	zeroBad bool
}

// checkBounds returns the first bound out of range as a *keyError.
func checkBounds[T ~int64](bounds []bound[T]) error {
	for _, b := range bounds {
		switch {
		case b.v < 0:
			return &keyError{key: b.key, problem: "must not be negative"}
		case b.v == 0 && b.zeroBad:
			return &keyError{key: b.key, problem: "must be positive"}
		}
	}
	return nil
}
