package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// testVersion is stamped into the test binary with -ldflags -X.
const testVersion = "v0.0.0-test"

// testRevision is the revision the test binary is linked with, as `make
// build` links the real one.
const testRevision = "0123abcd"

// binary is the gemproxy binary built by TestMain.
var binary string

// TestMain builds the gemproxy binary once for the subprocess tests.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gemproxy-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gemproxy")
	// Not built with -race even under go test -race: a race-instrumented
	// binary takes about a second to start here, which would triple the
	// suite's time. The wiring's concurrency lives in internal packages,
	// which their own tests run under -race.
	build := exec.Command("go", "build", "-o", binary, "-ldflags", "-X main.version="+testVersion+" -X main.revision="+testRevision, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// result is the outcome of one finished gemproxy run.
type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// cleanEnv is the test process environment without GEMPROXY_* variables,
// plus extra ("KEY=value").
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GEMPROXY_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runBinary runs gemproxy with args and env to completion (at most 10s).
func runBinary(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = cleanEnv(env...)
	cmd.Dir = t.TempDir() // a stray ./data lands here, not in the source tree
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("gemproxy %q: %v", args, err)
	}
	return r
}

// TestVersionCommand checks "gemproxy version" prints the -X stamped version.
func TestVersionCommand(t *testing.T) {
	r := runBinary(t, nil, "version")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if !regexp.MustCompile(`^gemproxy ` + regexp.QuoteMeta(testVersion) + ` \(go[0-9][^ )]*\)\n$`).MatchString(r.stdout) {
		t.Errorf("version output %q", r.stdout)
	}
	if r := runBinary(t, nil, "version", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Usage: gemproxy version") {
		t.Errorf("version --help: exit %d, stdout %q, stderr %q; want 0 and its usage", r.code, r.stdout, r.stderr)
	}
}

// TestHelpListsEveryFlag checks every help text lists its flags, exit 0.
func TestHelpListsEveryFlag(t *testing.T) {
	var serveFlags, cacheFlags []string
	serveFlagSet().VisitAll(func(f *flag.Flag) { serveFlags = append(serveFlags, "--"+f.Name) })
	cacheFlagSet("purge").VisitAll(func(f *flag.Flag) { cacheFlags = append(cacheFlags, "--"+f.Name) })
	var vars []string
	for _, s := range settings() {
		vars = append(vars, s.env)
	}
	tests := []struct {
		args []string
		want []string
	}{
		{args: []string{"--help"}, want: append(append(append(serveFlags, cacheFlags...), vars...), "serve", "version", "cache stats", "cache verify", "cache purge")},
		{args: []string{"-h"}, want: serveFlags},
		{args: []string{"serve", "--help"}, want: append(serveFlags, vars...)},
		{args: []string{"cache", "--help"}, want: cacheFlags},
		{args: []string{"cache", "purge", "--help"}, want: cacheFlags},
		{args: []string{"help"}, want: serveFlags},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runBinary(t, nil, tt.args...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("help does not mention %s:\n%s", w, r.stdout)
				}
			}
		})
	}
}

// TestStartupErrorsExit2WithOneLine checks bad configurations and command
// lines stop gemproxy with status 2 and exactly one stderr line.
func TestStartupErrorsExit2WithOneLine(t *testing.T) {
	badFile := writeFile(t, "bad.toml", "[class.info]\nttl = \"abc\"\n")
	regular := writeFile(t, "regular", "x")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := busy.Addr().String()
	dataDir := t.TempDir()
	emptyDir := t.TempDir()

	tests := []struct {
		name string
		env  []string
		args []string
		want string // the whole stderr line, without "gemproxy: " and newline
	}{
		{name: "bad duration in file", args: []string{"--config", badFile},
			want: `config ` + badFile + `: class.info.ttl: invalid duration "abc"`},
		{name: "bad value in env", env: []string{"GEMPROXY_UPSTREAM=ftp://rubygems.org"},
			want: `GEMPROXY_UPSTREAM: "ftp://rubygems.org" is not an http or https URL`},
		{name: "bad value in flag", args: []string{"serve", "--log-level", "loud"},
			want: `--log-level: unknown level "loud" (want debug, info, warn or error)`},
		{name: "unknown flag", args: []string{"serve", "--colour"},
			want: `serve: flag provided but not defined: -colour`},
		{name: "bad boolean flag", args: []string{"--offline=maybe"},
			want: `serve: invalid boolean value "maybe" for -offline: want true or false`},
		{name: "unexpected argument", args: []string{"serve", "extra"},
			want: `serve: unexpected argument "extra"`},
		{name: "unknown command", args: []string{"frobnicate"},
			want: `unknown command "frobnicate" (see gemproxy --help)`},
		{name: "unwritable data dir", args: []string{"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(regular, "data")},
			want: `data_dir ` + filepath.Join(regular, "data") + `: cannot create: not a directory`},
		{name: "listen address in use", args: []string{"--listen", busyAddr, "--data-dir", dataDir, "--upstream", "http://127.0.0.1:1"},
			want: `listen ` + busyAddr + `: bind: address already in use`},
		{name: "cache without subcommand", args: []string{"cache"},
			want: `cache: missing subcommand (stats, verify or purge)`},
		{name: "purge without target", args: []string{"cache", "purge", "--data-dir", dataDir},
			want: `cache purge: give either --all or one PATH-PREFIX`},
		{name: "purge with relative prefix", args: []string{"cache", "purge", "info/", "--data-dir", dataDir},
			want: `cache purge: PATH-PREFIX "info/" must start with / (e.g. /info/rails)`},
		{name: "stats without a cache", args: []string{"cache", "stats", "--data-dir", emptyDir},
			want: `data_dir ` + emptyDir + `: no cache.db here (nothing cached yet, or another directory)`},
		{name: "cache command reads the config file", args: []string{"cache", "stats", "--config", badFile},
			want: `config ` + badFile + `: class.info.ttl: invalid duration "abc"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBinary(t, tt.env, tt.args...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2", r.code)
			}
			if want := "gemproxy: " + tt.want + "\n"; r.stderr != want {
				t.Errorf("stderr %q\nwant   %q", r.stderr, want)
			}
		})
	}
}

// fakeUpstream is an httptest upstream serving public API JSON. A request
// for /api/v1/gems/slow.json is announced on slowStarted and finished when
// releaseSlow is closed.
type fakeUpstream struct {
	*httptest.Server
	slowStarted chan struct{}
	releaseSlow chan struct{}
}

// newFakeUpstream starts a fakeUpstream closed at the end of t.
func newFakeUpstream(t *testing.T) *fakeUpstream {
	f := &fakeUpstream{slowStarted: make(chan struct{}, 1), releaseSlow: make(chan struct{})}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/v1/gems/") {
			http.NotFound(w, r)
			return
		}
		if r.URL.Path == "/api/v1/gems/slow.json" {
			f.slowStarted <- struct{}{}
			<-f.releaseSlow
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=60, public")
		fmt.Fprintf(w, `{"name":%q}`, strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v1/gems/"), ".json"))
	}))
	t.Cleanup(f.Close)
	return f
}

// server is a running gemproxy serve subprocess.
type server struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	done   chan struct{}
	// code is the exit status, valid once done is closed.
	code int
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startServer starts gemproxy serve on a free port and waits until
// /healthz answers. The process is killed at the end of t if still running.
func startServer(t *testing.T, env []string, args ...string) *server {
	t.Helper()
	s := &server{addr: testupstream.FreeAddr(t), stderr: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(binary, append([]string{"serve", "--listen", s.addr}, args...)...)
	s.cmd.Env = cleanEnv(env...)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := s.cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			s.code = ee.ExitCode()
		}
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if code, err := s.get("/healthz"); err == nil && code == http.StatusOK {
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("gemproxy exited with %d before serving:\n%s", s.code, s.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("gemproxy did not answer /healthz within 5s:\n%s", s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get requests path on a fresh connection and returns the status code.
func (s *server) get(path string) (int, error) {
	_, code, err := s.fetch(path)
	return code, err
}

// fetch requests path on a fresh connection, waiting at most 5s, and
// returns body and status.
func (s *server) fetch(path string) (string, int, error) {
	return s.fetchWithin(path, 5*time.Second)
}

// fetchWithin is fetch waiting at most timeout.
func (s *server) fetchWithin(path string, timeout time.Duration) (string, int, error) {
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get("http://" + s.addr + path)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

// wait waits up to d for the process to exit and returns its status.
func (s *server) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
		return s.code
	case <-time.After(d):
		t.Fatalf("gemproxy still running after %v:\n%s", d, s.stderr)
		return -1
	}
}

// TestServeLifecycle runs a server against a fake upstream: lock held
// against cache commands and a second server, SIGTERM drains (readyz 503,
// in-flight request finishes, exit 0), then the cache commands work.
func TestServeLifecycle(t *testing.T) {
	up := newFakeUpstream(t)
	dataDir := t.TempDir()
	cfg := writeFile(t, "gemproxy.toml", "[server]\nshutdown_grace = \"300ms\"\ndrain_timeout = \"10s\"\n")
	env := []string{"GEMPROXY_CONFIG=" + cfg, "GEMPROXY_UPSTREAM=" + up.URL}
	srv := startServer(t, env, "--data-dir", dataDir)

	body, code, err := srv.fetch("/api/v1/gems/rack.json")
	if err != nil || code != http.StatusOK || body != `{"name":"rack"}` {
		t.Fatalf("GET rack.json through the proxy: %d %q %v", code, body, err)
	}
	metricsBody, code, err := srv.fetch("/metrics")
	if err != nil || code != http.StatusOK || !strings.Contains(metricsBody, `gemproxy_build_info{`) ||
		!strings.Contains(metricsBody, `version="`+testVersion+`"`) || !strings.Contains(metricsBody, `revision="`+testRevision+`"`) || !strings.Contains(metricsBody, `gemproxy_cache_entries{class="gem"} 0`) {
		t.Errorf("/metrics: %d %v\n%.2000s", code, err, metricsBody)
	}

	t.Run("cache commands refuse a running server's data dir", func(t *testing.T) {
		for _, sub := range []string{"stats", "verify", "purge"} {
			args := []string{"cache", sub, "--data-dir", dataDir}
			if sub == "purge" {
				args = append(args, "--all")
			}
			r := runBinary(t, nil, args...)
			want := fmt.Sprintf("gemproxy: data_dir %s is in use by a running gemproxy (pid %d); stop it first, "+
				"or use --url http://HOST:PORT with GEMPROXY_ADMIN_TOKEN\n", dataDir, srv.cmd.Process.Pid)
			if r.code != 2 || r.stderr != want {
				t.Errorf("cache %s: exit %d, stderr %q; want 2, %q", sub, r.code, r.stderr, want)
			}
		}
	})

	t.Run("second server on the same data dir fails fast", func(t *testing.T) {
		r := runBinary(t, env, "--listen", testupstream.FreeAddr(t), "--data-dir", dataDir)
		want := fmt.Sprintf("gemproxy: data_dir %s: locked by another gemproxy process (pid %d)\n", dataDir, srv.cmd.Process.Pid)
		if r.code != 2 || r.stderr != want {
			t.Errorf("exit %d, stderr %q; want 2, %q", r.code, r.stderr, want)
		}
		if r.elapsed > 3*time.Second {
			t.Errorf("took %v, want under 3s", r.elapsed)
		}
	})

	// An in-flight request that outlives the grace period must finish.
	type answer struct {
		body string
		code int
		err  error
	}
	slow := make(chan answer, 1)
	go func() {
		// Gated by channels below; the timeout only bounds a hang.
		b, c, err := srv.fetchWithin("/api/v1/gems/slow.json", 30*time.Second)
		slow <- answer{b, c, err}
	}()
	select {
	case <-up.slowStarted:
	case <-time.After(5 * time.Second):
		t.Fatal("slow request did not reach the upstream")
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/readyz to answer 503 after SIGTERM", func() bool {
		code, err := srv.get("/readyz")
		return err == nil && code == http.StatusServiceUnavailable
	})
	waitFor(t, "the listener to close after shutdown_grace", func() bool {
		_, err := srv.get("/healthz")
		return err != nil
	})
	select {
	case <-srv.done:
		t.Fatalf("gemproxy exited with %d while a request was in flight:\n%s", srv.code, srv.stderr)
	default:
	}
	close(up.releaseSlow)
	if a := <-slow; a.err != nil || a.code != http.StatusOK || a.body != `{"name":"slow"}` {
		t.Errorf("in-flight request during shutdown: %d %q %v\n%s", a.code, a.body, a.err, srv.stderr)
	}
	if code := srv.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0:\n%s", code, srv.stderr)
	}
	for _, msg := range []string{"msg=listening", "config=" + cfg, `msg="shutting down: draining"`, "a second Ctrl-C", "msg=stopped"} {
		if !strings.Contains(srv.stderr.String(), msg) {
			t.Errorf("log lacks %s:\n%s", msg, srv.stderr)
		}
	}

	t.Run("cache commands on the stopped server's data dir", func(t *testing.T) {
		steps := []struct {
			args []string
			code int
			want []*regexp.Regexp
		}{
			{args: []string{"cache", "stats"}, want: []*regexp.Regexp{
				regexp.MustCompile(`(?m)^class +entries +bytes +hits +oldest +newest$`),
				regexp.MustCompile(`(?m)^api +2 +\d+ +\d+ +\d{4}-\d\d-\d\dT\S+Z +\S+Z$`),
				regexp.MustCompile(`(?m)^gem +0 +0 +0 +- +-$`),
				regexp.MustCompile(`(?m)^total +2 +\d+ +\d+ +\S+Z +\S+Z$`),
			}},
			{args: []string{"cache", "verify"}, want: []*regexp.Regexp{regexp.MustCompile(`^checked 2 entries: 0 problems\n$`)}},
			{args: []string{"cache", "purge", "/api/v1/gems/slow"}, want: []*regexp.Regexp{
				regexp.MustCompile(`^removed 1 entry\ncache\.db: \d+ bytes before compaction, \d+ after\n$`)}},
			{args: []string{"cache", "purge", "--all"}, want: []*regexp.Regexp{
				regexp.MustCompile(`^removed 1 entry\ncache\.db: \d+ bytes before compaction, \d+ after\n$`)}},
			{args: []string{"cache", "stats"}, want: []*regexp.Regexp{regexp.MustCompile(`(?m)^total +0 +0 +0 +- +-$`)}},
		}
		for _, st := range steps {
			r := runBinary(t, []string{"GEMPROXY_DATA_DIR=" + dataDir}, st.args...)
			if r.code != st.code || r.stderr != "" {
				t.Errorf("%q: exit %d, stderr %q", st.args, r.code, r.stderr)
			}
			for _, re := range st.want {
				if !re.MatchString(r.stdout) {
					t.Errorf("%q: output does not match %s:\n%s", st.args, re, r.stdout)
				}
			}
		}
	})
}

// waitFor polls cond every 10ms for up to 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
