package s3store_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/blobstore/s3store"
	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/proxy"
	"github.com/gemproxy/gemproxy/internal/testupstream"
	"github.com/gemproxy/gemproxy/internal/testweed"
)

// TestFleetStoreStoppedAtStart: a replica whose probe at start finds
// SeaweedFS stopped (SIGSTOP: a timeout, worth trying again) starts with
// the shared tier off and serves a gem from the upstream with no wait for
// the store; once SeaweedFS resumes, the background probe switches the
// tier on, conditional, without a restart, and the gem fetched meanwhile
// reaches the bucket.
func TestFleetStoreStoppedAtStart(t *testing.T) {
	const timeout = 500 * time.Millisecond
	gem, err := testupstream.BuildGem(fleetGem)
	if err != nil {
		t.Fatal(err)
	}
	s := s3store.QuickWeedStore(t, timeout)
	up, ts := testupstream.Start(t, testupstream.Options{})
	up.Publish(fleetGem, gem)

	resume := testweed.Start(t).Pause(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*timeout)
	_, err = blobstore.Probe(ctx, s)
	cancel()
	if !blobstore.ProbeRetryable(err) {
		t.Fatalf("probe of the stopped store: %v, want an error worth trying again", err)
	}
	m := metrics.New(nil, metrics.Options{Endpoints: proxy.MetricEndpoints()})
	r := startReplica(t, ts.URL, s, "late", func(o *proxy.Options) {
		o.Shared = proxy.SharedOptions{Store: s, Unprobed: true, ProbeRetry: 100 * time.Millisecond, Replica: "late"}
		o.Metrics = m
	})
	start := time.Now()
	code, body, err := getBody(r + fleetGemPath)
	if err != nil || code != http.StatusOK || !bytes.Equal(body, gem) {
		t.Fatalf("%s with the store stopped: %d, %d bytes, %v", fleetGemPath, code, len(body), err)
	}
	if d := time.Since(start); d >= timeout {
		t.Errorf("served after %v with the store stopped, want no wait for its timeout of %v", d, timeout)
	}

	resume()
	resumed := time.Now()
	// The store's breaker, opened by the failed probes, lets one through
	// after its back-off (5 s).
	waitForObject(t, s, fleetGemKey, gem)
	t.Logf("resumed: the gem reached the store %v later", time.Since(resumed).Round(100*time.Millisecond))
	if g := testutil.ToFloat64(m.SharedStore.State.WithLabelValues(metrics.SharedConditional.String())); g != 1 {
		t.Errorf("state conditional once the gem is uploaded: %v, want 1", g)
	}
}
