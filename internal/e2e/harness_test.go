// Package e2e drives the real clients against gemproxy in front of the
// local stand-in for rubygems.org, each test once per client flavour:
// Debian's RubyGems 3.3 and Bundler 2.3, and RubyGems 3.6 and Bundler 2.6
// run from source (../shared/clients).
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

	"github.com/gemproxy/gemproxy/internal/accesslog"
	"github.com/gemproxy/gemproxy/internal/cache"
	"github.com/gemproxy/gemproxy/internal/metrics"
	"github.com/gemproxy/gemproxy/internal/proxy"
	"github.com/gemproxy/gemproxy/internal/rubyfmt"
	"github.com/gemproxy/gemproxy/internal/status"
	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// flavour is one generation of the RubyGems and Bundler clients: how to
// run its gem and bundle.
type flavour struct {
	// gem and bundle are the command lines that run the two clients.
	gem, bundle []string
	// env is what the clients need in their environment on top of a
	// client's own.
	env []string
	// rubygems and bundler are the versions the clients must report.
	rubygems, bundler string
	// webauthn is whether gem, answered that an OTP is needed, first asks
	// POST /api/v1/webauthn_verification for a WebAuthn URL before it
	// prompts for the code (RubyGems 3.6, not 3.3): one more API call.
	webauthn bool
	// gemPath lists installed-gem directories the clients need besides
	// the client's own GEM_HOME.
	gemPath []string
}

// modernClients is where RubyGems 3.6.9 and Bundler 2.6.9 sit in the shared
// clients directory (see its README).
const modernClients = "rubygems-3.6.9"

// flavours are the client generations every client test runs with: each
// locates its clients, skipping (or failing under CI) when they are absent.
var flavours = []struct {
	name   string
	locate func(t *testing.T) flavour
}{
	{"debian-2.3", debianFlavour},
	{"modern-2.6", modernFlavour},
}

// debianGems is where Debian installs packaged gems, ruby-bundler's
// bundler 2.3.15 among them.
const debianGems = "/usr/share/rubygems-integration/all"

// debianFlavour is Debian 12's gem (RubyGems 3.3.15) and bundle (Bundler
// 2.3.15) from PATH. The bundle binstub loads the newest bundler gem on
// GEM_PATH: without debianGems there, that is Ruby 3.1's default 2.3.7.
func debianFlavour(t *testing.T) flavour {
	t.Helper()
	rubyfmt.RequireTools(t, "ruby", "gem", "bundle")
	return flavour{gem: []string{"gem"}, bundle: []string{"bundle"}, rubygems: "3.3.15", bundler: "2.3.15",
		gemPath: []string{debianGems}}
}

// modernFlavour is RubyGems 3.6.9 and Bundler 2.6.9 run from source with
// Debian's ruby, from $GEMPROXY_CLIENTS or ../shared/clients. RUBYLIB (not
// -I) puts them first on the load path, so that every ruby they start
// (bundle exec, the pseudo-terminal wrapper) loads them too; BUNDLE_VERSION
// keeps Bundler from switching to the version a lockfile's BUNDLED WITH
// names.
func modernFlavour(t *testing.T) flavour {
	t.Helper()
	rubyfmt.RequireTools(t, "ruby")
	shared := testupstream.SharedDir(t, "GEMPROXY_CLIENTS", "clients", filepath.Join(modernClients, "bundler", "exe", "bundle"))
	dir, err := filepath.Abs(filepath.Join(shared, modernClients))
	if err != nil {
		t.Fatal(err)
	}
	return flavour{
		gem:    []string{"ruby", filepath.Join(dir, "exe", "gem")},
		bundle: []string{"ruby", filepath.Join(dir, "bundler", "exe", "bundle")},
		env: []string{
			"RUBYLIB=" + filepath.Join(dir, "lib") + string(filepath.ListSeparator) + filepath.Join(dir, "bundler", "lib"),
			"BUNDLE_VERSION=system",
		},
		rubygems: "3.6.9",
		bundler:  "2.6.9",
		webauthn: true,
	}
}

// forEachFlavour runs body once per client flavour, as parallel subtests
// named after the flavours.
func forEachFlavour(t *testing.T, body func(t *testing.T, f flavour)) {
	t.Helper()
	for _, fl := range flavours {
		t.Run(fl.name, func(t *testing.T) {
			t.Parallel()
			body(t, fl.locate(t))
		})
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
	// access writes the access lines into logs.
	access *accesslog.Logger
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
	eps := proxy.MetricEndpoints()
	m := metrics.New(reg, metrics.Options{Endpoints: eps, Version: "e2e"})
	logs := &bytes.Buffer{}
	out := &lockedWriter{w: logs, mu: make(chan struct{}, 1)}
	access := accesslog.New(out, accesslog.Options{})
	opts := proxy.Options{
		Upstream:       proxy.UpstreamOptions{URL: u},
		Metrics:        m,
		MetricsHandler: m.Handler(reg),
		Logger:         slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AccessLog:      access,
		Version:        "e2e",
		Status:         status.New(reg, status.Options{Upstream: ts.URL, MaxSize: 1 << 30}),
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
		access.Close()
		problems, err := store.Verify()
		if err != nil || len(problems) > 0 {
			t.Errorf("cache verify after test: %v %v", problems, err)
		}
		store.Close()
	})
	return &env{t: t, up: up, upURL: ts.URL, proxyURL: "http://" + ln.Addr().String(), p: p, store: store, reg: reg, logs: logs, access: access}
}

// logText writes out the buffered access lines and returns everything
// gemproxy logged so far.
func (e *env) logText() string {
	if err := e.access.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return e.logs.String()
}

// lockedWriter lets concurrent handlers and the access log's flusher log
// into one buffer.
type lockedWriter struct {
	// mu is a semaphore of capacity 1.
	mu chan struct{}
	w  io.Writer
}

// Write serialises writes.
func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.w.Write(p)
}

// client is one machine running one flavour's gem and bundle: its own HOME
// (credentials, ~/.gemrc, Bundler's compact-index cache) and gem
// directories.
type client struct {
	t    *testing.T
	f    flavour
	home string
	env  []string
}

// newClient makes a fresh client of flavour f with empty caches.
func newClient(t *testing.T, f flavour) *client {
	t.Helper()
	home := t.TempDir()
	env := []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"LANG=C.UTF-8",
		"GEM_HOME=" + filepath.Join(home, "gems"),
		"GEM_PATH=" + strings.Join(append([]string{filepath.Join(home, "gems")}, f.gemPath...), string(filepath.ListSeparator)),
		"BUNDLE_SILENCE_ROOT_WARNING=1",
		"BUNDLE_USER_HOME=" + filepath.Join(home, ".bundle"),
		"BUNDLE_RETRY=0",
	}
	return &client{t: t, f: f, home: home, env: append(env, f.env...)}
}

// command returns the command line that runs name with args: the
// flavour's gem or bundle, or name itself for any other program.
func (c *client) command(name string, args ...string) []string {
	argv := []string{name}
	switch name {
	case "gem":
		argv = c.f.gem
	case "bundle":
		argv = c.f.bundle
	}
	return append(append([]string{}, argv...), args...)
}

// run executes a client command in dir and returns its combined output;
// a failure fails the test unless allowFail.
func (c *client) run(dir string, allowFail bool, name string, args ...string) (string, error) {
	c.t.Helper()
	argv := c.command(name, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
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

// bundlerVersions returns Bundler's cached copy of /versions (it keeps one
// per source).
func (c *client) bundlerVersions() []byte {
	c.t.Helper()
	matches, _ := filepath.Glob(filepath.Join(c.home, ".bundle", "cache", "compact_index", "*", "versions"))
	if len(matches) != 1 {
		c.t.Fatalf("Bundler's cached versions file not found: %v", matches)
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		c.t.Fatal(err)
	}
	return b
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
	_, b := e.fetch(path)
	return b
}

// fetch fetches a path from gemproxy and returns the response (its body
// closed) and the body.
func (e *env) fetch(path string) (*http.Response, []byte) {
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
	return resp, b
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
