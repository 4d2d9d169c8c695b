package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/blobstore/s3store"
	"github.com/gemproxy/gemproxy/internal/proxy"
)

// sharedProbeTimeout bounds the capability probe at start, short so that a
// store that is down does not hold back readiness: the proxy probes it
// again in the background.
const sharedProbeTimeout = 5 * time.Second

// openSharedStore connects to the shared store of c, probes what its
// writes can do and logs the mode that runs. A store that cannot be
// reached at start (blobstore.ProbeRetryable) is handed over unprobed:
// the replica serves alone and the proxy probes it again in the
// background, switching the tier on once it answers. A store that refuses
// the probe otherwise (access denied, no such bucket) is logged and left
// out until a restart. Serving never depends on the shared store. c must
// have passed Validate.
func openSharedStore(ctx context.Context, c SharedStoreConfig, log *slog.Logger) proxy.SharedOptions {
	if c.URL == "" {
		return proxy.SharedOptions{}
	}
	bucket, prefix, _ := parseSharedStore(c.URL)
	s, err := s3store.New(ctx, s3store.Options{Bucket: bucket, Prefix: prefix, Endpoint: c.Endpoint, Logger: log})
	if err != nil {
		log.Warn("shared store unusable; running without it", "url", c.URL, "error", err)
		return proxy.SharedOptions{}
	}
	probeCtx, cancel := context.WithTimeout(ctx, sharedProbeTimeout)
	defer cancel()
	opts := proxy.SharedOptions{Store: s, VersionsPoll: time.Duration(c.VersionsPoll)}
	opts.Mode, err = blobstore.Probe(probeCtx, s)
	switch {
	case err == nil:
		proxy.LogSharedMode(log, opts.Mode, "url", c.URL, "endpoint", c.Endpoint)
		return opts
	case blobstore.ProbeRetryable(err):
		log.Warn("shared store unreachable at start; serving alone and probing it again in the background", "url", c.URL, "error", err)
		opts.Unprobed = true
		return opts
	}
	log.Warn("shared store refused the probe at start; running without it until restarted", "url", c.URL, "error", err)
	return proxy.SharedOptions{}
}
