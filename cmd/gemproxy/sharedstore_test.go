package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// fakeAWSCredentials gives the AWS chain static credentials and no
// configuration files, for the stores of these tests.
func fakeAWSCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "gemproxy-test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "gemproxy-test")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
}

// silentEndpoint is the URL of a loopback server that accepts connections
// and never answers, until the end of the test.
func silentEndpoint(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = io.Copy(io.Discard, conn) // until the client gives up
				conn.Close()
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// closedEndpoint is the URL of a loopback port that nothing listens on.
func closedEndpoint(t *testing.T) string { return "http://" + testupstream.FreeAddr(t) }

// TestOpenSharedStoreUnreachableAtStart: a store whose endpoint refuses
// connections, or accepts them and never answers, is handed to the proxy
// unprobed, to be probed again in the background, and holds the start
// back for the short start-up probe at most, not for the store's own
// timeouts.
func TestOpenSharedStoreUnreachableAtStart(t *testing.T) {
	fakeAWSCredentials(t)
	for name, endpoint := range map[string]func(*testing.T) string{"refused": closedEndpoint, "silent": silentEndpoint} {
		t.Run(name, func(t *testing.T) {
			var logs bytes.Buffer
			start := time.Now()
			so := openSharedStore(context.Background(), SharedStoreConfig{URL: "s3://fleet/gems", Endpoint: endpoint(t)},
				slog.New(slog.NewTextHandler(&logs, nil)))
			if d := time.Since(start); d > sharedProbeTimeout+time.Second {
				t.Errorf("start held back %s, want at most the start-up probe's %s", d, sharedProbeTimeout)
			}
			if so.Store == nil || !so.Unprobed {
				t.Fatalf("shared options %+v, want the store, unprobed", so)
			}
			if !strings.Contains(logs.String(), `level=WARN msg="shared store unreachable at start; serving alone and probing it again in the background"`) {
				t.Errorf("no WARN line for the store unreachable at start:\n%s", logs.String())
			}
		})
	}
}

// TestOpenSharedStoreRefusedAtStart: a store that denies access to the
// probe is left out, logged, and not probed again.
func TestOpenSharedStoreRefusedAtStart(t *testing.T) {
	fakeAWSCredentials(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>`)
	}))
	t.Cleanup(srv.Close)
	var logs bytes.Buffer
	so := openSharedStore(context.Background(), SharedStoreConfig{URL: "s3://fleet/gems", Endpoint: srv.URL},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if so.Store != nil || so.Unprobed {
		t.Fatalf("shared options %+v, want none", so)
	}
	if !strings.Contains(logs.String(), `level=WARN msg="shared store refused the probe at start; running without it until restarted"`) {
		t.Errorf("no WARN line for the refused probe:\n%s", logs.String())
	}
}
