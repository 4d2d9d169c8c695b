// Package e2e drives the real clients (Debian's RubyGems 3.3 and Bundler
// 2.3) against gemproxy in front of the local stand-in for rubygems.org.
package e2e

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/proxy"
	"github.com/gemproxy/gemproxy/internal/rubyfmt"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// requireClients skips the test unless ruby, gem and bundle are installed;
// under CI their absence is a failure.
func requireClients(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ruby", "gem", "bundle"} {
		if _, err := exec.LookPath(tool); err != nil {
			msg := tool + " not found: install Debian's ruby and ruby-bundler (make test does so as root) to run the end-to-end tests"
			if os.Getenv("CI") != "" {
				t.Fatal(msg + " (failing because CI is set)")
			}
			t.Skip(msg)
		}
	}
}

// noRuby leaves the Marshal files (quick gemspecs) to testupstream's
// built-in placeholders, for tests that do not run RubyGems.
func noRuby(rubyfmt.MarshalInput) (rubyfmt.MarshalOutput, error) {
	return rubyfmt.MarshalOutput{}, nil
}

// env is one gemproxy in front of one test upstream.
type env struct {
	t        *testing.T
	up       *testupstream.Server
	upURL    string
	proxyURL string
	p        *proxy.Proxy
	store    *cache.Store
	reg      *prometheus.Registry
	logs     *bytes.Buffer
}

// start runs a test upstream (with real Marshal files, so gem install
// works) and gemproxy in front of it on loopback ports.
func start(t *testing.T, upOpts testupstream.Options, tweak ...func(*proxy.Options)) *env {
	t.Helper()
	if upOpts.Marshal == nil {
		upOpts.Marshal = rubyfmt.RubyMarshal
	}
	up, ts := testupstream.Start(t, upOpts)
	store, err := cache.Open(t.TempDir(), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(ts.URL)
	reg := prometheus.NewRegistry()
	router := proxy.NewRouter()
	var eps []metrics.Endpoint
	for name, methods := range router.Endpoints() {
		eps = append(eps, metrics.Endpoint{Name: name, Methods: methods})
	}
	m := metrics.New(reg, metrics.Options{Endpoints: eps, Version: "e2e"})
	logs := &bytes.Buffer{}
	opts := proxy.Options{
		Upstream:       proxy.UpstreamOptions{URL: u},
		Metrics:        m,
		MetricsHandler: m.Handler(reg),
		Logger:         slog.New(slog.NewTextHandler(&lockedWriter{w: logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Version:        "e2e",
	}
	for _, f := range tweak {
		f(&opts)
	}
	p, err := proxy.New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go p.App().Listener(ln)
	t.Cleanup(func() {
		p.App().ShutdownWithTimeout(5 * time.Second)
		problems, err := store.Verify()
		if err != nil || len(problems) > 0 {
			t.Errorf("cache verify after test: %v %v", problems, err)
		}
		store.Close()
	})
	return &env{t: t, up: up, upURL: ts.URL, proxyURL: "http://" + ln.Addr().String(), p: p, store: store, reg: reg, logs: logs}
}

// lockedWriter lets concurrent handlers log into one buffer.
type lockedWriter struct {
	mu chan struct{}
	w  io.Writer
}

// Write serialises writes.
func (l *lockedWriter) Write(p []byte) (int, error) {
	if l.mu == nil {
		l.mu = make(chan struct{}, 1)
	}
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.w.Write(p)
}

// client is one machine running gem and bundle: its own HOME (credentials,
// ~/.gemrc, Bundler's compact-index cache) and gem directories.
type client struct {
	t    *testing.T
	home string
	env  []string
}

// newClient makes a fresh client with empty caches.
func newClient(t *testing.T) *client {
	t.Helper()
	home := t.TempDir()
	env := []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"LANG=C.UTF-8",
		"GEM_HOME=" + filepath.Join(home, "gems"),
		"GEM_PATH=" + filepath.Join(home, "gems"),
		"BUNDLE_SILENCE_ROOT_WARNING=1",
		"BUNDLE_USER_HOME=" + filepath.Join(home, ".bundle"),
		"BUNDLE_RETRY=0",
	}
	return &client{t: t, home: home, env: env}
}

// run executes a client command in dir and returns its combined output;
// a failure fails the test unless allowFail.
func (c *client) run(dir string, allowFail bool, name string, args ...string) (string, error) {
	c.t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = c.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(3 * time.Minute):
		cmd.Process.Kill()
		err = <-done
		c.t.Fatalf("%s %s timed out:\n%s", name, strings.Join(args, " "), out.String())
	}
	if err != nil && !allowFail {
		c.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), err
}

// mirror points this client's Bundler at gemproxy for source, the way the
// README tells users to.
func (c *client) mirror(source, to string) {
	c.t.Helper()
	c.run(c.home, false, "bundle", "config", "set", "--global", "mirror."+source, to)
}

// app writes a Gemfile (and optionally a lockfile) into a new directory.
func app(t *testing.T, gemfile, lock string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Gemfile"), []byte(gemfile), 0o644); err != nil {
		t.Fatal(err)
	}
	if lock != "" {
		if err := os.WriteFile(filepath.Join(dir, "Gemfile.lock"), []byte(lock), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// get fetches a path from gemproxy.
func (e *env) get(path string) []byte {
	e.t.Helper()
	resp, err := http.Get(e.proxyURL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// upstreamGemRequests counts .gem downloads the upstream served.
func (e *env) upstreamGemRequests() int {
	n := 0
	for _, r := range e.up.Log() {
		if strings.HasPrefix(r.Path, "/gems/") {
			n++
		}
	}
	return n
}
