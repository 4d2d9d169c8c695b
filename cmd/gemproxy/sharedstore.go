package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/blobstore/s3store"
	"github.com/gemproxy/gemproxy/internal/proxy"
)

// sharedProbeTimeout bounds the capability probe at start.
const sharedProbeTimeout = 30 * time.Second

// openSharedStore connects to the shared store of c, probes what its
// writes can do and logs the mode that runs. A store that cannot be
// reached or probed is logged and left out: the replica serves alone, as
// serving never depends on the shared store. c must have passed Validate.
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
	mode, err := blobstore.Probe(probeCtx, s)
	if err != nil {
		log.Warn("shared store unreachable at start; running without it", "url", c.URL, "error", err)
		return proxy.SharedOptions{}
	}
	if mode == blobstore.Unconditional {
		log.Warn("shared store ignores conditional writes: sharing gems and quick specs only, no fleet-wide coalescing, /versions per replica",
			"url", c.URL, "mode", mode.String())
	} else {
		log.Info("shared store ready: gems, quick specs, claims and the /versions pointer shared", "url", c.URL, "endpoint", c.Endpoint, "mode", mode.String())
	}
	return proxy.SharedOptions{Store: s, Mode: mode, VersionsPoll: time.Duration(c.VersionsPoll)}
}
