package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gemproxy/gemproxy/internal/testupstream"
)

// adminToken is the admin token of the servers started below.
const adminToken = "cmd-test-admin-token-0123456789"

// publishPadded publishes n gems of about 200 KiB each and returns their
// paths and bodies.
func publishPadded(t *testing.T, up *testupstream.Server, n int) map[string][]byte {
	t.Helper()
	gems := make(map[string][]byte, n)
	for i := range n {
		spec := testupstream.GemSpec{Name: fmt.Sprintf("pad%d", i), Version: "1.0.0", Padding: 200 << 10}
		body, err := testupstream.BuildGem(spec)
		if err != nil {
			t.Fatal(err)
		}
		up.Publish(spec, body)
		gems[fmt.Sprintf("/gems/pad%d-1.0.0.gem", i)] = body
	}
	return gems
}

// fetchAll gets every path through s and checks the bodies.
func fetchAll(t *testing.T, s *server, gems map[string][]byte) {
	t.Helper()
	for path, want := range gems {
		if body, code, err := s.fetch(path); err != nil || code != 200 || body != string(want) {
			t.Fatalf("GET %s: %d %v (%d bytes, want %d)", path, code, err, len(body), len(want))
		}
	}
}

// TestCacheCommandsThroughAdminAPI runs the cache commands with --url
// against a running server, then the same commands on its data dir once
// it stopped: stats print the same, and the offline purge --all shrinks
// the file.
func TestCacheCommandsThroughAdminAPI(t *testing.T) {
	up, ts := testupstream.Start(t, testupstream.Options{})
	gems := publishPadded(t, up, 8)
	dataDir := t.TempDir()
	tokenEnv := "GEMPROXY_ADMIN_TOKEN=" + adminToken
	srv := startServer(t, []string{tokenEnv}, "--upstream", ts.URL, "--data-dir", dataDir)
	fetchAll(t, srv, gems)
	fetchAll(t, srv, gems) // hits
	url := "--url=http://" + srv.addr

	if pid, err := os.ReadFile(filepath.Join(dataDir, pidFileName)); err != nil || string(pid) != strconv.Itoa(srv.cmd.Process.Pid)+"\n" {
		t.Errorf("PID file %q, %v; want %d", pid, err, srv.cmd.Process.Pid)
	}
	for _, tc := range []struct {
		env  []string
		code int
		want string
	}{
		{nil, exitUsage, "gemproxy: --url: the admin token is missing: set GEMPROXY_ADMIN_TOKEN (or admin_token in the config file)\n"},
		{[]string{"GEMPROXY_ADMIN_TOKEN=" + adminToken + "-wrong"}, exitFailure,
			"gemproxy: cache purge: " + srv.addr + " refused the admin token (401): check GEMPROXY_ADMIN_TOKEN\n"},
	} {
		if r := runBinary(t, tc.env, "cache", "purge", "--all", url); r.code != tc.code || r.stderr != tc.want {
			t.Errorf("purge --all with %q: exit %d, stderr %q; want %d, %q", tc.env, r.code, r.stderr, tc.code, tc.want)
		}
	}

	r := runBinary(t, []string{tokenEnv}, "cache", "purge", "/gems/pad0", url)
	if !regexp.MustCompile(`^removed 1 entry\ncache\.db: \d+ bytes, \d+ of them free for new entries \(a running server's file does not shrink\)\n$`).MatchString(r.stdout) || r.code != 0 {
		t.Errorf("purge --url: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runBinary(t, []string{tokenEnv}, "cache", "verify", url); r.code != 0 || !regexp.MustCompile(`^checked \d+ entries: 0 problems\n$`).MatchString(r.stdout) {
		t.Errorf("verify --url: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	live := runBinary(t, []string{tokenEnv}, "cache", "stats", url)
	if live.code != 0 || !regexp.MustCompile(`(?m)^gem +7 +\d+ +7 `).MatchString(live.stdout) {
		t.Errorf("stats --url: exit %d\n%s%s", live.code, live.stdout, live.stderr)
	}

	if metrics, _, err := srv.fetch("/metrics"); err != nil || strings.Contains(metrics, adminToken) {
		t.Errorf("/metrics: %v, or it shows the admin token", err)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := srv.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, srv.stderr)
	}
	if log := srv.stderr.String(); strings.Contains(log, adminToken) || !strings.Contains(log, "admin request refused") {
		t.Errorf("the log shows the admin token, or not the refused request:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(dataDir, pidFileName)); !os.IsNotExist(err) {
		t.Errorf("PID file left after a clean exit: %v", err)
	}

	offline := runBinary(t, nil, "cache", "stats", "--data-dir", dataDir)
	if offline.code != 0 || offline.stdout != live.stdout {
		t.Errorf("offline stats (exit %d):\n%s\ndiffer from stats --url:\n%s", offline.code, offline.stdout, live.stdout)
	}
	purged := runBinary(t, nil, "cache", "purge", "--all", "--data-dir", dataDir)
	m := regexp.MustCompile(`^removed \d+ entries\ncache\.db: (\d+) bytes before compaction, (\d+) after\n$`).FindStringSubmatch(purged.stdout)
	if purged.code != 0 || m == nil {
		t.Fatalf("purge --all: exit %d\n%s%s", purged.code, purged.stdout, purged.stderr)
	}
	before, _ := strconv.Atoi(m[1])
	after, _ := strconv.Atoi(m[2])
	t.Logf("purge --all: cache.db %d bytes before, %d after", before, after)
	fi, err := os.Stat(filepath.Join(dataDir, "cache.db"))
	if err != nil || after >= before/4 || fi.Size() != int64(after) {
		t.Errorf("purge --all: %d bytes before, %d after, file has %v (%v); want under a quarter", before, after, fi.Size(), err)
	}
}

// TestOfflineVerifyRemovesCorruptedEntry corrupts a gem in a stopped
// server's file: cache verify reports and removes it and compacts the
// file, and a second verify finds nothing.
func TestOfflineVerifyRemovesCorruptedEntry(t *testing.T) {
	up, ts := testupstream.Start(t, testupstream.Options{})
	gems := publishPadded(t, up, 2)
	dataDir := t.TempDir()
	srv := startServer(t, nil, "--upstream", ts.URL, "--data-dir", dataDir)
	fetchAll(t, srv, gems)
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := srv.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, srv.stderr)
	}
	path := filepath.Join(dataDir, "cache.db")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Every copy: bbolt may have left an older one in a free page.
	body := gems["/gems/pad1-1.0.0.gem"]
	needle := body[len(body)/2 : len(body)/2+64]
	copies := 0
	for i := bytes.Index(data, needle); i >= 0; i = bytes.Index(data, needle) {
		data[i] ^= 0xff
		copies++
	}
	if copies == 0 {
		t.Fatal("the gem is not in the file")
	}
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}

	r := runBinary(t, nil, "cache", "verify", "--data-dir", dataDir)
	want := regexp.MustCompile(`^/gems/pad1-1\.0\.0\.gem: body does not match its recorded MD5 \(removed\)\n` +
		`checked \d+ entries: 1 problem, 1 removed\ncache\.db: \d+ bytes before compaction, \d+ after\n$`)
	if r.code != exitFailure || !want.MatchString(r.stdout) {
		t.Errorf("verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := runBinary(t, nil, "cache", "verify", "--data-dir", dataDir); r.code != 0 || !strings.Contains(r.stdout, ": 0 problems\n") {
		t.Errorf("second verify: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestBusyPortCreatesNothing: a start that fails on a busy port leaves no
// data directory behind.
func TestBusyPortCreatesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	r := runBinary(t, nil, "--listen", busy.Addr().String(), "--data-dir", dataDir)
	if r.code != exitUsage || !strings.Contains(r.stderr, "address already in use") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Errorf("data dir created by a failed start: %v", err)
	}
}

// TestAdminTokenChecked: a short admin token stops start-up, and the
// error does not repeat it.
func TestAdminTokenChecked(t *testing.T) {
	for _, tc := range []struct{ token, want string }{
		{"short", "must be at least 16 characters"},
		{"long enough but has spaces", "must be printable ASCII without spaces"},
	} {
		r := runBinary(t, []string{"GEMPROXY_ADMIN_TOKEN=" + tc.token}, "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, "gemproxy: GEMPROXY_ADMIN_TOKEN: "+tc.want) || strings.Contains(r.stderr, tc.token) {
			t.Errorf("token %q: exit %d, stderr %q", tc.token, r.code, r.stderr)
		}
	}
}
