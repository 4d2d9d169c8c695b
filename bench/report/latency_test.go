package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestMedianRunTakesEachFigureOnItsOwn: with several rounds, each
// percentile, the send lag, the response time and the CPU time are the
// median of that figure over the rounds, not the figures of one median
// round; errors add up.
func TestMedianRunTakesEachFigureOnItsOwn(t *testing.T) {
	run := func(p99, p999, lag float64, errors int64) *latencyRun {
		r := &latencyRun{Rate: 1000, Requests: 10000, Errors: errors, CPU: p99 / 100}
		r.Latency.P50, r.Latency.P99, r.Latency.P999, r.Lag.P99 = p99/10, p99, p999, lag
		r.Lag.P999 = 10000 - lag
		r.Response.P99, r.Response.P999 = 2*lag, p999/2
		return r
	}
	m := medianRun([]*latencyRun{run(1500, 9000, 100, 0), run(1200, 3000, 900, 2), run(50000, 4000, 300, 1)})
	if m.Latency.P99 != 1500 || m.Latency.P999 != 4000 || m.Lag.P99 != 300 || m.Lag.P999 != 9700 || m.Latency.P50 != 150 || m.CPU != 15 || m.Errors != 3 {
		t.Errorf("median run: p50 %v, p99 %v, p99.9 %v, lag %v / %v, CPU %v, errors %d; want 150, 1500, 4000, 300 / 9700, 15, 3",
			m.Latency.P50, m.Latency.P99, m.Latency.P999, m.Lag.P99, m.Lag.P999, m.CPU, m.Errors)
	}
	if m.Response.P99 != 600 || m.Response.P999 != 2000 {
		t.Errorf("median response: p99 %v, p99.9 %v; want 600, 2000", m.Response.P99, m.Response.P999)
	}
}

// TestReadLatencyNeedsEveryRound: a point whose rounds are not all there
// (or one is empty) has no result, so the report marks it invalid rather
// than comparing a median of fewer rounds.
func TestReadLatencyNeedsEveryRound(t *testing.T) {
	dir := t.TempDir()
	write := func(round int, requests int64) {
		b, _ := json.Marshal(latencyRun{Rate: 1000, Requests: requests})
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("latency-row-gemproxy-25-r%d.json", round)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(1, 10000)
	write(2, 10000)
	if runs := readLatency(dir, "row", "gemproxy", "25", 2); len(runs) != 2 {
		t.Fatalf("two rounds written, two asked: got %d", len(runs))
	}
	if runs := readLatency(dir, "row", "gemproxy", "25", 3); runs != nil {
		t.Errorf("three rounds asked, two written: got %d runs, want none", len(runs))
	}
	write(2, 0)
	if runs := readLatency(dir, "row", "gemproxy", "25", 2); runs != nil {
		t.Errorf("round 2 empty: got %d runs, want none", len(runs))
	}
}
