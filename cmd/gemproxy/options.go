package main

import (
	"fmt"
	"time"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/proxy"
)

// CacheOptions translates c for cache.Open. readOnly opens the file for
// inspection only. The lock timeout is the cache's default, short enough
// that a second gemproxy on the same data directory fails fast.
func (c Config) CacheOptions(readOnly bool) cache.Options {
	o := cache.Options{
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
