package proxy

import (
	"context"
	"log/slog"
	"time"

	"github.com/gemproxy/gemproxy/internal/blobstore"
	"github.com/gemproxy/gemproxy/internal/metrics"
)

// DefaultProbeRetry is the first wait before probing again a shared store
// that could not be probed at start, when SharedOptions.ProbeRetry is
// zero.
const DefaultProbeRetry = time.Second

// maxProbeRetry bounds the wait between two probes.
const maxProbeRetry = time.Minute

// probeTimeout bounds one background probe, in case the store's own
// deadlines do not.
const probeTimeout = 30 * time.Second

// lateProbe probes, in the background, a shared store that could not be
// probed at start (SharedOptions.Unprobed), until the probe succeeds and
// the tier is switched on, the store refuses it for good, or Proxy.Wait
// stops it. Until then the tier is off: the replica serves alone.
type lateProbe struct {
	// retry is the first wait before a probe, doubled after each failure.
	retry time.Duration
	// stop ends the loop and done is closed once it has returned; both are
	// set by startProbing, before the proxy serves.
	stop context.CancelFunc
	done chan struct{}
}

// newLateProbe is the state of the background probe, waiting retry
// (DefaultProbeRetry when zero) before its first probe.
func newLateProbe(retry time.Duration) *lateProbe {
	if retry <= 0 {
		retry = DefaultProbeRetry
	}
	return &lateProbe{retry: retry}
}

// startProbing starts the background probe of a tier that is off; it does
// nothing for a tier probed at start, or without a tier.
func (f *filler) startProbing() {
	if f.shared == nil || f.shared.probe == nil {
		return
	}
	lp := f.shared.probe
	ctx, stop := context.WithCancel(context.Background())
	lp.stop, lp.done = stop, make(chan struct{})
	go f.probeUntilOn(ctx, lp.retry, lp.done)
}

// stopProbing stops the background probe, if it runs, and waits until it
// has returned. The tier stays as it is.
func (f *filler) stopProbing() {
	if f.shared == nil || f.shared.probe == nil {
		return
	}
	f.shared.probe.stop()
	<-f.shared.probe.done
}

// probeUntilOn probes the store after retry, and again after doubling
// waits up to maxProbeRetry, until a probe succeeds (the tier switches on:
// switchOnLate), fails with an error that is not worth trying again (the
// tier stays off, logged) or ctx ends; then it closes done.
func (f *filler) probeUntilOn(ctx context.Context, retry time.Duration, done chan struct{}) {
	defer close(done)
	start, wait := time.Now(), retry
	for {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		mode, err := f.probeOnce(ctx)
		switch {
		case err == nil:
			f.switchOnLate(mode, time.Since(start))
			return
		case ctx.Err() != nil:
			return
		case !blobstore.ProbeRetryable(err):
			f.shared.store.m.SetState(metrics.SharedOff)
			f.log.Warn("shared store refused the probe; running without it until restarted", "error", err)
			return
		}
		wait = min(2*wait, maxProbeRetry)
		f.log.Debug("shared store still unreachable; probing it again later", "error", err, "wait", wait)
	}
}

// probeOnce probes the metered store, bounded by probeTimeout.
func (f *filler) probeOnce(ctx context.Context) (blobstore.Mode, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	return blobstore.Probe(ctx, f.shared.store)
}

// switchOnLate switches the tier on in mode, found by a probe after the
// replica had served alone for off, says so in the log, and wakes the
// worker of pending uploads, which uploads what was filled meanwhile.
func (f *filler) switchOnLate(mode blobstore.Mode, off time.Duration) {
	f.shared.switchOn(mode)
	LogSharedMode(f.log, mode, "probed_late_after", off.Round(time.Millisecond))
	f.shared.pending.wakeUp()
}

// LogSharedMode logs the mode a shared store runs in, with attrs (the
// store's address): INFO when it honours conditional writes, a WARN
// otherwise, as the replicas then share less.
func LogSharedMode(log *slog.Logger, mode blobstore.Mode, attrs ...any) {
	attrs = append(attrs, "mode", mode.String())
	if mode == blobstore.Conditional {
		log.Info("shared store on: gems, quick specs, claims and the /versions pointer shared", attrs...)
		return
	}
	log.Warn("shared store ignores conditional writes: sharing gems and quick specs only, no fleet-wide coalescing, /versions per replica", attrs...)
}
