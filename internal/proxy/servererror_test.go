package proxy

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// logCapture collects a proxy's JSON log lines.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// capture makes o log into lc at WARN and above.
func (lc *logCapture) capture(o *Options) {
	o.Logger = slog.New(slog.NewJSONHandler(&syncWriter{w: &lc.buf, mu: &lc.mu}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// serverErrors returns the "server error" lines logged for path.
func (lc *logCapture) serverErrors(t *testing.T, path string) []map[string]any {
	t.Helper()
	lc.mu.Lock()
	defer lc.mu.Unlock()
	var found []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(lc.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == "server error" && rec["path"] == path {
			found = append(found, rec)
		}
	}
	return found
}

// TestServerErrorsAreLoggedAndNameNoAddress: each induced 5xx is logged once
// at WARN with method, path, endpoint, status and reason, and its body
// never names the upstream's address.
func TestServerErrorsAreLoggedAndNameNoAddress(t *testing.T) {
	tests := []struct {
		name         string
		breaker      BreakerOptions
		downUpstream bool
		setup        func(tp *testProxy, up *testupstream.Server)
		method, path string
		header       []string
		endpoint     string
		status       int
		reason       string
	}{
		{name: "upstream 500", setup: func(_ *testProxy, up *testupstream.Server) {
			up.SetFault("/api/v1/gems/faulty.json", testupstream.Fault{Status: 500})
		}, method: "GET", path: "/api/v1/gems/faulty.json", endpoint: "api_gem", status: 502, reason: "upstream answered 500"},
		{name: "timeout", setup: func(_ *testProxy, up *testupstream.Server) {
			up.SetLatency(5 * time.Second)
		}, method: "GET", path: "/names", endpoint: "names", status: 504, reason: "first-byte timeout"},
		{name: "circuit open", breaker: BreakerOptions{Failures: 1, Backoff: time.Minute, MaxBackoff: time.Minute},
			setup: func(tp *testProxy, up *testupstream.Server) {
				up.SetFault("/names", testupstream.Fault{Status: 500})
				tp.do(t, "GET", "/names")
			}, method: "GET", path: "/versions", endpoint: "versions", status: 502, reason: "circuit open"},
		{name: "checksum mismatch", setup: func(_ *testProxy, up *testupstream.Server) {
			up.SetFault("/gems/", testupstream.Fault{Corrupt: true})
		}, method: "GET", path: "/gems/faulty-1.0.0.gem", endpoint: "gem", status: 502, reason: "SHA-256"},
		{name: "upstream down", downUpstream: true,
			method: "GET", path: "/info/rack", endpoint: "info", status: 502, reason: "connection refused"},
		{name: "upstream down on a write", downUpstream: true,
			method: "POST", path: "/api/v1/gems", header: []string{"Authorization", "key"}, endpoint: "push", status: 502, reason: "connection refused"},
		{name: "readiness while draining", setup: func(tp *testProxy, _ *testupstream.Server) {
			tp.draining.Store(true)
		}, method: "GET", path: "/readyz", endpoint: "readyz", status: 503, reason: "draining"},
		{name: "upstream 500 passed on", setup: func(_ *testProxy, up *testupstream.Server) {
			up.SetFault("/api/v1/gems", testupstream.Fault{Status: 500})
		}, method: "POST", path: "/api/v1/gems", header: []string{"Authorization", "key"}, endpoint: "push", status: 500, reason: "upstream answered 500"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs logCapture
			tweak := func(o *Options) {
				logs.capture(o)
				if tc.breaker.Failures != 0 {
					o.Breaker = tc.breaker
				}
			}
			var tp *testProxy
			if tc.downUpstream {
				tp = newTestProxy(t, "http://"+testupstream.FreeAddr(t), tweak)
			} else {
				var up *testupstream.Server
				tp, up = newFaultProxy(t, tweak)
				tc.setup(tp, up)
			}
			resp, body := tp.do(t, tc.method, tc.path, tc.header...)
			if resp.StatusCode != tc.status {
				t.Fatalf("%s %s: %d %q, want %d", tc.method, tc.path, resp.StatusCode, body, tc.status)
			}
			if addr := tp.opts.Upstream.URL.Host; strings.Contains(string(body), addr) || strings.Contains(string(body), "127.0.0.1") {
				t.Errorf("body %q names the upstream's address %s", body, addr)
			}
			lines := logs.serverErrors(t, tc.path)
			if len(lines) != 1 {
				t.Fatalf("%d server error lines for %s, want 1: %v", len(lines), tc.path, lines)
			}
			rec := lines[0]
			if rec["level"] != "WARN" || rec["method"] != tc.method || rec["endpoint"] != tc.endpoint ||
				rec["status"] != float64(tc.status) || !strings.Contains(rec["reason"].(string), tc.reason) {
				t.Errorf("logged %v, want WARN %s %s endpoint %s status %d reason containing %q",
					rec, tc.method, tc.path, tc.endpoint, tc.status, tc.reason)
			}
		})
	}
}
