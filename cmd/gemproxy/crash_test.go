package main

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// TestCrashDuringFillsAndRestartOffline kills gemproxy with SIGKILL while
// many fills are in flight, checks that `cache verify` finds nothing
// wrong, then restarts it on the same data dir with the upstream
// unreachable and checks that everything a client had received is served.
func TestCrashDuringFillsAndRestartOffline(t *testing.T) {
	up, ts := testupstream.Start(t, testupstream.Options{})
	const gems = 40
	items := make([]testupstream.Item, gems)
	for i := range items {
		items[i] = testupstream.Item{Spec: testupstream.GemSpec{Name: fmt.Sprintf("crash%02d", i), Version: "1.0.0", Padding: 300 << 10}}
	}
	if err := up.PublishAll(items); err != nil {
		t.Fatal(err)
	}
	up.SetLatency(30 * time.Millisecond)
	dataDir := t.TempDir()
	s := startServer(t, nil, "--upstream", ts.URL, "--data-dir", dataDir)

	type got struct {
		path string
		body []byte
	}
	var mu sync.Mutex
	var received []got
	paths := []string{"/versions"}
	for i := 0; i < gems; i++ {
		paths = append(paths, fmt.Sprintf("/gems/crash%02d-1.0.0.gem", i), fmt.Sprintf("/info/crash%02d", i))
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var wg sync.WaitGroup
	firstDone := make(chan struct{}, len(paths))
	for _, p := range paths {
		wg.Add(1)
		go func(p string) {
			defer wg.Done()
			resp, err := client.Get("http://" + s.addr + p)
			if err != nil {
				return // killed mid-response
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			if _, err := b.ReadFrom(resp.Body); err != nil || resp.StatusCode != 200 {
				return
			}
			mu.Lock()
			received = append(received, got{p, b.Bytes()})
			mu.Unlock()
			firstDone <- struct{}{}
		}(p)
	}
	// Kill once some fills completed and others are still running.
	for i := 0; i < 10; i++ {
		<-firstDone
	}
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.wait(t, 5*time.Second)
	wg.Wait()
	mu.Lock()
	t.Logf("killed with %d of %d responses complete", len(received), len(paths))
	mu.Unlock()

	r := runBinary(t, nil, "cache", "verify", "--data-dir", dataDir)
	if r.code != 0 {
		t.Fatalf("cache verify after SIGKILL: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Restart with the upstream gone: every response a client had is served.
	ts.Close()
	s2 := startServer(t, nil, "--upstream", ts.URL, "--data-dir", dataDir)
	for _, g := range received {
		body, code, err := s2.fetch(g.path)
		if err != nil || code != 200 || !bytes.Equal([]byte(body), g.body) {
			t.Errorf("%s after restart with the upstream down: %d %v (%d bytes, want %d)", g.path, code, err, len(body), len(g.body))
		}
	}
	stats := runBinaryInUse(t, dataDir)
	if !strings.Contains(stats, "in use") {
		t.Errorf("cache stats on a running server: %q", stats)
	}
}

// runBinaryInUse runs `cache stats` on a data dir a server holds.
func runBinaryInUse(t *testing.T, dataDir string) string {
	t.Helper()
	r := runBinary(t, nil, "cache", "stats", "--data-dir", dataDir)
	return r.stderr
}
