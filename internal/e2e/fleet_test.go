package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/proxy"
	"github.com/gemproxy/gemproxy/internal/rubyfmt"
	"github.com/gemproxy/gemproxy/internal/testupstream"
	"github.com/gemproxy/gemproxy/internal/testweed"
)

// TestMain stops the SeaweedFS that the fleet tests share, by PID.
func TestMain(m *testing.M) { testweed.Main(m) }

// fleetReplicas is how many gemproxy processes a fleet test runs.
const fleetReplicas = 3

// startFleet runs fleetReplicas gemproxy processes of bin in front of
// upstream, each on its own data directory, sharing one fresh prefix of
// the test SeaweedFS, with args on top (default settings otherwise).
func startFleet(t *testing.T, bin, upstream string, args ...string) []*served {
	t.Helper()
	weed := testweed.Start(t)
	shared := []string{"--upstream", upstream,
		"--shared-store", "s3://" + testweed.Bucket + "/" + weed.Prefix(), "--s3-endpoint", weed.Endpoint}
	var fleet []*served
	for range fleetReplicas {
		replicaArgs := append([]string{"--data-dir", t.TempDir()}, shared...)
		fleet = append(fleet, startServe(t, bin, weed.Env(), append(replicaArgs, args...)...))
	}
	return fleet
}

// nginxBinary finds nginx, which Debian installs in /usr/sbin (often not
// on a user's PATH); without it the test skips, or fails under CI.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if bin, err := exec.LookPath("nginx"); err == nil {
		return bin
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	msg := "nginx not found (Debian: apt-get install -y nginx)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (failing because CI is set)")
	}
	t.Skip(msg)
	return ""
}

// nginxConf is the configuration of the balancer: one worker, every path
// under the test's own prefix, round-robin over the replicas (an upstream
// block, as a Kubernetes Service spreads connections), and an access log
// with the method, URI, status, Range header, body bytes sent and the
// replica that answered.
const nginxConf = `worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
	client_body_temp_path %[1]s/client_body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	log_format fleet '$request_method $request_uri $status "$http_range" $body_bytes_sent $upstream_addr';
	access_log %[1]s/access.log fleet;
	upstream fleet {
%[2]s	}
	server {
		listen %[3]s;
		location / {
			proxy_pass http://fleet;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $http_host;
		}
	}
}
`

// balancer is an nginx in front of a fleet.
type balancer struct {
	// url is where clients reach it, accessLog the file of its access log.
	url       string
	accessLog string
}

// startBalancer runs nginx as the test user, with its own prefix, in
// front of the replicas until the end of the test.
func startBalancer(t *testing.T, replicas []*served) *balancer {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	var servers strings.Builder
	for _, r := range replicas {
		fmt.Fprintf(&servers, "\t\tserver %s;\n", strings.TrimPrefix(r.url, "http://"))
	}
	addr := freeAddr(t)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, servers.String(), addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
	out, err := os.Create(filepath.Join(dir, "nginx.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // graceful stop, by PID
		<-exited
	})
	b := &balancer{url: "http://" + addr, accessLog: filepath.Join(dir, "access.log")}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return b
		}
		select {
		case err := <-exited:
			logs, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %v\n%s", err, logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("nginx not listening after 10s")
		}
	}
}

// accessLine is one request in the balancer's access log.
type accessLine struct {
	// method, uri, status and rangeHeader are as the client sent and got
	// them; line is the whole line, for messages.
	method, uri, status, rangeHeader string
	line                             string
}

// requests returns the lines of the balancer's access log.
func (b *balancer) requests(t *testing.T) []accessLine {
	t.Helper()
	raw, err := os.ReadFile(b.accessLog)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines []accessLine
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		lines = append(lines, accessLine{method: f[0], uri: f[1], status: f[2], rangeHeader: strings.Trim(f[3], `"`), line: l})
	}
	return lines
}

// defaultIndexTTL is how long a replica with default settings serves
// /versions and /info before it asks the upstream again.
func defaultIndexTTL() time.Duration {
	pols := proxy.DefaultPolicies()
	return max(pols[proxy.ClassVersions].TTL, pols[proxy.ClassInfo].TTL)
}

// TestFleetBundlerThroughBalancer is issue 13's test 3: real Bundler
// through nginx round-robin over three gemproxy replicas that share one
// SeaweedFS bucket, with a release upstream between two runs.
func TestFleetBundlerThroughBalancer(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the default /versions TTL")
	}
	rubyfmt.RequireTools(t, "go")
	bin := buildGemproxy(t)
	t.Parallel()
	forEachFlavour(t, func(t *testing.T, f flavour) { fleetBundlerThroughBalancer(t, f, bin) })
}

// fleetBundlerThroughBalancer installs the fixture through the balancer,
// publishes chain-a 1.1.0, waits for the default TTL and runs bundle lock
// --update; the same commands run straight against the upstream. After
// the first install no /versions answer may be a full 200 (each later one
// is a 206 or a 304), the release must be resolved, and the two lockfiles
// must be equal.
func fleetBundlerThroughBalancer(t *testing.T, f flavour, bin string) {
	up, ts := testupstream.Start(t, testupstream.Options{Marshal: rubyfmt.RubyMarshal})
	publishFixture(t, up)
	lb := startBalancer(t, startFleet(t, bin, ts.URL))

	viaFleet, direct := newClient(t, f), newClient(t, f)
	viaFleet.mirror("https://rubygems.org", lb.url)
	direct.mirror("https://rubygems.org", ts.URL)
	fleetDir, directDir := app(t, fixtureGemfile, ""), app(t, fixtureGemfile, "")
	for _, run := range []struct {
		c   *client
		dir string
	}{{viaFleet, fleetDir}, {direct, directDir}} {
		run.c.run(run.dir, false, "bundle", "config", "set", "--local", "path", filepath.Join(run.c.home, "vendor"))
	}
	viaFleet.run(fleetDir, false, "bundle", "install")
	warmed := time.Now()
	afterInstall := len(lb.requests(t))
	direct.run(directDir, false, "bundle", "install")
	lockHas(t, fleetDir, "chain-a (1.0.0)")

	up.Publish(testupstream.GemSpec{Name: "chain-a", Version: "1.1.0", Deps: []testupstream.Dep{{Name: "chain-b", Requirement: "~> 1.0"}}}, nil)
	time.Sleep(time.Until(warmed.Add(defaultIndexTTL() + time.Second))) // the TTL is what this test is about
	viaFleet.run(fleetDir, false, "bundle", "lock", "--update")
	direct.run(directDir, false, "bundle", "lock", "--update")

	var versions []string
	for _, r := range lb.requests(t)[afterInstall:] {
		if r.uri != "/versions" {
			continue
		}
		versions = append(versions, r.line)
		if r.status != "206" && r.status != "304" {
			t.Errorf("after the first install, /versions was answered %s (want 206 or 304): %s", r.status, r.line)
		}
	}
	t.Logf("/versions through the balancer after the first install: %q", versions)
	if len(versions) == 0 {
		t.Errorf("bundle lock --update asked the balancer for no /versions")
	}
	got := lockHas(t, fleetDir, "chain-a (1.1.0)")
	if want := lockHas(t, directDir, "chain-a (1.1.0)"); got != want {
		t.Errorf("the lockfile through the fleet differs from the direct run's:\n%s\nwant:\n%s", got, want)
	}
}
