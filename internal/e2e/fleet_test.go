package e2e

import (
	"bytes"
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
// under the test's own prefix, an access log with the method, URI,
// status, Range header, body bytes sent and the replica that answered,
// the upstream block of the replicas (round-robin, as a Kubernetes
// Service spreads connections) and the server blocks.
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
	proxy_http_version 1.1;
	proxy_set_header Connection "";
	proxy_set_header Host $http_host;
	upstream fleet {
%[2]s	}
%[3]s}
`

// nginxServer is a server block of the balancer: where it listens and
// where it passes every request.
const nginxServer = "\tserver {\n\t\tlisten %s;\n\t\tlocation / { proxy_pass http://%s; }\n\t}\n"

// balancer is an nginx in front of a fleet.
type balancer struct {
	// url is where clients reach the round-robin over the replicas,
	// accessLog the file of its access log.
	url       string
	accessLog string
	// pinned[i] is a server block of the same nginx (and access log) that
	// passes every request to replica i alone, for a client run that must
	// reach that replica.
	pinned []string
}

// startBalancer runs nginx as the test user, with its own prefix, in
// front of the replicas until the end of the test.
func startBalancer(t *testing.T, replicas []*served) *balancer {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	addrs := testupstream.FreeAddrs(t, 1+len(replicas))
	addr := addrs[0]
	b := &balancer{url: "http://" + addr, accessLog: filepath.Join(dir, "access.log")}
	var upstream, servers strings.Builder
	fmt.Fprintf(&servers, nginxServer, addr, "fleet")
	for i, r := range replicas {
		replica := strings.TrimPrefix(r.url, "http://")
		pinned := addrs[1+i]
		fmt.Fprintf(&upstream, "\t\tserver %s;\n", replica)
		fmt.Fprintf(&servers, nginxServer, pinned, replica)
		b.pinned = append(b.pinned, "http://"+pinned)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, upstream.String(), servers.String())), 0o644); err != nil {
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
	// them, replica the address of the replica that answered; line is the
	// whole line, for messages.
	method, uri, status, rangeHeader, replica string
	line                                      string
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
		if len(f) < 6 {
			continue
		}
		lines = append(lines, accessLine{method: f[0], uri: f[1], status: f[2], rangeHeader: strings.Trim(f[3], `"`),
			replica: f[5], line: l})
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
// publishes chain-a 1.1.0, waits for the default TTL from the push and
// runs bundle lock --update; the same commands run straight against the
// upstream. Then the client, ahead of a replica that holds a fresh
// /versions, runs at that replica (clientAheadOfReplica). After the
// first install no /versions answer may be a full 200 (each later one is
// a 206 or a 304), the release must be resolved, and the two lockfiles
// must be equal.
func fleetBundlerThroughBalancer(t *testing.T, f flavour, bin string) {
	up, ts := testupstream.Start(t, testupstream.Options{Marshal: rubyfmt.RubyMarshal})
	publishFixture(t, up)
	fleet := startFleet(t, bin, ts.URL)
	lb := startBalancer(t, fleet)

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
	direct.run(directDir, false, "bundle", "install") // first, so that the push follows the fleet's install at once
	viaFleet.run(fleetDir, false, "bundle", "install")
	afterInstall := len(lb.requests(t))
	lockHas(t, fleetDir, "chain-a (1.0.0)")

	up.Publish(testupstream.GemSpec{Name: "chain-a", Version: "1.1.0", Deps: []testupstream.Dep{{Name: "chain-b", Requirement: "~> 1.0"}}}, nil)
	pushed := time.Now()
	time.Sleep(time.Until(pushed.Add(defaultIndexTTL() + time.Second))) // the TTL is what this test is about
	viaFleet.run(fleetDir, false, "bundle", "lock", "--update")
	direct.run(directDir, false, "bundle", "lock", "--update")
	lockHas(t, fleetDir, "chain-a (1.1.0)")

	clientAheadOfReplica(t, up, fleet, lb, viaFleet, fleetDir)

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

// clientAheadOfReplica puts a replica behind the client and runs the
// client at it, through the balancer's server block pinned to it (the
// round-robin cannot be aimed). A running replica reads the fleet's
// pointer every 5 s, so it is behind a client for at most those 5 s, a
// window no Bundler run can be aimed at; a restarted one keeps its fresh
// /versions and reads the pointer only once /versions is asked again, as
// every replica does after a rolling update. So: a replica ("behind") is
// warmed directly, which brings it the release's /versions, fresh for a
// TTL, and restarted; another gem (outside the Gemfile, so the lockfile
// stays) is released upstream; the client runs at a replica that has
// served no /versions yet, which fetches the newer file and publishes it;
// then the client runs at behind, whose fresh copy is older than the
// client's. Behind must catch up rather than send its whole file.
func clientAheadOfReplica(t *testing.T, up *testupstream.Server, fleet []*served, lb *balancer, c *client, dir string) {
	t.Helper()
	cold, behind := pickColdAndBehind(t, fleet, lb)
	warmed := time.Now()
	if got := getVersions(t, fleet[behind].url); !bytes.Equal(got, upstreamVersions(t, up)) {
		t.Fatalf("replica %d, warmed directly, holds a /versions of %d bytes that is not the upstream's", behind, len(got))
	}
	fleet[behind].restart()
	up.Publish(testupstream.GemSpec{Name: "late-gem", Version: "1.0.0"}, nil)

	c.mirror("https://rubygems.org", lb.pinned[cold])
	c.run(dir, false, "bundle", "lock", "--update")
	if !bytes.Equal(c.bundlerVersions(), upstreamVersions(t, up)) {
		t.Fatal("the client's /versions is not the upstream's newest after its run at a cold replica")
	}
	c.mirror("https://rubygems.org", lb.pinned[behind])
	start := len(lb.requests(t))
	c.run(dir, false, "bundle", "lock", "--update")
	if time.Since(warmed) >= defaultIndexTTL() {
		t.Fatalf("replica %d's /versions expired before the client's run at it ended: nothing was shown", behind)
	}
	reached := false
	for _, r := range lb.requests(t)[start:] {
		reached = reached || r.uri == "/versions" && r.replica == strings.TrimPrefix(fleet[behind].url, "http://")
	}
	if !reached {
		t.Fatalf("the client's run at replica %d sent it no /versions", behind)
	}
	c.mirror("https://rubygems.org", lb.url)
}

// pickColdAndBehind picks, from the balancer's log, a replica that has
// served no /versions (cold) and another one (behind).
func pickColdAndBehind(t *testing.T, fleet []*served, lb *balancer) (cold, behind int) {
	t.Helper()
	served := map[string]bool{}
	for _, r := range lb.requests(t) {
		if r.uri == "/versions" {
			served[r.replica] = true
		}
	}
	for i, r := range fleet {
		if !served[strings.TrimPrefix(r.url, "http://")] {
			return i, (i + 1) % len(fleet)
		}
	}
	t.Fatalf("every replica has served /versions: %v", served)
	return 0, 0
}
