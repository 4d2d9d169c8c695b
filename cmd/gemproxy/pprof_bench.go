//go:build benchpprof

package main

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
)

// init serves net/http/pprof on GEMPROXY_PPROF_ADDR (a loopback address)
// in binaries built with -tags benchpprof, never on gemproxy's own port:
// bench/run.sh builds such a binary with BENCH_PPROF=1 to profile a run.
func init() {
	if addr := os.Getenv("GEMPROXY_PPROF_ADDR"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
